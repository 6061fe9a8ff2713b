/* floor.c - the floor under ringcast's cost per publish: a raw io_uring server that does only
 * what any broadcast server must (bench/scenarios/rooms-100.ini, docs/benchmarks.md).
 *
 * One thread, one ring (SINGLE_ISSUER | DEFER_TASKRUN, as the engine), multishot accept, one
 * recv in flight per connection straight into its input buffer. A publish is parsed with the
 * engine's own proto/ parsers, its room found in an open-addressed hash table, its event
 * encoded ONCE into a refcounted frame, then one IORING_OP_SEND of that frame per subscriber
 * and one for the publish response; all go to the kernel in the loop's single submit. Nothing
 * else: no limits, heartbeats, rate limit, slow-consumer policy, close frames, metrics, send
 * queues or corking, and the event's timestamp is read once per loop iteration. It speaks just
 * enough of docs/protocol.md for ringcast-load (handshake, subscribe, publish with seq and
 * subscribers in the response). Order per connection relies on io_uring issuing one
 * connection's sends in submission order, which holds while no send has to wait for socket
 * space (ringcast-load checks order, so a violation would show up as out_of_order).
 *
 * usage: floor [--port PORT] [--bind 127.0.0.1]   (0: any free port; prints "floor listening on
 *        127.0.0.1:PORT")
 */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proto/envelope.h"
#include "proto/http.h"
#include "proto/json.h"
#include "proto/ws_frame.h"

#define RING_ENTRIES 4096
#define ROOM_SLOTS   4096 /* open addressing, power of two: ample for rooms-100 */
#define RECV_CHUNK   4096 /* room kept free in a connection's input buffer for each recv */
#define MAX_SUBS     16   /* rooms per connection */

enum { TAG_ACCEPT = 1, TAG_RECV = 2, TAG_SEND = 3 }; /* low 2 bits of user_data */

struct frame { /* one encoded message, shared by every send of it */
    unsigned refs;
    unsigned len;
    uint8_t *data;
    uint8_t buf[];
};

struct room {
    char name[256];
    size_t len;
    uint64_t seq;
    struct conn **subs;
    size_t nsubs, cap;
};

struct conn {
    int fd;
    bool upgraded;
    struct ws_parser wp;
    uint8_t *in;
    size_t len, cap;
    struct room *rooms[MAX_SUBS];
    unsigned nrooms;
};

static struct io_uring ring;
static struct room *table[ROOM_SLOTS];
static jsmntok_t toks[ENV_MAX_TOKENS];
static int64_t now_ms;
static volatile sig_atomic_t stop;

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    if (!sqe) { /* SQ full: hand what we have to the kernel and take a fresh entry */
        io_uring_submit(&ring);
        sqe = io_uring_get_sqe(&ring);
    }
    if (!sqe)
        abort();
    return sqe;
}

static void accept_arm(int lfd)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_multishot_accept(sqe, lfd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, TAG_ACCEPT);
}

static void frame_release(struct frame *f)
{
    if (--f->refs == 0)
        free(f);
}

/* Queues one send of f to c; the send holds a reference until its completion. */
static void send_frame(struct conn *c, struct frame *f)
{
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_send(sqe, c->fd, f->data, f->len, MSG_NOSIGNAL | MSG_WAITALL);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)f | TAG_SEND);
    f->refs++;
}

/* A frame of one WebSocket text message with payload p (refs 0: the sends take them). */
static struct frame *frame_text(const void *p, size_t n)
{
    struct frame *f = malloc(sizeof(*f) + WS_MAX_HEADER_UNMASKED + n);
    if (!f)
        abort();
    memcpy(f->buf + WS_MAX_HEADER_UNMASKED, p, n);
    f->data = ws_frame_header_prepend(f->buf + WS_MAX_HEADER_UNMASKED, WS_OP_TEXT, n);
    f->len = (unsigned)(f->buf + WS_MAX_HEADER_UNMASKED + n - f->data);
    f->refs = 0;
    return f;
}

static void recv_arm(struct conn *c)
{
    if (c->cap - c->len < RECV_CHUNK) {
        c->cap = c->cap ? c->cap * 2 : 2 * RECV_CHUNK;
        if (!(c->in = realloc(c->in, c->cap)))
            abort();
    }
    struct io_uring_sqe *sqe = sqe_get();
    io_uring_prep_recv(sqe, c->fd, c->in + c->len, c->cap - c->len, 0);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | TAG_RECV);
}

static struct room *room_get(struct span name)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < name.len; i++)
        h = (h ^ (uint8_t)name.base[i]) * 16777619u;
    for (uint32_t i = h & (ROOM_SLOTS - 1);; i = (i + 1) & (ROOM_SLOTS - 1)) {
        struct room *r = table[i];
        if (r && span_eq(name, (struct span){r->name, r->len}))
            return r;
        if (!r) {
            if (name.len >= sizeof(r->name) || !(r = calloc(1, sizeof(*r))))
                return NULL;
            memcpy(r->name, name.base, name.len);
            r->len = name.len;
            return table[i] = r;
        }
    }
}

static void respond(struct conn *c, struct jw *w)
{
    send_frame(c, frame_text(w->buf, w->len));
}

static void on_request(struct conn *c, const char *msg, size_t len)
{
    static char out[1 << 17];
    struct env_request req;
    struct room *r;
    if (env_request_parse(msg, len, toks, ENV_MAX_TOKENS, &req) != ENV_OK || !req.channel.base ||
        !(r = room_get(req.channel)))
        return;
    struct jw w;
    jw_init(&w, out, sizeof(out));
    if (span_eq_lit(req.event, "subscribe") && c->nrooms < MAX_SUBS) {
        if (r->nsubs == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 64;
            if (!(r->subs = realloc(r->subs, r->cap * sizeof(*r->subs))))
                abort();
        }
        r->subs[r->nsubs++] = c;
        c->rooms[c->nrooms++] = r;
        env_write_response_begin(&w, SPAN_LIT("subscribe"));
        jw_lit(&w, "{\"status\":\"subscribed\",\"channel\":");
        jw_str(&w, r->name, r->len);
        jw_lit(&w, "}");
        env_write_end(&w, req.id, now_ms);
        respond(c, &w);
    } else if (span_eq_lit(req.event, "publish") && req.payload.base) {
        /* Encoded once, in place after room for the largest header; every send shares it. */
        size_t cap = len + r->len + 256; /* event name and payload come from msg */
        struct frame *f = malloc(sizeof(*f) + WS_MAX_HEADER_UNMASKED + cap);
        if (!f)
            abort();
        struct span ev = req.pub_event.base ? req.pub_event : SPAN_LIT("message");
        jw_init(&w, (char *)f->buf + WS_MAX_HEADER_UNMASKED, cap);
        env_write_event(&w, ev, (struct span){r->name, r->len}, req.payload, now_ms, ++r->seq);
        if (w.overflow)
            abort();
        f->data = ws_frame_header_prepend(f->buf + WS_MAX_HEADER_UNMASKED, WS_OP_TEXT, w.len);
        f->len = (unsigned)(f->buf + WS_MAX_HEADER_UNMASKED + w.len - f->data);
        f->refs = 1; /* ours, until every send holds its own */
        for (size_t i = 0; i < r->nsubs; i++)
            send_frame(r->subs[i], f);
        frame_release(f);
        jw_init(&w, out, sizeof(out));
        env_write_response_begin(&w, SPAN_LIT("publish"));
        jw_lit(&w, "{\"status\":\"published\",\"channel\":");
        jw_str(&w, r->name, r->len);
        jw_lit(&w, ",\"seq\":");
        jw_u64(&w, r->seq);
        jw_lit(&w, ",\"subscribers\":");
        jw_u64(&w, r->nsubs);
        jw_lit(&w, "}");
        env_write_end(&w, req.id, now_ms);
        respond(c, &w);
    }
}

static void drop(struct conn *c)
{
    for (unsigned i = 0; i < c->nrooms; i++) {
        struct room *r = c->rooms[i];
        for (size_t j = 0; j < r->nsubs; j++)
            if (r->subs[j] == c)
                r->subs[j--] = r->subs[--r->nsubs];
    }
    close(c->fd); /* sends still in flight hold the file and their frames, not c */
    free(c->in);
    free(c);
}

/* Handles what a recv brought; returns false when the connection is done. */
static bool on_data(struct conn *c)
{
    size_t off = 0;
    if (!c->upgraded) {
        struct http_request req;
        int r = http_request_parse((char *)c->in, c->len, HTTP_MAX_HEAD_DEFAULT, &req);
        if (r == HTTP_NEED_MORE)
            return true;
        if (r < 0 || http_upgrade_check(&req))
            return false;
        char resp[512];
        size_t n = http_write_101(resp, sizeof(resp), req.ws_key, SPAN_NULL);
        struct frame *f = malloc(sizeof(*f) + n);
        if (!f)
            abort();
        *f = (struct frame){.refs = 0, .len = (unsigned)n, .data = f->buf};
        memcpy(f->buf, resp, n);
        send_frame(c, f);
        c->upgraded = true;
        ws_parser_init(&c->wp, WS_ROLE_SERVER, 1 << 20, false);
        off = (size_t)r;
    }
    for (;;) {
        struct ws_frame f;
        enum ws_err err;
        int r = ws_frame_parse(&c->wp, c->in + off, c->len - off, &f, &err, NULL);
        if (r == WS_NEED_MORE)
            break;
        if (r < 0 || f.opcode == WS_OP_CLOSE)
            return false;
        off += (size_t)r;
        if (f.opcode == WS_OP_TEXT && f.fin)
            on_request(c, (const char *)f.payload, f.len);
    }
    memmove(c->in, c->in + off, c->len - off);
    c->len -= off;
    return true;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    int port = 8765, one = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--bind") && i + 1 < argc) {
            i++; /* accepted for bench/lib/servers.py; always 127.0.0.1 */
        } else {
            fprintf(stderr, "usage: floor [--port PORT] [--bind 127.0.0.1]\n");
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: the wait returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4096)) {
        perror("floor: bind/listen");
        return 2;
    }
    socklen_t alen = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &alen); /* --port 0: the one the kernel chose */
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL |
                                         IORING_SETUP_CQSIZE,
                                .cq_entries = RING_ENTRIES * 8};
    int err = io_uring_queue_init_params(RING_ENTRIES, &ring, &p);
    if (err < 0) {
        fprintf(stderr, "floor: io_uring_queue_init: %s\n", strerror(-err));
        return 2;
    }
    accept_arm(lfd);
    fprintf(stderr, "floor listening on 127.0.0.1:%u\n", ntohs(a.sin_port));

    while (!stop) {
        if (io_uring_submit_and_wait(&ring, 1) < 0 && !stop)
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            seen++;
            uint64_t ud = cqe->user_data;
            void *ptr = (void *)(uintptr_t)(ud & ~(uint64_t)3);
            if ((ud & 3) == TAG_SEND) {
                frame_release(ptr);
            } else if ((ud & 3) == TAG_RECV) {
                struct conn *c = ptr;
                if (cqe->res > 0) {
                    c->len += (size_t)cqe->res;
                    if (on_data(c)) {
                        recv_arm(c);
                        continue;
                    }
                }
                drop(c);
            } else if ((ud & 3) == TAG_ACCEPT) {
                if (cqe->res >= 0) {
                    struct conn *c = calloc(1, sizeof(*c));
                    if (!c)
                        abort();
                    c->fd = cqe->res;
                    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    recv_arm(c);
                }
                if (!(cqe->flags & IORING_CQE_F_MORE))
                    accept_arm(lfd); /* the multishot ended */
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
    io_uring_queue_exit(&ring);
    return 0;
}
