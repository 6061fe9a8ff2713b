/* conn.c - the workers: one io_uring per thread driving its share of the connections through
 * connect, the WebSocket handshake, subscribing, and then the receive path that checks every
 * delivered event.
 *
 * Receive path: one multishot recv per connection into a provided buffer ring shared by the
 * worker's connections (set up by hand: liburing 2.3 has no io_uring_setup_buf_ring), so an
 * idle connection holds no receive buffer at all. Frames are parsed in place in the ring
 * buffer; only a frame split across two completions is copied, and only the bytes needed to
 * complete it. The clock is read once per recv completion (a completion carries up to
 * LG_BUF_SIZE bytes, i.e. ~100 events of 128 B), not per event.
 */
#include "conn.h"

#include <errno.h>
#include <liburing.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/http.h"
#include "proto/json.h"

#include "payload.h"
#include "reconnect.h"
#include "series.h"
#include "tls_client.h"
#include "vcache.h"

/* Provided receive buffers per worker, and their size: 16 MiB per worker in all. */
#define LG_NBUFS    1024
#define LG_BUF_SIZE 16384
#define LG_BGID     1
/* Submission/completion queue sizes: a completion batch is at most this many entries. */
#define LG_SQ_ENTRIES 4096
/* Connects (and handshakes) in flight per worker: bounds the listen backlog we impose. */
#define LG_MAX_CONNECTING 256
/* The longest the loop sleeps: how soon a worker notices a phase change. */
#define LG_POLL_NS 10000000ull
/* Largest message we accept from the server. */
#define LG_MAX_MESSAGE (64u << 20)

enum op { OP_CONNECT = 1, OP_SEND, OP_RECV, OP_WAKE };
#define UD(idx, op) (((uint64_t)(idx) << 8) | (op))

struct ring_state {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    uint8_t *bufs;
    unsigned br_added; /* buffers given back since the last advance */
    uint64_t rng;
    unsigned next_conn; /* next of w->conns to connect */
    unsigned connecting;
    struct lg_conn **dirty; /* connections with queued bytes and no send in flight */
    unsigned ndirty;
    bool *is_dirty;
    jsmntok_t toks[ENV_MAX_TOKENS];
    struct lg_vcache vc;
    uint8_t *plain; /* wss://: plaintext decrypted from one recv completion, LG_BUF_SIZE bytes */
};

/* ---- small helpers ---- */

static uint64_t rng_next(struct ring_state *rs)
{
    /* xorshift64*: mask keys and handshake keys need to differ, not to be secret. */
    rs->rng ^= rs->rng >> 12;
    rs->rng ^= rs->rng << 25;
    rs->rng ^= rs->rng >> 27;
    return rs->rng * UINT64_C(2685821657736338717);
}

static int buf_reserve(struct lg_buf *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    if (cap > UINT32_MAX)
        return -ENOMEM;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return -ENOMEM;
    b->p = p;
    b->cap = (uint32_t)cap;
    return 0;
}

static int buf_append(struct lg_buf *b, const void *data, size_t len)
{
    if (buf_reserve(b, len))
        return -ENOMEM;
    memcpy(b->p + b->len, data, len);
    b->len += (uint32_t)len;
    return 0;
}

static struct io_uring_sqe *get_sqe(struct ring_state *rs)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&rs->ring);
    if (!sqe) {
        io_uring_submit(&rs->ring);
        sqe = io_uring_get_sqe(&rs->ring);
    }
    if (!sqe) {
        fprintf(stderr, "ringcast-load: submission queue stuck full\n");
        abort();
    }
    return sqe;
}

int lg_room_lookup(const struct lg_run *r, const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)name[i]) * 16777619u;
    for (unsigned i = h & r->room_hash_mask;; i = (i + 1) & r->room_hash_mask) {
        int32_t idx = r->room_hash[i];
        if (idx < 0)
            return -1;
        const struct lg_room *room = &r->rooms[idx];
        if (room->len == len && memcmp(room->name, name, len) == 0)
            return idx;
    }
}

/* ---- sending ---- */

static void mark_dirty(struct ring_state *rs, struct lg_conn *c)
{
    if (!rs->is_dirty[c->idx]) {
        rs->is_dirty[c->idx] = true;
        rs->dirty[rs->ndirty++] = c;
    }
}

int lg_conn_queue(struct lg_worker *w, struct lg_conn *c, const void *data, size_t len)
{
    if (c->fd < 0)
        return 0;
    if (buf_append(&c->pend, data, len))
        return -ENOMEM;
    if (!c->send_busy)
        mark_dirty(w->priv, c);
    return 0;
}

/* Writes a masked client frame into out (WS_MAX_HEADER + len bytes); returns its size. */
static size_t client_frame_write(struct ring_state *rs, uint8_t *out, uint8_t opcode,
                                 const void *payload, size_t len)
{
    uint32_t key32 = (uint32_t)rng_next(rs);
    uint8_t key[4];
    memcpy(key, &key32, 4);
    size_t h = ws_frame_header_write(out, opcode, true, len, key);
    memcpy(out + h, payload, len);
    ws_mask(out + h, len, key, 0);
    return h + len;
}

int lg_conn_queue_frame(struct lg_worker *w, struct lg_conn *c, uint8_t opcode, const void *payload,
                        size_t len)
{
    struct ring_state *rs = w->priv;
    if (c->fd < 0)
        return 0;
    if (buf_reserve(&c->pend, WS_MAX_HEADER + len))
        return -ENOMEM;
    c->pend.len += (uint32_t)client_frame_write(rs, c->pend.p + c->pend.len, opcode, payload, len);
    if (!c->send_busy)
        mark_dirty(rs, c);
    return 0;
}

static void submit_send(struct ring_state *rs, struct lg_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(rs);
    io_uring_prep_send(sqe, c->fd, c->out.p + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, UD(c->idx, OP_SEND));
    c->send_busy = true;
}

static void conn_end(struct lg_worker *w, struct lg_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* wss://: encrypts pend (once the TLS handshake is done) and sends the ciphertext OpenSSL has
 * for c (records, and handshake messages before that). */
static void tls_start_send(struct lg_worker *w, struct lg_conn *c)
{
    struct ring_state *rs = w->priv;
    char err[256];
    if (c->pend.len && tlsc_done(c->tls)) {
        if (tlsc_write(c->tls, c->pend.p, c->pend.len, err, sizeof(err))) {
            conn_end(w, c, "TLS: %s", err);
            return;
        }
        c->pend.len = 0;
    }
    size_t n = tlsc_out_pending(c->tls);
    if (n == 0)
        return;
    c->out.len = 0;
    if (buf_reserve(&c->out, n)) {
        conn_end(w, c, "out of memory");
        return;
    }
    c->out.len = (uint32_t)tlsc_out_take(c->tls, c->out.p, n);
    c->out_off = 0;
    submit_send(rs, c);
}

/* Moves pend to out and starts sending it; called only with no send in flight. */
static void start_send(struct lg_worker *w, struct lg_conn *c)
{
    if (c->fd < 0 || c->send_busy)
        return;
    if (c->tls) {
        tls_start_send(w, c);
        return;
    }
    if (c->pend.len == 0)
        return;
    struct lg_buf t = c->out;
    c->out = c->pend;
    c->pend = t;
    c->pend.len = 0;
    c->out_off = 0;
    submit_send(w->priv, c);
}

static void flush_dirty(struct lg_worker *w)
{
    struct ring_state *rs = w->priv;
    for (unsigned i = 0; i < rs->ndirty; i++) {
        struct lg_conn *c = rs->dirty[i];
        rs->is_dirty[c->idx] = false;
        start_send(w, c);
    }
    rs->ndirty = 0;
}

void lg_conn_wake(struct lg_worker *w, int ring_fd)
{
    struct ring_state *rs = w->priv;
    struct io_uring_sqe *sqe = get_sqe(rs);
    io_uring_prep_msg_ring(sqe, ring_fd, 0, UD(0, OP_WAKE), 0);
    io_uring_sqe_set_data64(sqe, UD(0, OP_WAKE));
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

/* ---- connection lifecycle ---- */

/* Ends a connection: a failure if it never became ready, else a disconnect. Completions still
 * in flight for it are recognised by fd < 0 and only give their buffers back. */
static void conn_end(struct lg_worker *w, struct lg_conn *c, const char *fmt, ...)
{
    struct ring_state *rs = w->priv;
    if (c->state == CS_CLOSED || c->state == CS_FAILED || c->state == CS_AWAY)
        return;
    if (c->state == CS_CONNECTING || c->state == CS_HANDSHAKE)
        rs->connecting--;
    if (c->state != CS_READY && c->rc && c->rc->resuming) {
        /* A reconnect the server did not take: the run did not hold what it asked for. */
        c->state = CS_CLOSED;
        w->st.reconnect_failed++;
        if (lg_phase(w->run) != LG_PHASE_STOP)
            w->st.disconnects++;
    } else if (c->state == CS_READY) {
        c->state = CS_CLOSED;
        if (lg_phase(w->run) != LG_PHASE_STOP)
            w->st.disconnects++;
    } else {
        c->state = CS_FAILED;
        w->st.conn_failed++;
    }
    /* The first error is kept, except that a publisher's replaces a subscriber's: a lost
     * publisher ends the run's publishing, so its reason (a close code, say) is the one to see. */
    if (fmt && (!w->error[0] || (c->is_pub && !w->error_pub)) &&
        lg_phase(w->run) != LG_PHASE_STOP) {
        int n = 0;
        if (c->is_pub && c->pub)
            n = snprintf(w->error, sizeof(w->error), "publisher %u: ", c->pub->idx);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->error + n, sizeof(w->error) - (size_t)n, fmt, ap);
        va_end(ap);
        w->error_pub = c->is_pub;
    }
    if (c->fd >= 0) {
        shutdown(c->fd, SHUT_RDWR);
        close(c->fd);
        c->fd = -1;
    }
    tlsc_release(&c->tls);
}

/* Writes a close frame (code, reason) straight to the socket, before a connection is ended: it
 * is a few bytes, so a non-blocking send takes it unless the send buffer is full, which only
 * the server's own failure to read can cause. Skipped when a send is in flight (its bytes and
 * these could interleave) or a close already went out: the TCP close alone then ends it. */
static void send_close_now(struct lg_worker *w, struct lg_conn *c, uint16_t code,
                           const char *reason)
{
    struct ring_state *rs = w->priv;
    if (c->fd < 0 || c->send_busy || c->close_sent)
        return;
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD], frame[WS_MAX_HEADER + WS_MAX_CONTROL_PAYLOAD];
    size_t n = ws_close_payload_write(payload, code, reason, reason ? strlen(reason) : 0);
    n = client_frame_write(rs, frame, WS_OP_CLOSE, payload, n);
    c->close_sent = true;
    if (c->tls) {
        /* The frame goes out as a record of its own, after any ciphertext not yet sent. */
        char err[256];
        uint8_t rec[1024];
        if (!tlsc_done(c->tls) || tlsc_write(c->tls, frame, n, err, sizeof(err)) ||
            tlsc_out_pending(c->tls) > sizeof(rec))
            return;
        n = tlsc_out_take(c->tls, rec, sizeof(rec));
        (void)!send(c->fd, rec, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        return;
    }
    (void)!send(c->fd, frame, n, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* Fails the WebSocket connection on a protocol error from the server (RFC 6455 7.1.7): the
 * server is told why with the matching close code (1002, 1007, 1009), then TCP is closed. */
static void conn_fail(struct lg_worker *w, struct lg_conn *c, enum ws_err err)
{
    send_close_now(w, c, ws_err_close_code(err), ws_err_str(err));
    conn_end(w, c, "bad frame from server: %s", ws_err_str(err));
}

static void arm_recv(struct ring_state *rs, struct lg_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(rs);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = LG_BGID;
    io_uring_sqe_set_data64(sqe, UD(c->idx, OP_RECV));
    c->recv_armed = true;
}

static void conn_start(struct lg_worker *w, struct lg_conn *c, uint64_t now)
{
    struct ring_state *rs = w->priv;
    const struct lg_config *cfg = &w->run->cfg;
    if (!c->rc || !c->rc->resuming)
        w->st.conn_attempted++;
    c->t_connect = now;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->state = CS_CONNECTING; /* so conn_end counts it as a failure */
        rs->connecting++;
        conn_end(w, c, "socket: %s", strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* Loopback targets: spread connections over source addresses 127.0.X.Y so that 10k+
     * connections never run out of ephemeral ports for one (source, destination) pair. The
     * port is chosen at connect time (IP_BIND_ADDRESS_NO_PORT), not reserved by bind. */
    if ((ntohl(cfg->addr.sin_addr.s_addr) >> 24) == 127) {
        unsigned grp = c->idx / LG_CONNS_PER_SRC;
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl((127u << 24) | ((1u + grp / 250) << 8) | (1u + grp % 250));
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *)&src, sizeof(src)) < 0) {
            close(fd);
            c->state = CS_CONNECTING;
            rs->connecting++;
            conn_end(w, c, "bind source address: %s", strerror(errno));
            return;
        }
    }
    c->fd = fd;
    c->state = CS_CONNECTING;
    rs->connecting++;
    struct io_uring_sqe *sqe = get_sqe(rs);
    const struct sockaddr_in *to = &cfg->addr;
    if (c->is_pub && cfg->has_pub_url)
        to = &cfg->pub_addr;
    else if (!c->is_pub && cfg->nurls > 1)
        to = &cfg->sub_addrs[c->idx % cfg->nurls];
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)to, sizeof(*to));
    io_uring_sqe_set_data64(sqe, UD(c->idx, OP_CONNECT));
}

static void make_key(struct ring_state *rs, char out[WS_KEY_LEN + 1])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t raw[18];
    uint64_t a = rng_next(rs), b = rng_next(rs);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    raw[16] = raw[17] = 0;
    for (int i = 0, o = 0; i < 18; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = b64[v >> 6 & 63];
        out[o++] = b64[v & 63];
    }
    /* 16 bytes are 22 base64 characters and "==". */
    out[22] = out[23] = '=';
    out[WS_KEY_LEN] = 0;
}

static void became_ready(struct lg_worker *w, struct lg_conn *c);

/* The transport is up (TCP connected; over wss://, the TLS handshake done): a publisher over
 * HTTP is ready at once, anyone else sends the upgrade request. */
static void transport_ready(struct lg_worker *w, struct lg_conn *c)
{
    struct ring_state *rs = w->priv;
    const struct lg_config *cfg = &w->run->cfg;
    if (c->is_pub && cfg->publish_http) {
        /* No upgrade: requests go out as soon as it is ready (POST /api/publish). */
        c->http = true;
        rs->connecting--;
        w->st.conn_established++;
        hist_record(&w->connect, lg_now_ns() - c->t_connect);
        became_ready(w, c);
        return;
    }
    make_key(rs, c->key);
    char hostport[300];
    int n = snprintf(hostport, sizeof(hostport), "%s:%u", cfg->host, cfg->port);
    char req[1024];
    size_t len =
        http_write_upgrade_request(req, sizeof(req), (struct span){hostport, (size_t)n},
                                   span_from_cstr(cfg->path), (struct span){c->key, WS_KEY_LEN});
    if (len == 0) {
        conn_end(w, c, "upgrade request does not fit");
        return;
    }
    c->state = CS_HANDSHAKE;
    lg_conn_queue(w, c, req, len);
}

/* wss://: starts the TLS handshake (its ClientHello goes out with the next flush). */
static void tls_begin(struct lg_worker *w, struct lg_conn *c)
{
    const struct lg_config *cfg = &w->run->cfg;
    char err[256];
    c->tls = calloc(1, sizeof(*c->tls));
    if (!c->tls) {
        conn_end(w, c, "out of memory");
        return;
    }
    if (tlsc_start(c->tls, w->run->tls_ctx, cfg->host, err, sizeof(err)) ||
        tlsc_handshake(c->tls, err, sizeof(err)) < 0) {
        conn_end(w, c, "TLS handshake with %s:%u failed: %s", cfg->host, cfg->port, err);
        return;
    }
    c->state = CS_HANDSHAKE;
    mark_dirty(w->priv, c);
}

static void on_connect(struct lg_worker *w, struct lg_conn *c, int res)
{
    struct ring_state *rs = w->priv;
    const struct lg_config *cfg = &w->run->cfg;
    if (c->fd < 0)
        return;
    if (res < 0) {
        conn_end(w, c, "connect to %s:%u: %s", cfg->host, cfg->port, strerror(-res));
        return;
    }
    if (w->run->tls_ctx)
        tls_begin(w, c);
    else
        transport_ready(w, c);
    if (c->fd >= 0)
        arm_recv(rs, c);
}

/* ---- --reconnect-every (reconnect.h): a subscriber's deliberate drop and its return ---- */

void lg_conn_drop(struct lg_worker *w, struct lg_conn *c, bool rst)
{
    if (c->fd < 0 || c->state != CS_READY)
        return;
    if (rst) {
        /* SO_LINGER 0: the close sends RST once io_uring lets the socket go; SHUT_RD ends the
         * armed recv so that it does. */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        shutdown(c->fd, SHUT_RD);
    } else {
        send_close_now(w, c, 1000, "reconnect");
        shutdown(c->fd, SHUT_RDWR);
    }
    close(c->fd);
    c->fd = -1;
    c->state = CS_AWAY;
    tlsc_release(&c->tls); /* wss://: the next connection has a session of its own */
}

bool lg_conn_quiet(const struct lg_conn *c)
{
    return !c->recv_armed && !c->send_busy;
}

void lg_conn_restart(struct lg_worker *w, struct lg_conn *c, uint64_t now)
{
    c->out.len = c->pend.len = c->carry.len = c->frag.len = 0;
    c->out_off = 0;
    c->close_sent = false;
    c->state = CS_IDLE;
    conn_start(w, c, now);
}

/* ---- messages ---- */

static bool id_u64(struct span id, uint64_t *v)
{
    const char *p = id.base, *end = id.base + id.len;
    if (p < end && *p == '"')
        p++, end--;
    if (p >= end)
        return false;
    uint64_t x = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return false;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *v = x;
    return true;
}

static void became_ready(struct lg_worker *w, struct lg_conn *c)
{
    c->state = CS_READY;
    if (c->rc && c->rc->resuming)
        lg_reconnect_ready(w, c, lg_now_ns());
    else
        w->st.conn_ready++;
}

/* The index of room r among c's rooms, or -1 when c did not join it. */
static int room_slot(const struct lg_conn *c, uint32_t r)
{
    for (unsigned i = 0; i < c->nrooms; i++)
        if (c->rooms[i] == r)
            return (int)i;
    return -1;
}

/* The per-recipient checks of one delivery to c of publish pl, whose true room is c's room
 * number i (pr: OK or CORRUPT, numbers in range, publish known to this run).
 *
 * Duplicates and order are judged per (room, publisher) on the publisher's own sequence,
 * which is dense in each room (a publisher sends to its rooms round-robin), and per room on the
 * server's seq: never on a guess of how several publishers' events interleave. */
static void on_delivery(struct lg_worker *w, struct lg_conn *c, unsigned i,
                        const struct lg_payload *pl, enum lg_payload_res pr, uint64_t seq,
                        bool has_seq, uint64_t now)
{
    struct lg_run *run = w->run;
    struct lg_publisher *pub = &run->pubs[pl->p];
    struct lg_track *t = &c->tracks[i * run->pubs_per_room + pub->room_pos];
    uint64_t q = (pl->k - 1) / pub->nrooms + 1;
    bool reordered = false;
    switch (lg_track_update(t, q, 0, false, true)) {
    case LG_TRACK_DUPLICATE: w->st.duplicate++; return;
    case LG_TRACK_LATE: w->st.late++; return;
    case LG_TRACK_REORDERED: reordered = true; break;
    case LG_TRACK_NEW: break;
    }
    if (!has_seq)
        w->st.no_seq++;
    else if (seq <= c->last_srv[i])
        reordered = true;
    else
        c->last_srv[i] = seq;
    if (reordered)
        w->st.out_of_order++;
    atomic_fetch_add_explicit(&lg_pubrec_get(pub, pl->k)->got, 1, memory_order_relaxed);
    w->st.delivered++;
    if (now >= run->warm_end && now < run->pub_end) {
        w->st.delivered_measured++;
        /* Stalls: the longest time this worker's subscribers received nothing. */
        uint64_t from = w->last_delivery_ns > run->warm_end ? w->last_delivery_ns : run->warm_end;
        if (now > from) {
            uint64_t gap = now - from;
            if (gap > w->st.stall_max_ns)
                w->st.stall_max_ns = gap;
            if (gap > run->cfg.stall_ns)
                w->st.stalls++;
        }
        w->last_delivery_ns = now;
    }
    uint64_t lat = UINT64_MAX;
    if (pr == LG_PAYLOAD_CORRUPT) {
        /* Its numbers are used as read (it did arrive), but its times are not trusted. */
        w->st.corrupt++;
    } else if (c->rc && pl->t < c->rc->t_resub) {
        /* Published while this subscriber was away: it came in a resume's replay, whose
         * latency is the time away, not the server's fan-out (reconnect.h). */
        w->st.replayed++;
        if (pl->i >= run->warm_end)
            hist_record(&w->lat_replay, now > pl->t ? now - pl->t : 0);
    } else if (pl->i >= run->warm_end) {
        lat = now > pl->t ? now - pl->t : 0;
        hist_record(&w->lat, lat);
        hist_record(&w->lat_corr, now > pl->i ? now - pl->i : 0);
    }
    if (w->series)
        lg_series_delivery(w->series, run->t_start, now, lat);
    if (run->cfg.rate == 0)
        lg_publish_delivered(w, pl->p, pl->k);
}

/* An event that missed the verified-message cache: parsed and checked in full. When every
 * check passes, its bytes (msg, len) are kept so the next recipient needs only a memcmp. */
static void on_event(struct lg_worker *w, struct lg_conn *c, const struct lg_msg *m,
                     const uint8_t *msg, size_t len, uint64_t now)
{
    struct ring_state *rs = w->priv;
    struct lg_run *run = w->run;
    const struct lg_config *cfg = &run->cfg;
    struct lg_payload pl;
    enum lg_payload_res pr;
    bool our_event = span_eq(m->event, span_from_cstr(cfg->event_name));
    if (!m->room.base) {
        /* session.created and other events are not deliveries; one of ours without its room
         * cannot be checked against a subscription and is an integrity failure. */
        if (!c->is_pub && m->data.base &&
            (our_event ||
             lg_payload_check(m->data.base, m->data.len, cfg->size, &pl) != LG_PAYLOAD_MALFORMED))
            w->st.no_room++;
        return;
    }
    /* Room names are compared unescaped: a server may escape what JSON allows (U+2028). */
    char name[1024];
    struct span room = m->room;
    if (memchr(room.base, '\\', room.len)) {
        int n = json_unescape(room.base, room.len, name, sizeof(name));
        room = n < 0 ? SPAN_NULL : (struct span){name, (size_t)n};
    }
    int r = room.base ? lg_room_lookup(run, room.base, room.len) : -1;
    int i = r >= 0 && !c->is_pub ? room_slot(c, (uint32_t)r) : -1;
    if (i < 0) {
        w->st.misrouted++;
        return;
    }
    pr = lg_payload_check(m->data.base, m->data.len, cfg->size, &pl);
    if (pr == LG_PAYLOAD_MALFORMED) {
        w->st.corrupt++;
        return;
    }
    if (pl.p >= cfg->publishers || pl.k == 0 || !lg_pubrec_get(&run->pubs[pl.p], pl.k)) {
        if (pr == LG_PAYLOAD_CORRUPT)
            w->st.corrupt++;
        else
            w->st.foreign++; /* well-formed, but not a publish this run sent */
        return;
    }
    /* The payload says which publish it is, so it says which room it was published to: a
     * server that labels another room's event with this room's name misroutes it. */
    const struct lg_publisher *pub = &run->pubs[pl.p];
    if (pr == LG_PAYLOAD_OK && pub->rooms[(pl.k - 1) % pub->nrooms] != (unsigned)r) {
        w->st.misrouted++;
        return;
    }
    if (!our_event) {
        w->st.wrong_event++; /* delivered under another event name than it was published */
        return;
    }
    if (pr == LG_PAYLOAD_OK) {
        struct lg_verified v = {
            .pl = pl, .seq = m->seq, .has_seq = m->has_seq, .room = (uint32_t)r};
        lg_vcache_put(&rs->vc, msg, len, &v, &c->vc_last);
    }
    on_delivery(w, c, (unsigned)i, &pl, pr, m->seq, m->has_seq, now);
}

static void on_response(struct lg_worker *w, struct lg_conn *c, const struct lg_msg *m)
{
    uint64_t id;
    if (span_eq_lit(m->event, "subscribe")) {
        if (c->state != CS_SUBSCRIBING || !id_u64(m->id, &id) || id >= w->run->cfg.nrooms)
            return;
        if (c->rc) {
            int i = room_slot(c, (uint32_t)id);
            if (i >= 0)
                lg_reconnect_subscribed(w, c, (unsigned)i, m);
        }
        /* A resumed subscriber was counted once: it stayed a subscriber while away. */
        if (!c->rc || !c->rc->resuming)
            atomic_fetch_add_explicit(&w->run->rooms[id].subs, 1, memory_order_relaxed);
        if (--c->subs_pending == 0)
            became_ready(w, c);
    } else if (span_eq_lit(m->event, "publish")) {
        if (c->is_pub && id_u64(m->id, &id)) {
            if (w->rc)
                lg_reconnect_published(w, c, id, m);
            lg_publish_answered(w, c, id, true, SPAN_NULL);
        }
    }
}

static void on_error_msg(struct lg_worker *w, struct lg_conn *c, const struct lg_msg *m)
{
    uint64_t id;
    w->st.errors++;
    if (c->is_pub && id_u64(m->id, &id)) {
        lg_publish_answered(w, c, id, false, m->code);
    } else if (c->state == CS_SUBSCRIBING) {
        conn_end(w, c, "subscribe refused: %.*s", (int)m->code.len, m->code.base);
    }
}

static void on_message(struct lg_worker *w, struct lg_conn *c, const uint8_t *p, size_t len,
                       uint64_t now)
{
    struct ring_state *rs = w->priv;
    if (!c->is_pub) {
        /* The same bytes already passed every check at another recipient (vcache.h). */
        const struct lg_verified *v = lg_vcache_find(&rs->vc, p, len, &c->vc_last);
        if (v) {
            int i = room_slot(c, v->room);
            if (i >= 0)
                on_delivery(w, c, (unsigned)i, &v->pl, LG_PAYLOAD_OK, v->seq, v->has_seq, now);
            else
                w->st.misrouted++;
            return;
        }
    }
    /* The frame parser left UTF-8 to us: bytes not seen before are checked here. */
    if (!utf8_valid(p, len)) {
        conn_fail(w, c, WS_ERR_UTF8);
        return;
    }
    struct lg_msg m;
    lg_msg_parse((const char *)p, len, rs->toks, ENV_MAX_TOKENS, &m);
    switch (m.kind) {
    case LG_MSG_EVENT: on_event(w, c, &m, p, len, now); break;
    case LG_MSG_RESPONSE: on_response(w, c, &m); break;
    case LG_MSG_ERROR: on_error_msg(w, c, &m); break;
    case LG_MSG_OTHER: break;
    case LG_MSG_INVALID:
        if (c->is_pub || c->state != CS_READY)
            w->st.errors++;
        else
            w->st.corrupt++; /* a subscriber got something that is not even JSON */
        break;
    }
}

/* Returns false when the connection ended. */
static bool on_frame(struct lg_worker *w, struct lg_conn *c, struct ws_frame *f, uint64_t now)
{
    w->st.frames_in++;
    switch (f->opcode) {
    case WS_OP_TEXT:
    case WS_OP_CONT:
        if (f->msg_start && f->msg_end) {
            on_message(w, c, f->payload, f->len, now);
        } else {
            if (buf_append(&c->frag, f->payload, f->len)) {
                conn_end(w, c, "out of memory");
                return false;
            }
            if (f->msg_end) {
                on_message(w, c, c->frag.p, c->frag.len, now);
                c->frag.len = 0;
            }
        }
        break;
    case WS_OP_PING: lg_conn_queue_frame(w, c, WS_OP_PONG, f->payload, f->len); break;
    case WS_OP_CLOSE:
        /* Answer with the same code (RFC 6455 5.5.1) unless ours already went out. */
        send_close_now(w, c, f->close_code, NULL);
        conn_end(w, c, "server closed the connection: %u %.*s", f->close_code,
                 (int)f->close_reason.len, f->close_reason.base);
        return false;
    default: break;
    }
    return c->fd >= 0;
}

/* Parses the frames in data, keeping a frame split across reads in c->carry. */
static void feed_frames(struct lg_worker *w, struct lg_conn *c, uint8_t *data, size_t len,
                        uint64_t now)
{
    struct ws_frame f;
    enum ws_err err;
    size_t need;
    while (c->carry.len) {
        int r = ws_frame_parse(&c->wp, c->carry.p, c->carry.len, &f, &err, &need);
        if (r > 0) {
            if (!on_frame(w, c, &f, now))
                return;
            memmove(c->carry.p, c->carry.p + r, c->carry.len - (size_t)r);
            c->carry.len -= (uint32_t)r;
            continue;
        }
        if (r == WS_ERROR) {
            conn_fail(w, c, err);
            return;
        }
        if (len == 0)
            return;
        /* Append only what completes this frame (or its header): the rest is parsed in place. */
        size_t take = need > c->carry.len ? need - c->carry.len : 1;
        if (take > len)
            take = len;
        if (buf_append(&c->carry, data, take)) {
            conn_end(w, c, "out of memory");
            return;
        }
        data += take;
        len -= take;
    }
    while (len) {
        int r = ws_frame_parse(&c->wp, data, len, &f, &err, &need);
        if (r > 0) {
            if (!on_frame(w, c, &f, now))
                return;
            data += r;
            len -= (size_t)r;
        } else if (r == WS_NEED_MORE) {
            if (buf_append(&c->carry, data, len))
                conn_end(w, c, "out of memory");
            return;
        } else {
            conn_fail(w, c, err);
            return;
        }
    }
}

static void on_handshake_data(struct lg_worker *w, struct lg_conn *c, uint8_t *data, size_t len,
                              uint64_t now)
{
    struct ring_state *rs = w->priv;
    if (buf_append(&c->carry, data, len)) {
        conn_end(w, c, "out of memory");
        return;
    }
    struct http_response res;
    int r =
        http_response_parse((const char *)c->carry.p, c->carry.len, HTTP_MAX_HEAD_DEFAULT, &res);
    if (r == HTTP_NEED_MORE)
        return;
    if (r < 0) {
        conn_end(w, c, "malformed handshake response");
        return;
    }
    if (res.status != 101) {
        conn_end(w, c, "handshake refused: HTTP %d", res.status);
        return;
    }
    if (!ws_accept_matches((struct span){c->key, WS_KEY_LEN}, res.ws_accept)) {
        conn_end(w, c, "handshake: wrong Sec-WebSocket-Accept");
        return;
    }
    rs->connecting--;
    if (!c->rc || !c->rc->resuming) {
        w->st.conn_established++;
        hist_record(&w->connect, now - c->t_connect);
    }
    ws_parser_init(&c->wp, WS_ROLE_CLIENT, LG_MAX_MESSAGE, false);
    ws_parser_caller_checks_utf8(&c->wp); /* on_message checks what vcache has not seen */
    c->vc_last = LG_VCACHE_NONE;
    if (c->is_pub) {
        became_ready(w, c);
    } else {
        c->state = CS_SUBSCRIBING;
        c->subs_pending = c->nrooms;
        char req[512];
        for (unsigned i = 0; i < c->nrooms; i++) {
            const struct lg_room *room = &w->run->rooms[c->rooms[i]];
            struct jw jw;
            jw_init(&jw, req, sizeof(req));
            jw_lit(&jw, "{\"type\":\"request\",\"event\":\"subscribe\",\"data\":{\"channel\":");
            jw_str(&jw, room->name, room->len);
            lg_reconnect_sub_fields(w, c, i, &jw, now);
            jw_lit(&jw, "},\"id\":");
            jw_u64(&jw, c->rooms[i]);
            jw_lit(&jw, "}");
            lg_conn_queue_frame(w, c, WS_OP_TEXT, req, jw.len);
        }
        if (c->nrooms == 0)
            became_ready(w, c);
    }
    /* Whatever followed the head (session.created, usually) is WebSocket frames. */
    size_t rest = c->carry.len - (size_t)r;
    memmove(c->carry.p, c->carry.p + r, rest);
    c->carry.len = (uint32_t)rest;
    feed_frames(w, c, NULL, 0, now);
}

/* ---- --publish-via http: the answers to POST /api/publish ---- */

int lg_conn_http_expect(struct lg_conn *c, uint64_t k)
{
    if (c->hq_len == c->hq_cap) {
        uint32_t cap = c->hq_cap ? 2 * c->hq_cap : 256;
        uint64_t *q = malloc(cap * sizeof(*q));
        if (!q)
            return -ENOMEM;
        for (uint32_t i = 0; i < c->hq_len; i++)
            q[i] = c->hq[(c->hq_head + i) % c->hq_cap];
        free(c->hq);
        c->hq = q;
        c->hq_cap = cap;
        c->hq_head = 0;
    }
    c->hq[(c->hq_head + c->hq_len++) % c->hq_cap] = k;
    return 0;
}

/* The "code" of an error body {"error":{"code":"X",...}}, or an empty span. */
static struct span error_code(const char *body, size_t len)
{
    static const char key[] = "\"code\":\"";
    const char *p = memmem(body, len, key, sizeof(key) - 1);
    if (!p)
        return SPAN_NULL;
    p += sizeof(key) - 1;
    const char *end = memchr(p, '"', (size_t)(body + len - p));
    return end ? (struct span){p, (size_t)(end - p)} : SPAN_NULL;
}

/* Responses, in request order: each one answers the oldest publish still waiting. */
static void on_http_data(struct lg_worker *w, struct lg_conn *c, uint8_t *data, size_t len)
{
    if (buf_append(&c->carry, data, len)) {
        conn_end(w, c, "out of memory");
        return;
    }
    size_t off = 0;
    for (;;) {
        struct http_response res;
        const char *p = (const char *)c->carry.p + off;
        size_t avail = c->carry.len - off;
        int r = http_response_parse(p, avail, HTTP_MAX_HEAD_DEFAULT, &res);
        if (r == HTTP_NEED_MORE)
            break;
        if (r < 0 || res.content_length < 0) {
            conn_end(w, c, "HTTP publish: malformed response");
            return;
        }
        if (avail - (size_t)r < (size_t)res.content_length)
            break;
        if (c->hq_len == 0) {
            conn_end(w, c, "HTTP publish: a response to no request (HTTP %d)", res.status);
            return;
        }
        uint64_t k = c->hq[c->hq_head];
        c->hq_head = (c->hq_head + 1) % c->hq_cap;
        c->hq_len--;
        struct span code = SPAN_NULL;
        if (res.status != 200) {
            w->st.errors++;
            code = error_code(p + r, (size_t)res.content_length);
            if (!code.len)
                code = SPAN_LIT("HTTP_ERROR");
        }
        lg_publish_answered(w, c, k, res.status == 200, code);
        off += (size_t)r + (size_t)res.content_length;
        if (c->fd < 0)
            return;
    }
    memmove(c->carry.p, c->carry.p + off, c->carry.len - off);
    c->carry.len -= (uint32_t)off;
}

/* Bytes the server sent (decrypted, over wss://), to whatever c is waiting for. */
static void on_plain(struct lg_worker *w, struct lg_conn *c, uint8_t *data, size_t len,
                     uint64_t now)
{
    if (c->http)
        on_http_data(w, c, data, len);
    else if (c->state == CS_HANDSHAKE)
        on_handshake_data(w, c, data, len, now);
    else
        feed_frames(w, c, data, len, now);
}

/* wss://: ciphertext from the server. Drives the TLS handshake until it is done, then decrypts
 * into the worker's plaintext buffer, one buffer at a time, for on_plain. What OpenSSL has to
 * send in return (handshake messages, alerts) goes out with the next flush. */
static void on_tls_data(struct lg_worker *w, struct lg_conn *c, uint8_t *data, size_t len,
                        uint64_t now)
{
    struct ring_state *rs = w->priv;
    const struct lg_config *cfg = &w->run->cfg;
    char err[256];
    if (tlsc_feed(c->tls, data, len)) {
        conn_end(w, c, "out of memory");
        return;
    }
    if (!tlsc_done(c->tls)) {
        int r = tlsc_handshake(c->tls, err, sizeof(err));
        if (r < 0) {
            /* The alert (a bad certificate, say) is sent for the server's log, best effort. */
            uint8_t alert[256];
            size_t n = tlsc_out_take(c->tls, alert, sizeof(alert));
            if (n && !c->send_busy)
                (void)!send(c->fd, alert, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            conn_end(w, c, "TLS handshake with %s:%u failed: %s", cfg->host, cfg->port, err);
            return;
        }
        if (r == 1)
            transport_ready(w, c);
        if (c->fd < 0)
            return;
        if (!c->send_busy)
            mark_dirty(rs, c);
        if (r == 0)
            return;
    }
    for (;;) {
        ssize_t n = tlsc_read(c->tls, rs->plain, LG_BUF_SIZE, err, sizeof(err));
        if (n == 0)
            break;
        if (n == TLSC_EOF) {
            conn_end(w, c, "server closed the TLS session (close_notify)");
            return;
        }
        if (n < 0) {
            conn_end(w, c, "TLS: %s", err);
            return;
        }
        on_plain(w, c, rs->plain, (size_t)n, now);
        if (c->fd < 0)
            return;
    }
    if (tlsc_out_pending(c->tls) && !c->send_busy)
        mark_dirty(rs, c); /* a key update's answer, say */
}

static void on_recv(struct lg_worker *w, struct io_uring_cqe *cqe, struct lg_conn *c, uint64_t now)
{
    struct ring_state *rs = w->priv;
    int res = cqe->res;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        uint8_t *data = rs->bufs + (size_t)bid * LG_BUF_SIZE;
        if (res > 0 && c->fd >= 0) {
            w->st.bytes_in += (uint64_t)res;
            w->st.reads++;
            if (c->tls)
                on_tls_data(w, c, data, (size_t)res, now);
            else
                on_plain(w, c, data, (size_t)res, now);
        }
        io_uring_buf_ring_add(rs->br, data, LG_BUF_SIZE, (unsigned short)bid,
                              io_uring_buf_ring_mask(LG_NBUFS), (int)rs->br_added);
        rs->br_added++;
    }
    if (!(cqe->flags & IORING_CQE_F_MORE))
        c->recv_armed = false;
    if (c->fd < 0)
        return;
    if (res == 0) {
        if (c->tls && !tlsc_done(c->tls))
            conn_end(w, c, "TLS handshake with %s:%u failed: the server closed the connection",
                     w->run->cfg.host, w->run->cfg.port);
        else
            conn_end(w, c, "server closed the connection (EOF)");
    } else if (res < 0 && res != -ENOBUFS) {
        conn_end(w, c, "recv: %s", strerror(-res));
    } else if (!c->recv_armed) {
        arm_recv(rs, c); /* multishot ends when the buffer ring ran dry: start it again */
    }
}

static void on_send(struct lg_worker *w, struct lg_conn *c, int res)
{
    struct ring_state *rs = w->priv;
    c->send_busy = false;
    if (c->fd < 0)
        return;
    if (res < 0) {
        conn_end(w, c, "send: %s", strerror(-res));
        return;
    }
    c->out_off += (uint32_t)res;
    if (c->out_off < c->out.len) {
        submit_send(rs, c);
        return;
    }
    c->out.len = 0;
    c->out_off = 0;
    start_send(w, c);
}

/* ---- setup and the loop ---- */

int lg_worker_setup(struct lg_worker *w)
{
    struct ring_state *rs = calloc(1, sizeof(*rs));
    if (!rs)
        return -ENOMEM;
    w->priv = rs;
    rs->rng = UINT64_C(0x9E3779B97F4A7C15) ^ ((uint64_t)w->id << 32) ^ lg_now_ns();
    struct io_uring_params p = {0};
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN |
              IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = LG_SQ_ENTRIES * 4;
    int ret = io_uring_queue_init_params(LG_SQ_ENTRIES, &rs->ring, &p);
    if (ret == -EINVAL) { /* an older kernel: the plain setup is slower but correct */
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE;
        p.cq_entries = LG_SQ_ENTRIES * 4;
        ret = io_uring_queue_init_params(LG_SQ_ENTRIES, &rs->ring, &p);
    }
    if (ret < 0)
        return ret;
    if (lg_vcache_init(&rs->vc) < 0)
        return -ENOMEM;
    rs->br_bytes = LG_NBUFS * sizeof(struct io_uring_buf);
    rs->br = mmap(NULL, rs->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (rs->br == MAP_FAILED)
        return -errno;
    rs->bufs = malloc((size_t)LG_NBUFS * LG_BUF_SIZE);
    if (!rs->bufs)
        return -ENOMEM;
    if (w->run->tls_ctx && !(rs->plain = malloc(LG_BUF_SIZE)))
        return -ENOMEM;
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)rs->br, .ring_entries = LG_NBUFS, .bgid = LG_BGID};
    ret = io_uring_register_buf_ring(&rs->ring, &reg, 0);
    if (ret < 0)
        return ret;
    io_uring_buf_ring_init(rs->br);
    for (unsigned i = 0; i < LG_NBUFS; i++)
        io_uring_buf_ring_add(rs->br, rs->bufs + (size_t)i * LG_BUF_SIZE, LG_BUF_SIZE,
                              (unsigned short)i, io_uring_buf_ring_mask(LG_NBUFS), (int)i);
    io_uring_buf_ring_advance(rs->br, LG_NBUFS);
    rs->dirty = calloc(w->nconns ? w->nconns : 1, sizeof(*rs->dirty));
    rs->is_dirty = calloc(w->run->nconns ? w->run->nconns : 1, sizeof(bool));
    if (!rs->dirty || !rs->is_dirty)
        return -ENOMEM;
    w->run->ring_fds[w->id] = rs->ring.ring_fd;
    hist_init(&w->lat);
    hist_init(&w->lat_corr);
    hist_init(&w->connect);
    hist_init(&w->lag);
    hist_init(&w->lat_replay);
    return lg_reconnect_init(w);
}

void lg_worker_teardown(struct lg_worker *w)
{
    struct ring_state *rs = w->priv;
    if (!rs)
        return;
    io_uring_queue_exit(&rs->ring);
    if (rs->br && rs->br != MAP_FAILED)
        munmap(rs->br, rs->br_bytes);
    free(rs->bufs);
    free(rs->plain);
    free(rs->dirty);
    free(rs->is_dirty);
    lg_vcache_free(&rs->vc);
    lg_reconnect_free(w);
    free(rs);
    w->priv = NULL;
}

static void start_due_connections(struct lg_worker *w, uint64_t now, uint64_t *deadline)
{
    struct ring_state *rs = w->priv;
    const struct lg_run *run = w->run;
    while (rs->next_conn < w->nconns && rs->connecting < LG_MAX_CONNECTING) {
        struct lg_conn *c = w->conns[rs->next_conn];
        if (run->cfg.ramp > 0) {
            uint64_t due = run->t0 + (uint64_t)((double)c->idx * 1e9 / run->cfg.ramp);
            if (due > now) {
                if (due < *deadline)
                    *deadline = due;
                return;
            }
        }
        rs->next_conn++;
        conn_start(w, c, now);
    }
}

static void process_cqes(struct lg_worker *w)
{
    struct ring_state *rs = w->priv;
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&rs->ring, head, cqe)
    {
        n++;
        uint64_t ud = io_uring_cqe_get_data64(cqe);
        unsigned op = ud & 0xff;
        if (op == OP_WAKE)
            continue;
        struct lg_conn *c = &w->run->conns[ud >> 8];
        switch (op) {
        case OP_CONNECT: on_connect(w, c, cqe->res); break;
        case OP_SEND: on_send(w, c, cqe->res); break;
        case OP_RECV: on_recv(w, cqe, c, lg_now_ns()); break;
        }
    }
    io_uring_cq_advance(&rs->ring, n);
    if (rs->br_added) {
        io_uring_buf_ring_advance(rs->br, (int)rs->br_added);
        rs->br_added = 0;
    }
}

static double thread_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

/* Says goodbye with a close frame so the server logs a clean 1000, then closes. */
static void close_all(struct lg_worker *w)
{
    struct ring_state *rs = w->priv;
    static const uint8_t bye[2] = {0x03, 0xe8}; /* 1000 */
    for (unsigned i = 0; i < w->nconns; i++)
        if (w->conns[i]->state == CS_READY && !w->conns[i]->close_sent && !w->conns[i]->http) {
            lg_conn_queue_frame(w, w->conns[i], WS_OP_CLOSE, bye, sizeof(bye));
            w->conns[i]->close_sent = true;
        }
    flush_dirty(w);
    uint64_t until = lg_now_ns() + 100000000ull;
    for (;;) {
        bool busy = false;
        for (unsigned i = 0; i < w->nconns && !busy; i++)
            busy = w->conns[i]->fd >= 0 && w->conns[i]->send_busy;
        uint64_t now = lg_now_ns();
        if (!busy || now >= until)
            break;
        struct __kernel_timespec ts = {0, 5000000};
        struct io_uring_cqe *cqe;
        io_uring_submit_and_wait_timeout(&rs->ring, &cqe, 1, &ts, NULL);
        process_cqes(w);
    }
    for (unsigned i = 0; i < w->nconns; i++) {
        struct lg_conn *c = w->conns[i];
        if (c->fd >= 0) {
            close(c->fd);
            c->fd = -1;
        }
        tlsc_release(&c->tls);
    }
}

void *lg_worker_main(void *arg)
{
    struct lg_worker *w = arg;
    struct lg_run *run = w->run;
    /* The ring is created here, not by the main thread: with SINGLE_ISSUER the creating
     * thread is the only one allowed to submit. */
    w->setup_err = lg_worker_setup(w);
    atomic_store_explicit(&w->setup_done, 1, memory_order_release);
    if (w->setup_err < 0)
        return NULL;
    struct ring_state *rs = w->priv;
    bool measuring = false, measured = false;
    double cpu0 = 0;
    for (;;) {
        int phase = lg_phase(run);
        if (phase == LG_PHASE_STOP)
            break;
        uint64_t now = lg_now_ns();
        uint64_t deadline = now + LG_POLL_NS;
        start_due_connections(w, now, &deadline);
        if (phase >= LG_PHASE_RUN) {
            if (!measuring && now >= run->warm_end) {
                measuring = true;
                cpu0 = thread_cpu_s();
            }
            if (measuring && !measured && now >= run->pub_end) {
                measured = true;
                w->cpu_s = thread_cpu_s() - cpu0;
            }
            if (phase == LG_PHASE_RUN) {
                uint64_t d = lg_publish_tick(w, now);
                if (d < deadline)
                    deadline = d;
            }
            if (w->rc)
                lg_reconnect_tick(w, now, &deadline);
        }
        flush_dirty(w);
        now = lg_now_ns();
        struct __kernel_timespec ts = {0, 0};
        if (deadline > now) {
            ts.tv_sec = (long long)((deadline - now) / 1000000000u);
            ts.tv_nsec = (long long)((deadline - now) % 1000000000u);
        }
        struct io_uring_cqe *cqe;
        io_uring_submit_and_wait_timeout(&rs->ring, &cqe, 1, &ts, NULL);
        process_cqes(w);
    }
    if (measuring && !measured)
        w->cpu_s = thread_cpu_s() - cpu0;
    close_all(w);
    w->st.vc_hits = rs->vc.hits;
    w->st.vc_misses = rs->vc.misses;
    return NULL;
}
