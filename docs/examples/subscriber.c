/* subscriber.c - a ringcast subscriber in C on proto/, written to be copied into a program.
 *
 *   ringcast-subscriber-example [--token JWT] [--backoff-base S] [--backoff-cap S]
 *                               ws://HOST:PORT/ws ROOM [ROOM...]
 *
 * Prints every event of the ROOMs as one JSON line on stdout (the bytes the server sent) and what
 * the connection does on stderr. SIGINT or SIGTERM closes with 1000 and exits 0.
 *
 * The same pattern as docs/examples/subscriber.py (docs/integration.md, "Subscribers: reconnect
 * and resume"): per room it keeps the epoch and the last seq it handled (the subscribe
 * response's seq until an event comes); after any failure it waits a random time in
 * [0, min(cap, base * 2^n)] (exponential backoff, full jitter),
 * reconnects and subscribes with {"since":seq,"epoch":epoch}, so the engine replays what was
 * missed and every event is handled exactly once, in order. "recovered":false calls
 * on_resync(): the history is gone and the program must refetch its state. proto/ does the
 * protocol (http_write_upgrade_request, http_response_parse, ws_frame_parse, env_msg_parse,
 * json_*); this file is only sockets, poll and the loop: one blocking connection, ppoll for
 * timeouts and signals.
 * tests/clients/test_examples.py runs it through a proxy that cuts the connection mid-stream.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "proto/envelope.h"
#include "proto/http.h"
#include "proto/json.h"
#include "proto/ws_frame.h"

#define MAX_ROOMS     64
#define MAX_MESSAGE   (16u << 20) /* bytes: far above the engine's max_message_bytes (64 KiB) */
#define IO_TIMEOUT_S  10          /* seconds for connect, the handshake and any one send */
#define PING_IDLE_MS  20000       /* ms without traffic before we ping the server */
#define DEAD_IDLE_MS  45000       /* ms without traffic before the connection counts as dead */
#define CLOSE_WAIT_MS 2000        /* ms to wait for the server's close frame on shutdown */

struct room {
    const char *name;
    char epoch[17]; /* "" until the first subscribe response */
    uint64_t seq;   /* last seq handled (or the subscribe response's, before any); 0: none */
    bool pending;   /* subscribe sent on this connection, not answered yet */
    bool dropped;   /* the server refused the subscribe: not retried */
};

static struct room rooms[MAX_ROOMS];
static int nrooms;
static volatile sig_atomic_t stop;
static sigset_t run_mask; /* the mask ppoll waits with: SIGINT and SIGTERM unblocked */

struct conn {
    int fd;
    struct ws_parser wp;
    uint8_t *buf; /* received bytes, [off, len) not parsed yet */
    size_t off, len, cap;
    uint8_t *msg; /* a fragmented message being reassembled */
    size_t mlen;
};

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* The hook a program fills in: the events of room may be lost for good. */
static void on_resync(const struct room *r, const char *why)
{
    fprintf(stderr, "subscriber: RESYNC %s: %s (refetch its state from the service)\n", r->name,
            why);
}

/* The handler: here, print the event as the server sent it. A program would dispatch on the
 * event name (env_msg.event) the way subscriber.py's @sub.on("workflow.failed") does. */
static void on_event(const struct room *r, const struct env_msg *m, const char *raw, size_t len)
{
    (void)r;
    (void)m;
    fwrite(raw, 1, len, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for fd (or just sleeps when fd < 0) up to ms; returns poll's result, -1 with EINTR when
 * a stop signal arrived. Signals are blocked everywhere else, so none is missed between the
 * check of `stop` and the wait. */
static int wait_fd(int fd, short events, int ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    if (stop) {
        errno = EINTR;
        return -1;
    }
    return ppoll(fd < 0 ? NULL : &p, fd < 0 ? 0 : 1, &ts, &run_mask);
}

static int send_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Sends one masked frame (clients must mask, RFC 6455 §5.3). */
static int send_frame(struct conn *c, uint8_t op, const void *payload, size_t len)
{
    uint8_t mask[4], head[WS_MAX_HEADER];
    if (getrandom(mask, sizeof(mask), 0) != (ssize_t)sizeof(mask))
        return -1;
    uint8_t *body = malloc(len ? len : 1);
    if (!body)
        return -1;
    if (len) /* an empty ping may come with a NULL payload */
        memcpy(body, payload, len);
    ws_mask(body, len, mask, 0);
    size_t hlen = ws_frame_header_write(head, op, true, len, mask);
    int rc = send_all(c->fd, head, hlen) || send_all(c->fd, body, len) ? -1 : 0;
    free(body);
    return rc;
}

/* Reads what is there into c->buf after moving the unparsed bytes to its start and growing it to
 * hold need of them. 0: got some; -1: EOF or error. */
static int fill(struct conn *c, size_t need)
{
    if (c->off) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (need < c->len + 4096)
        need = c->len + 65536;
    if (need > c->cap) {
        uint8_t *nb = realloc(c->buf, need);
        if (!nb)
            return -1;
        c->buf = nb;
        c->cap = need;
    }
    ssize_t k = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
    if (k <= 0)
        return -1;
    c->len += (size_t)k;
    return 0;
}

/* TCP connect and the opening handshake. Returns 0, -1 to retry later, or the HTTP status of a
 * refused upgrade that retrying will not fix (401, 403, 404). */
static int ws_open(struct conn *c, const char *host, const char *port, const char *path,
                   const char *token)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int e = getaddrinfo(host, port, &hints, &ai);
    if (e) {
        fprintf(stderr, "subscriber: %s: %s\n", host, gai_strerror(e));
        return -1;
    }
    c->fd = -1;
    for (struct addrinfo *a = ai; a && c->fd < 0; a = a->ai_next) {
        struct timeval tv = {IO_TIMEOUT_S, 0};
        c->fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
            continue;
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)); /* bounds connect too */
        if (connect(c->fd, a->ai_addr, a->ai_addrlen) < 0) {
            close(c->fd);
            c->fd = -1;
        }
    }
    freeaddrinfo(ai);
    if (c->fd < 0) {
        fprintf(stderr, "subscriber: connect %s:%s: %s\n", host, port, strerror(errno));
        return -1;
    }
    unsigned char raw[16];
    char key[WS_KEY_LEN + 1], req[4096], hh[300];
    if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
        return -1;
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    snprintf(hh, sizeof(hh), "%s:%s", host, port);
    size_t n = http_write_upgrade_request(req, sizeof(req), span_from_cstr(hh),
                                          span_from_cstr(path), span_from_cstr(key));
    if (n && token) { /* one more header: replace the blank line that ends the head */
        int k =
            snprintf(req + n - 2, sizeof(req) - n + 2, "Authorization: Bearer %s\r\n\r\n", token);
        n = k > 0 && (size_t)k < sizeof(req) - n + 2 ? n - 2 + (size_t)k : 0;
    }
    if (!n || send_all(c->fd, req, n) < 0) {
        fprintf(stderr, "subscriber: cannot send the upgrade request\n");
        return -1;
    }
    c->off = c->len = 0;
    for (;;) {
        struct http_response res;
        int h = http_response_parse((char *)c->buf, c->len, 8192, &res);
        if (h > 0) {
            if (res.status != 101 || !ws_accept_matches(span_from_cstr(key), res.ws_accept)) {
                fprintf(stderr, "subscriber: upgrade refused: HTTP %d\n", res.status);
                return res.status == 401 || res.status == 403 || res.status == 404 ? res.status
                                                                                   : -1;
            }
            c->off = (size_t)h; /* frames may follow the head */
            break;
        }
        if (h == HTTP_ERROR || wait_fd(c->fd, POLLIN, IO_TIMEOUT_S * 1000) <= 0 ||
            fill(c, 8192) < 0) {
            fprintf(stderr, "subscriber: no WebSocket handshake from the server\n");
            return -1;
        }
    }
    ws_parser_init(&c->wp, WS_ROLE_CLIENT, MAX_MESSAGE, false);
    c->mlen = 0;
    return 0;
}

static int subscribe_all(struct conn *c)
{
    for (int i = 0; i < nrooms; i++) {
        struct room *r = &rooms[i];
        char buf[1024];
        struct jw w;
        if (r->dropped)
            continue;
        jw_init(&w, buf, sizeof(buf));
        jw_lit(&w, "{\"type\":\"request\",\"event\":\"subscribe\",\"data\":{\"channel\":");
        jw_str(&w, r->name, strlen(r->name));
        if (r->epoch[0]) { /* resume after the last seq handled in that epoch */
            jw_lit(&w, ",\"since\":");
            jw_u64(&w, r->seq);
            jw_lit(&w, ",\"epoch\":");
            jw_str(&w, r->epoch, strlen(r->epoch));
        }
        jw_lit(&w, "},\"id\":");
        jw_u64(&w, (uint64_t)i);
        jw_lit(&w, "}");
        if (w.overflow || send_frame(c, WS_OP_TEXT, buf, w.len) < 0)
            return -1;
        r->pending = true;
    }
    return 0;
}

static struct room *room_by_id(struct span id)
{
    char tmp[16];
    char *end;
    if (id.len == 0 || id.len >= sizeof(tmp))
        return NULL;
    memcpy(tmp, id.base, id.len);
    tmp[id.len] = 0;
    long i = strtol(tmp, &end, 10);
    return *end || i < 0 || i >= nrooms ? NULL : &rooms[i];
}

static struct room *room_by_name(struct span escaped)
{
    char name[256];
    int n = json_unescape(escaped.base, escaped.len, name, sizeof(name));
    for (int i = 0; n >= 0 && i < nrooms; i++)
        if ((size_t)n == strlen(rooms[i].name) && !memcmp(name, rooms[i].name, (size_t)n))
            return &rooms[i];
    return NULL;
}

/* One whole text message from the server. */
static void handle_message(const char *s, size_t len)
{
    static jsmntok_t *toks; /* grown to what the largest message needs, kept */
    static size_t ntoks;
    struct env_msg m;
    if (env_max_tokens(len) > ntoks) {
        jsmntok_t *nt = realloc(toks, env_max_tokens(len) * sizeof(*toks));
        if (!nt)
            return;
        toks = nt;
        ntoks = env_max_tokens(len);
    }
    if (env_msg_parse(s, len, toks, (unsigned)ntoks, &m) != ENV_OK) {
        fprintf(stderr, "subscriber: unparsable message: %.*s\n", (int)(len < 80 ? len : 80), s);
        return;
    }
    if (span_eq_lit(m.type, "event") && m.room.base) {
        struct room *r = room_by_name(m.room);
        if (!r)
            return;
        if (m.has_seq && r->seq && m.seq <= r->seq)
            return; /* handled already: cannot happen after "recovered":true */
        if (m.has_seq && r->seq && m.seq != r->seq + 1) {
            char why[64];
            snprintf(why, sizeof(why), "gap: seq %llu -> %llu", (unsigned long long)r->seq,
                     (unsigned long long)m.seq);
            on_resync(r, why);
        }
        if (m.has_seq)
            r->seq = m.seq;
        on_event(r, &m, s, len);
    } else if (span_eq_lit(m.type, "response") && span_eq_lit(m.event, "subscribe")) {
        struct room *r = room_by_id(m.id);
        jsmntok_t dt[64];
        int nt = json_tokenize(m.data.base, m.data.len, dt, 64);
        if (!r || nt < 1)
            return;
        int ep = json_obj_get(m.data.base, dt, nt, 0, "epoch");
        int rec = json_obj_get(m.data.base, dt, nt, 0, "recovered");
        int sq = json_obj_get(m.data.base, dt, nt, 0, "seq");
        bool resumed = r->epoch[0] != 0;
        r->pending = false;
        if (ep > 0 && dt[ep].type == JSMN_STRING) {
            struct span e = json_tok_span(m.data.base, &dt[ep]);
            snprintf(r->epoch, sizeof(r->epoch), "%.*s", (int)e.len, e.base);
        }
        /* A first subscribe or lost history: the live events follow the response's seq (0
         * without one: the next event starts our count again, whatever its seq). */
        if (!(rec > 0 && m.data.base[dt[rec].start] == 't') &&
            !(sq > 0 && json_tok_u64(m.data.base, &dt[sq], &r->seq)))
            r->seq = 0;
        if (rec > 0 && m.data.base[dt[rec].start] == 'f') {
            on_resync(r, "history lost (recovered:false)");
        }
        fprintf(stderr, "subscriber: subscribed %s%s\n", r->name, resumed ? " (resumed)" : "");
    } else if (span_eq_lit(m.type, "error")) {
        struct room *r = room_by_id(m.id);
        fprintf(stderr, "subscriber: error %.*s: %.*s\n", (int)m.code.len, m.code.base,
                (int)(len < 200 ? len : 200), s);
        if (r) { /* FORBIDDEN, INVALID_CHANNEL...: retrying will not help */
            r->dropped = true;
            r->pending = false;
        }
    }
}

/* Reads and handles frames until the connection fails (-1) or a stop signal (0). Sets
 * *healthy once every room is subscribed. */
static int run_connection(struct conn *c, bool *healthy)
{
    int64_t last_rx = now_ms(), last_tx = now_ms();
    for (;;) {
        struct ws_frame f;
        enum ws_err err;
        size_t need = 0;
        int n = ws_frame_parse(&c->wp, c->buf + c->off, c->len - c->off, &f, &err, &need);
        if (n == WS_ERROR) {
            fprintf(stderr, "subscriber: bad frame from the server: %s\n", ws_err_str(err));
            return -1;
        }
        if (n == WS_NEED_MORE) {
            int64_t idle = now_ms() - last_rx;
            if (idle > DEAD_IDLE_MS) {
                fprintf(stderr, "subscriber: no traffic for %lld ms\n", (long long)idle);
                return -1;
            }
            if (now_ms() - last_tx > PING_IDLE_MS && idle > PING_IDLE_MS) {
                if (send_frame(c, WS_OP_PING, "", 0) < 0)
                    return -1;
                last_tx = now_ms();
            }
            int p = wait_fd(c->fd, POLLIN, 1000);
            if (p < 0)
                return stop ? 0 : -1;
            if (p > 0) {
                if (fill(c, need) < 0) {
                    fprintf(stderr, "subscriber: connection lost\n");
                    return -1;
                }
                last_rx = now_ms();
            }
            continue;
        }
        if (f.opcode == WS_OP_PING) {
            if (send_frame(c, WS_OP_PONG, f.payload, f.len) < 0)
                return -1;
        } else if (f.opcode == WS_OP_CLOSE) {
            fprintf(stderr, "subscriber: server closed with %u\n", f.close_code);
            uint8_t cp[WS_MAX_CONTROL_PAYLOAD];
            send_frame(c, WS_OP_CLOSE, cp, ws_close_payload_write(cp, f.close_code, "", 0));
            return -1;
        } else if (f.opcode != WS_OP_PONG) {
            if (f.msg_start && f.msg_end) {
                handle_message((const char *)f.payload, f.len);
            } else { /* a fragmented message: reassemble */
                uint8_t *nm = realloc(c->msg, c->mlen + f.len + 1);
                if (!nm)
                    return -1;
                c->msg = nm;
                if (f.len)
                    memcpy(c->msg + c->mlen, f.payload, f.len);
                c->mlen += f.len;
                if (f.msg_end) {
                    handle_message((const char *)c->msg, c->mlen);
                    c->mlen = 0;
                }
            }
        }
        c->off += (size_t)n;
        if (!*healthy) {
            bool any = false;
            for (int i = 0; i < nrooms; i++)
                any |= rooms[i].pending;
            *healthy = !any;
        }
    }
}

/* Sends close 1000 and waits (bounded) for the server's close frame. */
static void close_politely(struct conn *c)
{
    uint8_t cp[WS_MAX_CONTROL_PAYLOAD];
    if (send_frame(c, WS_OP_CLOSE, cp, ws_close_payload_write(cp, WS_CLOSE_NORMAL, "bye", 3)) < 0)
        return;
    shutdown(c->fd, SHUT_WR);
    int64_t deadline = now_ms() + CLOSE_WAIT_MS;
    char junk[4096];
    while (now_ms() < deadline) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (poll(&p, 1, (int)(deadline - now_ms())) <= 0 || recv(c->fd, junk, sizeof(junk), 0) <= 0)
            break; /* the server's close frame and then its FIN, or time is up */
    }
    fprintf(stderr, "subscriber: closed (1000)\n");
}

static int usage(void)
{
    fprintf(stderr, "usage: ringcast-subscriber-example [--token JWT] [--backoff-base S] "
                    "[--backoff-cap S] ws://HOST:PORT/PATH ROOM [ROOM...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *token = NULL, *url = NULL;
    double base = 0.5, cap = 30.0; /* seconds */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--token") && i + 1 < argc)
            token = argv[++i];
        else if (!strcmp(argv[i], "--backoff-base") && i + 1 < argc)
            base = atof(argv[++i]);
        else if (!strcmp(argv[i], "--backoff-cap") && i + 1 < argc)
            cap = atof(argv[++i]);
        else if (argv[i][0] == '-')
            return usage();
        else if (!url)
            url = argv[i];
        else if (nrooms < MAX_ROOMS && strlen(argv[i]) < 256)
            rooms[nrooms++].name = argv[i];
        else
            return usage();
    }
    /* ws://HOST[:PORT][/PATH]: enough URL for an example (no IPv6 literals, no wss://). */
    char host[256], port[8] = "80";
    const char *path;
    if (!url || strncmp(url, "ws://", 5) || nrooms == 0 || base <= 0 || cap < base)
        return usage();
    size_t hl = strcspn(url + 5, ":/");
    path = url + 5 + hl + strcspn(url + 5 + hl, "/");
    if (hl == 0 || hl >= sizeof(host))
        return usage();
    memcpy(host, url + 5, hl);
    host[hl] = 0;
    if (url[5 + hl] == ':')
        snprintf(port, sizeof(port), "%.*s", (int)(path - (url + 6 + hl)), url + 6 + hl);

    /* SIGINT/SIGTERM are blocked except inside ppoll, so a signal always ends a wait. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &run_mask);
    sigdelset(&run_mask, SIGINT);
    sigdelset(&run_mask, SIGTERM);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    unsigned seed;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = (unsigned)now_ms();
    srand48(seed);

    struct conn c = {.fd = -1};
    int attempt = 0, rc = 0;
    while (!stop) {
        bool healthy = false;
        int o = ws_open(&c, host, port, *path ? path : "/", token);
        if (o > 0) {
            rc = 1; /* 401/403/404: retrying will not fix it */
            break;
        }
        if (o == 0) {
            fprintf(stderr, "subscriber: connected to %s\n", url);
            if (subscribe_all(&c) == 0 && run_connection(&c, &healthy) == 0) {
                close_politely(&c);
                break;
            }
        }
        if (c.fd >= 0)
            close(c.fd);
        c.fd = -1;
        attempt = healthy ? 0 : attempt + 1;
        double ceil = base * (double)(1u << (attempt < 20 ? attempt : 20));
        double delay = drand48() * (ceil < cap ? ceil : cap); /* full jitter */
        fprintf(stderr, "subscriber: reconnecting in %.2f s\n", delay);
        wait_fd(-1, 0, (int)(delay * 1000));
    }
    if (c.fd >= 0)
        close(c.fd);
    free(c.buf);
    free(c.msg);
    return rc;
}
