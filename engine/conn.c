/* conn.c - connection lifecycle: upgrade, framing, close handshake, timeouts (see conn.h). */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "broadcast.h"
#include "dispatch.h"
#include "edge.h"
#include "frame.h"
#include "http_api.h"
#include "log.h"
#include "connlog.h"
#include "listen.h"
#include "proto/http.h"
#include "sendq.h"
#include "tls.h"
#include "worker.h"

#define TICKS(ms) (((uint64_t)(ms) + WORKER_TICK_MS - 1) / WORKER_TICK_MS)

/* Grows b to hold need bytes. False when memory is short: the caller closes this connection
 * (1011), which is what the shortage costs; the process and the other clients go on. */
static bool xgrow(struct conn *c, struct growbuf *b, size_t need)
{
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap : 512;
    while (cap < need)
        cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) {
        connlog(c, LOG_LVL_ERROR, "out of memory for a %zu-byte input buffer, closing with 1011",
                cap);
        c->w->m.alloc_failures++;
        conn_close(c, WS_CLOSE_INTERNAL, "server out of memory");
        return false;
    }
    b->p = p;
    b->cap = (uint32_t)cap;
    return true;
}

static void growbuf_free(struct growbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int conn_id_format(const struct conn *c, char *out)
{
    return snprintf(out, 32, "w%u-%llu", c->w->id, (unsigned long long)c->serial);
}

void conn_peer_format(const struct conn *c, char *out, size_t cap)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char addr[INET6_ADDRSTRLEN + 8] = "(peer gone)";
    if (getpeername(c->fd, (struct sockaddr *)&ss, &len) == 0)
        listen_addr_format((struct sockaddr *)&ss, addr, sizeof(addr));
    snprintf(out, cap, "%s (w%u-%llu)", addr, c->w->id, (unsigned long long)c->serial);
}

/* ---- lifetime ---- */

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;
    if (c->oq) {
        c->oq->inflight = 0;
        c->oq->off = 0;
        sendq_discard(c);
    }
    if (c->pong)
        frame_release(c->pong);
    auth_grant_free(c->grant);
    tls_session_free(c->tls);
    close(c->fd);
    w->slots[c->slot] = NULL;
    w->free_slots[w->nfree++] = c->slot;
    w->nconns--;
    free(c);
}

void conn_put(struct conn *c)
{
    if (--c->ops == 0 && c->state == CONN_CLOSED)
        conn_free(c);
}

/* The connection no longer waits for its upgrade: give back its place among pending ones. */
static void pending_done(struct conn *c)
{
    if (c->flags & CONN_PENDING) {
        atomic_fetch_sub_explicit(&c->w->eng->npending, 1, memory_order_relaxed);
        c->flags &= ~CONN_PENDING;
    }
}

static void reap_add(struct conn *c)
{
    if (c->flags & CONN_REAP)
        return;
    c->flags |= CONN_REAP;
    c->ops++; /* the reap list holds c */
    c->reap_next = c->w->reap;
    c->w->reap = c;
}

void conn_abort(struct conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    c->flags |= CONN_ABORT_REQ;
    reap_add(c);
}

void conn_close(struct conn *c, uint16_t code, const char *reason)
{
    if (c->state == CONN_CLOSED || (c->flags & (CONN_CLOSE_SENT | CONN_CLOSE_REQ | CONN_ABORT_REQ)))
        return;
    if (c->state == CONN_HANDSHAKE) {
        conn_abort(c);
        return;
    }
    if (c->state == CONN_HTTP)
        code = 0, reason = NULL; /* HTTP: flush the replies, then FIN; no WebSocket close */
    c->flags |= CONN_CLOSE_REQ;
    c->close_code = code;
    c->close_reason = reason;
    reap_add(c);
}

static void do_abort(struct conn *c)
{
    conn_debug(c, "closed (%s)",
               c->state == CONN_HANDSHAKE ? "during the handshake"
               : c->state == CONN_OPEN    ? "without a close handshake"
                                          : "after our close");
    c->state = CONN_CLOSED;
    tw_cancel(&c->w->tw, &c->timer);
    bc_leave_all(c);
    growbuf_free(&c->in);
    growbuf_free(&c->frag);
    /* Ends the armed recv (it completes with 0) and any send waiting for buffer space
     * (-EPIPE): their completions drop the last holds and free the struct. */
    shutdown(c->fd, SHUT_RDWR);
    pending_done(c);
    if (c->flags & CONN_COUNTED) {
        atomic_fetch_sub_explicit(&c->w->eng->nconns, 1, memory_order_relaxed);
        c->flags &= ~CONN_COUNTED;
    }
    edge_release(c);
    sendq_discard(c);
}

/* Enters CLOSING with our close (a frame, an HTTP error, or nothing when the peer has gone)
 * queued last: nothing is queued after it, and the peer has the close wait to finish. */
static void closing(struct conn *c)
{
    c->flags |= CONN_CLOSE_SENT;
    c->state = CONN_CLOSING;
    growbuf_free(&c->frag);
    /* A closing connection gets no more events: leave now, so publishes stop counting it. */
    bc_leave_all(c);
    tw_schedule(&c->w->tw, &c->timer, c->w->tick + TICKS(WORKER_CLOSE_WAIT_MS));
}

static void maybe_finish(struct conn *c);

static void do_close(struct conn *c)
{
    if (c->flags & CONN_SLOW)
        sendq_discard(c); /* what the kernel has not started on: nobody waits for a slow one */
    c->flags &= ~CONN_CLOSE_REQ;
    if (c->close_code)
        conn_debug(c, "closing with %u (%s)", c->close_code,
                   c->close_reason ? c->close_reason : "");
    /* Code 0: the peer half-closed without a close frame; flush what it asked for, no more. */
    if (c->close_code && !sendq_push_force(c, frame_close(c->close_code, c->close_reason))) {
        do_abort(c);
        return;
    }
    closing(c);
    if (sendq_empty(c) && (c->flags & CONN_PEER_CLOSED))
        do_abort(c);
    else if (sendq_empty(c))
        maybe_finish(c); /* nothing to flush (an idle HTTP connection): FIN now */
}

void conn_reap(struct worker *w)
{
    while (w->reap) {
        struct conn *c = w->reap;
        w->reap = c->reap_next;
        c->flags &= ~CONN_REAP;
        if (c->state != CONN_CLOSED) {
            if (c->flags & CONN_ABORT_REQ)
                do_abort(c);
            else if (c->flags & CONN_CLOSE_REQ)
                do_close(c);
        }
        conn_put(c);
    }
}

/* Logs a refused accept at most once a second per worker, with what it suppressed. */
static void log_refused_accept(struct worker *w, const char *why)
{
    w->refused_accepts++;
    if (w->mono_ms - w->refused_log_ms < 1000)
        return;
    log_warn("refusing new connections: %s (%llu refused since the last line)", why,
             (unsigned long long)w->refused_accepts);
    w->refused_log_ms = w->mono_ms;
    w->refused_accepts = 0;
}

void conn_accept(struct worker *w, int fd)
{
    w->m.accepted++;
    w->last_accept_tick = w->tick;
    if (w->nfree == 0) {
        close(fd); /* more sockets than the slot table: cannot happen below the fd limit */
        return;
    }
    /* Connections still upgrading are capped like open ones: a client that opens sockets and
     * never sends a request (slowloris) holds at most max_connections of them. */
    unsigned pending = atomic_fetch_add_explicit(&w->eng->npending, 1, memory_order_relaxed);
    if (pending >= w->cfg->max_connections) {
        atomic_fetch_sub_explicit(&w->eng->npending, 1, memory_order_relaxed);
        w->m.refused_pending++;
        log_refused_accept(w, "as many upgrades pending as max-connections");
        close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (c && tls_enabled() && !(c->tls = tls_session_new(NULL))) {
        free(c);
        c = NULL;
    }
    if (!c) {
        atomic_fetch_sub_explicit(&w->eng->npending, 1, memory_order_relaxed);
        w->m.alloc_failures++;
        log_refused_accept(w, "out of memory for a connection");
        close(fd);
        return;
    }
    c->flags = CONN_PENDING;
    int one = 1;
    /* Events are small and latency is the product: never let Nagle hold one back. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->w = w;
    c->fd = fd;
    c->slot = w->free_slots[--w->nfree];
    w->slots[c->slot] = c;
    c->serial = ++w->serial;
    c->state = CONN_HANDSHAKE;
    c->last_rx_tick = (uint32_t)w->tick;
    c->rl_last_ms = w->mono_ms;
    c->rl_tokens_milli = w->cfg->rate_burst * 1000u;
    ws_parser_init(&c->wp, WS_ROLE_SERVER, w->cfg->max_message_bytes, false);
    tw_entry_init(&c->timer);
    tw_schedule(&w->tw, &c->timer, w->tick + TICKS(w->cfg->handshake_timeout_s * 1000));
    w->nconns++;
    conn_debug(c, "accepted");
    conn_arm_recv(c);
}

void conn_arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = worker_sqe(c->w);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, ud_make(c, UD_RECV));
    c->flags |= CONN_RECV_ARMED;
    c->ops++;
}

/* ---- closing ---- */

/* Once our close (frame or HTTP error) has been sent: end our half of the stream, and if the
 * peer's close frame is in too, the connection is done. */
static void maybe_finish(struct conn *c)
{
    if (c->state != CONN_CLOSING || !(c->flags & CONN_CLOSE_SENT) || !sendq_empty(c))
        return;
    if (c->tls && !(c->flags & CONN_TLS_FAILED) && !tls_close_notify_sent(c->tls)) {
        /* TLS: our close_notify goes before the FIN (the peer's is not waited for). */
        tls_close_notify(c->tls);
        if (tls_out_pending(c->tls)) {
            sendq_kick(c);
            return;
        }
    }
    if (c->flags & CONN_PEER_CLOSED) {
        conn_abort(c);
        return;
    }
    if (!(c->flags & CONN_SHUT_WR)) {
        c->flags |= CONN_SHUT_WR;
        shutdown(c->fd, SHUT_WR);
    }
}

void conn_on_send_done(struct conn *c)
{
    maybe_finish(c);
}

/* Refuses the upgrade with status and an optional extra header (hname NULL: none); why (one
 * line, no newline) is the body and the log's. */
static void http_error_hdr(struct conn *c, int status, const char *why, const char *hname,
                           const char *hvalue)
{
    char out[1024], body[300];
    int bl = snprintf(body, sizeof(body), "%s\n", why);
    size_t n = 0;
    if (!hname) {
        n = http_write_error(out, sizeof(out), status, body);
    } else if ((n = http_write_head(out, sizeof(out), status, "text/plain; charset=utf-8",
                                    (size_t)bl, false, hname, hvalue)) &&
               n + (size_t)bl <= sizeof(out)) {
        memcpy(out + n, body, (size_t)bl);
        n += (size_t)bl;
    }
    c->w->m.handshake_errors++;
    connlog_refusal(c, status, why);
    pending_done(c);
    if (!sendq_push_force(c, frame_raw(out, n))) {
        conn_abort(c);
        return;
    }
    closing(c);
}

static void http_error(struct conn *c, int status, const char *why)
{
    http_error_hdr(c, status, why, NULL, NULL);
}

/* The tick at which c's token expires; UINT64_MAX without a token. One tick more than the
 * time left: ticks count whole elapsed ticks, so the timer never fires before exp. */
static uint64_t exp_tick(const struct conn *c)
{
    if (!c->grant)
        return UINT64_MAX;
    int64_t left = c->grant->exp_ms - c->w->now_ms;
    return c->w->tick + (left > 0 ? TICKS(left) + 1 : 0);
}

/* The silence after which an open connection is pinged: heartbeat_s at most, and at least half
 * of it, at a point of that range fixed per connection (a Weyl sequence over the serial spreads
 * consecutive connections evenly). Connections accepted in one burst would otherwise be pinged,
 * and answer, in the same tick, heartbeat after heartbeat: a thousand sends and receives in one
 * loop iteration, in front of whatever publish arrives with them (docs/benchmarks.md). */
static uint64_t heartbeat_ticks(const struct conn *c)
{
    uint64_t hb = TICKS((uint64_t)c->w->cfg->heartbeat_s * 1000), spread = hb / 2;
    if (!spread)
        return hb;
    uint64_t frac = (c->serial * 0x9E3779B97F4A7C15ull) >> 32; /* frac(serial × φ), 32 bits */
    return hb - ((frac * spread) >> 32);
}

/* Schedules an open connection's timer at tick due (UINT64_MAX: none), or when its token
 * expires if that comes first: one wheel entry serves the heartbeat and the expiry. */
static void open_timer(struct conn *c, uint64_t due)
{
    uint64_t e = exp_tick(c);
    if (e < due)
        due = e;
    if (due == UINT64_MAX)
        tw_cancel(&c->w->tw, &c->timer);
    else
        tw_schedule(&c->w->tw, &c->timer, due);
}

static void protocol_close(struct conn *c, enum ws_err err)
{
    connlog(c, LOG_LVL_INFO, "protocol error: %s", ws_err_str(err));
    c->w->m.protocol_closes++;
    conn_close(c, ws_err_close_code(err), ws_err_str(err));
}

/* ---- input ---- */

bool conn_head_complete(struct conn *c, const uint8_t *buf, size_t len)
{
    size_t i = c->head_scanned > 2 ? c->head_scanned - 2 : 0;
    for (; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (i + 1 < len && buf[i + 1] == '\n')
            return true;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
            return true;
    }
    c->head_scanned = (uint32_t)len;
    return false;
}

/* The upgrade request. Returns the bytes of the head, 0 for "need more", -1 when the
 * connection is being refused (input is ignored from here on). */
static int handshake(struct conn *c, uint8_t *buf, size_t len, size_t *need)
{
    struct worker *w = c->w;
    struct http_request req;
    /* The first bytes are parsed at once (garbage is refused at once); after that the parser
     * runs again only when the head is complete or too long. */
    bool first = c->head_scanned == 0;
    if (!conn_head_complete(c, buf, len) && !first && len <= HTTP_MAX_HEAD_DEFAULT)
        return 0;
    int r = http_request_parse((const char *)buf, len, HTTP_MAX_HEAD_DEFAULT, &req);
    if (r == HTTP_NEED_MORE)
        return 0;
    if (r == HTTP_ERROR) {
        http_error(c, req.status, req.reason);
        return -1;
    }
    if (!req.upgrade_websocket &&
        (http_route_ws(req.path, NULL) != 0 || span_eq_lit(req.path, "/"))) {
        /* Not for a WebSocket endpoint (or "/" without an Upgrade: the dashboard): the HTTP API
         * (http_api.h) serves this connection from now on, starting again with this request. */
        pending_done(c);
        c->state = CONN_HTTP;
        c->flags |= CONN_HTTP_API;
        c->head_scanned = 0;
        return http_api_consume(c, buf, len, need);
    }
    int status = http_upgrade_check(&req);
    struct span sid;
    if (status) {
        http_error(c, status, http_upgrade_reason(&req));
        return -1;
    }
    if (http_route_ws(req.path, &sid)) {
        http_error(c, 404, "no WebSocket endpoint at this path: use /ws or /ws/{session_id}");
        return -1;
    }
    /* Per-IP limits, Origin and the token: before the connection counts or gets anything. */
    struct edge_refusal ref;
    status = edge_check_upgrade(c, &req, &ref);
    if (status) {
        http_error_hdr(c, status, ref.why, ref.hname, ref.hvalue);
        return -1;
    }
    unsigned n = atomic_fetch_add_explicit(&w->eng->nconns, 1, memory_order_relaxed);
    if (n >= w->cfg->max_connections) {
        atomic_fetch_sub_explicit(&w->eng->nconns, 1, memory_order_relaxed);
        w->m.refused_full++;
        char body[128];
        snprintf(body, sizeof(body), "server full: max-connections (%u) reached, retry later",
                 w->cfg->max_connections);
        http_error(c, 503, body);
        return -1;
    }
    c->flags |= CONN_COUNTED;
    pending_done(c);
    char out[512];
    size_t hn = http_write_101(out, sizeof(out), req.ws_key, ref.protocol);
    sendq_push_force(c, frame_raw(out, hn));
    sendq_push(c, dispatch_welcome(c));
    c->state = CONN_OPEN;
    w->m.upgraded++;
    if (log_min_level <= LOG_LVL_DEBUG) {
        char target[512];
        auth_redact_target(req.target, target, sizeof(target));
        struct span sub = c->grant ? auth_grant_sub(c->grant) : SPAN_NULL;
        conn_debug(c, "upgraded: %s%s%.*s", target, sub.len ? " as " : "", (int)sub.len, sub.base);
    }
    open_timer(c, w->cfg->heartbeat_s ? w->tick + heartbeat_ticks(c) : UINT64_MAX);
    return r;
}

static void on_message_frame(struct conn *c, const struct ws_frame *f)
{
    if (c->state != CONN_OPEN)
        return; /* closing: the peer's messages no longer matter */
    if (f->msg_start && f->msg_end) {
        dispatch_message(c, (const char *)f->payload, f->len);
        return;
    }
    /* Fragmented: reassemble (the parser already bounds the total by max_message). */
    if (f->len) { /* an empty fragment has nothing to keep (and frag.p may still be NULL) */
        if (!xgrow(c, &c->frag, (size_t)c->frag.len + f->len))
            return;
        memcpy(c->frag.p + c->frag.len, f->payload, f->len);
        c->frag.len += (uint32_t)f->len;
    }
    if (f->msg_end) {
        dispatch_message(c, (const char *)c->frag.p, c->frag.len);
        growbuf_free(&c->frag);
    }
}

/* A ping counts against the rate limit like a message. Every ping is answered while the
 * peer keeps up; while a send to it is still in flight (it has not taken our last bytes), an
 * earlier pong that has not started to leave is replaced by this one (RFC 6455 5.5.3 allows
 * answering only the most recent ping): a client that pings and never reads holds one pong,
 * not one per ping. */
static void on_ping(struct conn *c, const struct ws_frame *f)
{
    if (c->state != CONN_OPEN || !dispatch_admit(c))
        return;
    struct frame *pong = frame_from_bytes(WS_OP_PONG, f->payload, f->len);
    if (!pong)
        return;
    frame_ref(pong, 1); /* c->pong's: its address stays unique while it is compared */
    if (c->pong && (c->flags & CONN_SEND_BUSY) && sendq_replace(c, c->pong_pos, c->pong, pong)) {
        frame_release(c->pong);
        c->pong = pong;
        return;
    }
    uint64_t pos = sendq_next_pos(c);
    if (!sendq_push(c, pong)) {
        frame_release(pong);
        return;
    }
    if (c->pong)
        frame_release(c->pong);
    c->pong = pong;
    c->pong_pos = pos;
}

/* One frame. Returns false when input stops mattering (the close handshake is done). */
static bool on_frame(struct conn *c, const struct ws_frame *f)
{
    switch (f->opcode) {
    case WS_OP_PING: on_ping(c, f); return true;
    case WS_OP_PONG: return true;
    case WS_OP_CLOSE:
        /* Echo the peer's code (an empty close is echoed empty), then close. */
        conn_debug(c, "peer sent close %u", f->close_code);
        c->flags |= CONN_PEER_CLOSED;
        conn_close(c, f->close_code, NULL);
        return false;
    default: on_message_frame(c, f); return true;
    }
}

/* Consumes one unit (request head or frame) from buf. Returns bytes used, 0 when more input
 * is needed (*need: the size to wait for, 0 if unknown), -1 when input stops mattering. */
static int consume(struct conn *c, uint8_t *buf, size_t len, size_t *need)
{
    *need = 0;
    if (c->flags & (CONN_CLOSE_REQ | CONN_ABORT_REQ))
        return -1; /* marked to close: its input no longer matters */
    if (c->state == CONN_HANDSHAKE)
        return handshake(c, buf, len, need);
    if (c->flags & CONN_HTTP_API) /* requests after a close, or after the peer's FIN: dropped */
        return c->state == CONN_HTTP && !(c->flags & CONN_PEER_CLOSED)
                   ? http_api_consume(c, buf, len, need)
                   : -1;
    if (c->flags & CONN_PEER_CLOSED || c->state == CONN_CLOSED)
        return -1;
    if (c->state == CONN_CLOSING && !(c->flags & CONN_CLOSE_SENT))
        return -1;
    struct ws_frame f;
    enum ws_err err;
    int r = ws_frame_parse(&c->wp, buf, len, &f, &err, need);
    if (r == WS_NEED_MORE)
        return 0;
    if (r == WS_ERROR) {
        if (c->state == CONN_OPEN)
            protocol_close(c, err);
        else
            c->flags |= CONN_PEER_CLOSED; /* garbage while closing: stop waiting for it */
        return -1;
    }
    return on_frame(c, &f) ? r : -1;
}

/* Parses what it can of buf; returns the bytes consumed, or -1 when the rest is to be
 * dropped. */
static ssize_t consume_all(struct conn *c, uint8_t *buf, size_t len, size_t *need)
{
    size_t off = 0;
    while (off < len) {
        int r = consume(c, buf + off, len - off, need);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        off += (size_t)r;
    }
    return (ssize_t)off;
}

static void on_data(struct conn *c, uint8_t *data, size_t len)
{
    size_t need;
    c->last_rx_tick = (uint32_t)c->w->tick;
    c->flags &= ~CONN_PING_OUT;
    if (c->in.len == 0) {
        /* The common case: whole frames straight out of the provided buffer. */
        ssize_t used = consume_all(c, data, len, &need);
        if (used < 0 || (size_t)used == len || c->state == CONN_CLOSED)
            return;
        size_t rest = len - (size_t)used;
        if (!xgrow(c, &c->in, need > rest ? need : rest))
            return;
        memcpy(c->in.p, data + used, rest);
        c->in.len = (uint32_t)rest;
        return;
    }
    /* A unit spans buffers: continue it in the connection's own buffer. */
    if (!xgrow(c, &c->in, (size_t)c->in.len + len))
        return;
    memcpy(c->in.p + c->in.len, data, len);
    c->in.len += (uint32_t)len;
    ssize_t used = consume_all(c, c->in.p, c->in.len, &need);
    if (c->state == CONN_CLOSED)
        return;
    if (used < 0 || (size_t)used == c->in.len) {
        growbuf_free(&c->in);
        return;
    }
    memmove(c->in.p, c->in.p + used, c->in.len - (size_t)used);
    c->in.len -= (uint32_t)used;
    xgrow(c, &c->in, need);
}

/* The peer finished its side (a half-close, or a close frame with the FIN; over TLS, its
 * close_notify). What is queued for it (replies, an HTTP error, our close echo) still goes out,
 * within the close wait; then maybe_finish closes. With nothing queued or pending there is
 * nobody to answer. */
static void peer_fin(struct conn *c)
{
    c->flags |= CONN_PEER_CLOSED;
    if (c->flags & (CONN_CLOSE_REQ | CONN_ABORT_REQ))
        ; /* the reaper queues the close; maybe_finish ends it once sent */
    else if (sendq_empty(c) || c->state == CONN_HANDSHAKE)
        conn_abort(c);
    else if (c->state == CONN_OPEN || c->state == CONN_HTTP)
        conn_close(c, 0, NULL); /* flush, no close frame: the peer is not reading */
}

/* ---- TLS input (tls.h) ---- */

/* TLS failures a client can cause at will: one line per second per kind for the process. */
static struct log_limit lim_tls_plain, lim_tls_fail, lim_tls_timeout, lim_tls_cut, lim_tls_err;

static void tls_log(struct conn *c, struct log_limit *l, const char *what, const char *why)
{
    if (log_min_level > LOG_LVL_INFO)
        return;
    char peer[96];
    conn_peer_format(c, peer, sizeof(peer));
    log_limited(l, LOG_LVL_INFO, "%s: %s%s%s", peer, what, why ? ": " : "", why ? why : "");
}

/* The session failed: one log line; a handshake's alert is sent before our FIN, an open
 * connection is dropped (its stream can no longer be trusted). */
static void tls_fail(struct conn *c)
{
    const char *why = tls_error(c->tls);
    c->flags |= CONN_TLS_FAILED;
    if (tls_established(c->tls)) {
        tls_log(c, &lim_tls_err, "TLS error, closing", why);
        conn_abort(c);
        return;
    }
    c->w->m.handshake_errors++;
    pending_done(c);
    if (strstr(why, "http request")) {
        /* A cleartext HTTP client: tell it in its own language, once, before the FIN (a fresh
         * socket's send buffer takes these bytes at once; the loop's sends are all TLS). */
        static const char msg[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                                  "Content-Length: 45\r\nConnection: close\r\n\r\n"
                                  "this port speaks TLS: use https:// or wss://\n";
        tls_log(c, &lim_tls_plain, "plaintext HTTP sent to the TLS port: answered 400", NULL);
        (void)!send(c->fd, msg, sizeof(msg) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        conn_abort(c);
        return;
    }
    tls_log(c, &lim_tls_fail, "TLS handshake failed", why);
    if (!tls_out_pending(c->tls)) {
        conn_abort(c);
        return;
    }
    closing(c); /* the alert, then our FIN (maybe_finish), within the close wait */
}

/* Ciphertext from a recv: the handshake advances, plaintext goes to the same parser as a
 * cleartext connection's bytes. The read BIO is always drained, so it holds at most one
 * partial record whatever the peer sends. */
static void on_tls_data(struct conn *c, uint8_t *data, size_t len)
{
    static __thread uint8_t plain[16384];
    struct tls_session *t = c->tls;
    /* After the session's end (close_notify, a close frame, a failure) nothing more is read:
     * what a peer sends then would only pile up in the read BIO. */
    if (c->flags & (CONN_TLS_FAILED | CONN_ABORT_REQ | CONN_PEER_CLOSED))
        return;
    c->flags |= CONN_TLS_HELLO;
    bool was_open = tls_established(t);
    if (!tls_feed(t, data, len)) {
        c->w->m.alloc_failures++;
        connlog(c, LOG_LVL_ERROR, "out of memory for TLS input, closing");
        conn_abort(c);
        return;
    }
    for (;;) {
        int n = tls_read(t, plain, sizeof(plain));
        if (!was_open && tls_established(t)) {
            was_open = true;
            conn_debug(c, "TLS %s established", tls_version(t));
        }
        if (n > 0) {
            on_data(c, plain, (size_t)n);
            if (c->state == CONN_CLOSED || (c->flags & CONN_ABORT_REQ))
                break;
            continue;
        }
        if (n == TLS_EOF)
            peer_fin(c);
        else if (n == TLS_FAIL)
            tls_fail(c);
        break;
    }
    if (!tls_out_pending(t)) /* handshake replies, tickets, alerts */
        return;
    /* What reading made (alerts to renegotiation attempts, key update answers) is charged like
     * queued frames: a peer that provokes it without reading is closed, not buffered for. */
    uint64_t mem = (c->oq ? c->oq->mem : 0) + tls_out_pending(t);
    if (mem > c->w->cfg->max_queue_bytes && c->state != CONN_CLOSED &&
        !(c->flags & CONN_ABORT_REQ)) {
        connlog(c, LOG_LVL_WARN,
                "slow consumer: %llu bytes of TLS output unread by the peer pass max-queue-bytes "
                "%llu; dropping the connection",
                (unsigned long long)mem, (unsigned long long)c->w->cfg->max_queue_bytes);
        c->w->m.slow_consumers++;
        conn_abort(c);
        return;
    }
    sendq_kick(c);
}

void conn_on_recv(struct conn *c, int res, unsigned cqe_flags)
{
    struct worker *w = c->w;
    c->ops++; /* hold c while we work on it */
    if (!(cqe_flags & IORING_CQE_F_MORE)) {
        c->flags &= ~CONN_RECV_ARMED;
        c->ops--;
    }
    if (cqe_flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe_flags >> IORING_CQE_BUFFER_SHIFT;
        if (res > 0)
            w->m.bytes_in += (uint64_t)res;
        if (res > 0 && c->state != CONN_CLOSED) {
            if (c->tls)
                on_tls_data(c, worker_buf(w, bid), (size_t)res);
            else
                on_data(c, worker_buf(w, bid), (size_t)res);
        }
        worker_buf_return(w, bid);
    }
    if (c->state != CONN_CLOSED) {
        if (res == 0) {
            if (c->tls && c->state == CONN_HANDSHAKE && (c->flags & CONN_TLS_HELLO) &&
                !(c->flags & CONN_TLS_FAILED) && !tls_established(c->tls))
                tls_log(c, &lim_tls_cut, "TLS handshake truncated: the peer closed", NULL);
            peer_fin(c);
        } else if (res < 0 && res != -ENOBUFS) {
            if (res != -ECONNRESET)
                log_debug("recv failed: %s", strerror(-res));
            conn_abort(c);
        } else {
            if (res == -ENOBUFS)
                w->m.enobufs++;
            maybe_finish(c);
            if (c->state != CONN_CLOSED && !(c->flags & (CONN_RECV_ARMED | CONN_REARM))) {
                /* The multishot ended (buffer ring ran dry, or the kernel chose to): re-arm
                 * once the iteration has given buffers back. */
                c->flags |= CONN_REARM;
                c->ops++;
                c->rearm_next = w->rearm;
                w->rearm = c;
            }
        }
    }
    conn_put(c);
}

/* ---- timers ---- */

void conn_on_timer(struct tw_entry *e, void *arg)
{
    struct worker *w = arg;
    struct conn *c = (struct conn *)((char *)e - offsetof(struct conn, timer));
    const struct rc_config *cfg = w->cfg;
    switch (c->state) {
    case CONN_HANDSHAKE:
        if (c->tls && !tls_established(c->tls)) {
            char why[64];
            snprintf(why, sizeof(why), "not completed in %us", cfg->handshake_timeout_s);
            tls_log(c, &lim_tls_timeout, "TLS handshake timed out", why);
            conn_abort(c);
        } else if (c->in.len) {
            http_error(c, 408, "upgrade request not completed in time");
        } else {
            conn_abort(c);
        }
        return;
    case CONN_OPEN: {
        /* Within a tick of exp counts as expired: the wall clock may run a little behind
         * the monotonic ticks, and a timer that fired for the expiry must not be taken for
         * the heartbeat's. */
        if (auth_grant_expired(c->grant, w->now_ms + WORKER_TICK_MS)) {
            connlog(c, LOG_LVL_INFO, "token expired, closing with 4001");
            conn_close(c, 4001, "token expired");
            return;
        }
        if (!cfg->heartbeat_s) {
            open_timer(c, UINT64_MAX); /* it fired early for the expiry: wait for it */
            return;
        }
        if (c->flags & CONN_PING_OUT) {
            connlog(c, LOG_LVL_INFO, "no answer to heartbeat ping, closing with 4000");
            w->m.heartbeat_closes++;
            c->flags &= ~CONN_PING_OUT;
            conn_close(c, 4000, "heartbeat timeout");
            return;
        }
        uint64_t due = (uint64_t)c->last_rx_tick + heartbeat_ticks(c);
        if (due > w->tick) {
            open_timer(c, due); /* active since: check again later */
            return;
        }
        if (!sendq_push(c, frame_from_bytes(WS_OP_PING, "rc", 2)))
            return; /* a slow consumer: its close wait, not the heartbeat, bounds it now */
        c->flags |= CONN_PING_OUT;
        open_timer(c, w->tick + TICKS(cfg->heartbeat_timeout_s * 1000));
        return;
    }
    case CONN_CLOSING: conn_abort(c); return;
    case CONN_HTTP: http_api_on_timer(c); return;
    default: return;
    }
}
