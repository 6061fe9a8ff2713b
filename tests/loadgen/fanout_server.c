/* fanout_server.c - a minimal, single-threaded ringcast-protocol server for measuring how many
 * deliveries per second ringcast-load absorbs (tests/loadgen/test_throughput.py, docs).
 *
 * It implements just enough: the handshake, subscribe and publish requests (request form), and
 * fan-out with the event encoded once per publish and appended to every subscriber's output
 * buffer. Output is flushed once per epoll batch, so one write() carries many events: the
 * server's cost per delivery is a memcpy, which lets one core of it outrun one core of the
 * load generator. Not a reference implementation: no limits, no heartbeats, no close codes.
 *
 * usage: fanout_server [PORT | --port PORT] [--bind 127.0.0.1]
 *        (0 or absent: any free port; prints "listening on ..."; it binds 127.0.0.1 only)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto/envelope.h"
#include "proto/http.h"
#include "proto/json.h"
#include "proto/ws_frame.h"

#define MAX_CONNS 65536
#define MAX_ROOMS 1024

struct buf {
    uint8_t *p;
    size_t len, cap;
};

struct conn {
    int fd;
    bool upgraded, dirty;
    struct buf in, out;
    struct ws_parser wp;
};

struct room {
    char name[256];
    size_t len;
    uint64_t seq;
    int *subs;
    size_t nsubs, cap;
};

static struct conn *conns[MAX_CONNS];
static struct room rooms[MAX_ROOMS];
static size_t nrooms;
static int dirty[MAX_CONNS];
static size_t ndirty;
static jsmntok_t toks[ENV_MAX_TOKENS];
static volatile sig_atomic_t stop;

static void put(struct buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void mark(struct conn *c)
{
    if (!c->dirty) {
        c->dirty = true;
        dirty[ndirty++] = c->fd;
    }
}

static void send_text(struct conn *c, const char *s, size_t n)
{
    uint8_t h[WS_MAX_HEADER];
    size_t hl = ws_frame_header_write(h, WS_OP_TEXT, true, n, NULL);
    put(&c->out, h, hl);
    put(&c->out, s, n);
    mark(c);
}

static struct room *room_get(struct span name)
{
    for (size_t i = 0; i < nrooms; i++)
        if (span_eq(name, (struct span){rooms[i].name, rooms[i].len}))
            return &rooms[i];
    if (nrooms == MAX_ROOMS || name.len >= sizeof(rooms[0].name))
        return NULL;
    struct room *r = &rooms[nrooms++];
    memcpy(r->name, name.base, name.len);
    r->len = name.len;
    return r;
}

static void on_request(struct conn *c, const char *msg, size_t len)
{
    static char out[1 << 17];
    struct env_request req;
    if (env_request_parse(msg, len, toks, ENV_MAX_TOKENS, &req) != ENV_OK || !req.channel.base)
        return;
    struct room *r = room_get(req.channel);
    if (!r)
        return;
    struct jw w;
    jw_init(&w, out, sizeof(out));
    if (span_eq_lit(req.event, "subscribe")) {
        if (r->nsubs == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 64;
            r->subs = realloc(r->subs, r->cap * sizeof(int));
        }
        r->subs[r->nsubs++] = c->fd;
        env_write_response_begin(&w, SPAN_LIT("subscribe"));
        jw_lit(&w, "{\"status\":\"subscribed\",\"channel\":");
        jw_str(&w, r->name, r->len);
        jw_lit(&w, "}");
        env_write_end(&w, req.id, 0);
        send_text(c, out, w.len);
    } else if (span_eq_lit(req.event, "publish") && req.payload.base) {
        r->seq++;
        /* Encoded once: header and body built in one buffer, then copied to every subscriber. */
        struct span ev = req.pub_event.base ? req.pub_event : SPAN_LIT("message");
        jw_init(&w, out + WS_MAX_HEADER_UNMASKED, sizeof(out) - WS_MAX_HEADER_UNMASKED);
        env_write_event(&w, ev, (struct span){r->name, r->len}, req.payload, 1795000000000ll,
                        r->seq);
        uint8_t *frame =
            ws_frame_header_prepend((uint8_t *)out + WS_MAX_HEADER_UNMASKED, WS_OP_TEXT, w.len);
        size_t flen = (size_t)((uint8_t *)out + WS_MAX_HEADER_UNMASKED + w.len - frame);
        for (size_t i = 0; i < r->nsubs; i++) {
            struct conn *s = conns[r->subs[i]];
            if (s) {
                put(&s->out, frame, flen);
                mark(s);
            }
        }
        char ack[512];
        struct jw a;
        jw_init(&a, ack, sizeof(ack));
        env_write_response_begin(&a, SPAN_LIT("publish"));
        jw_lit(&a, "{\"status\":\"published\",\"channel\":");
        jw_str(&a, r->name, r->len);
        jw_lit(&a, ",\"seq\":");
        jw_u64(&a, r->seq);
        jw_lit(&a, ",\"subscribers\":");
        jw_u64(&a, r->nsubs);
        jw_lit(&a, "}");
        env_write_end(&a, req.id, 0);
        send_text(c, ack, a.len);
    }
}

static void drop(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    for (size_t i = 0; i < nrooms; i++)
        for (size_t j = 0; j < rooms[i].nsubs; j++)
            if (rooms[i].subs[j] == c->fd)
                rooms[i].subs[j--] = rooms[i].subs[--rooms[i].nsubs];
    conns[c->fd] = NULL;
    close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
}

static void on_readable(int ep, struct conn *c)
{
    uint8_t tmp[65536];
    ssize_t n = read(c->fd, tmp, sizeof(tmp));
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN)
            drop(ep, c);
        return;
    }
    put(&c->in, tmp, (size_t)n);
    size_t off = 0;
    if (!c->upgraded) {
        struct http_request req;
        int r = http_request_parse((char *)c->in.p, c->in.len, HTTP_MAX_HEAD_DEFAULT, &req);
        if (r == HTTP_NEED_MORE)
            return;
        if (r < 0 || http_upgrade_check(&req)) {
            drop(ep, c);
            return;
        }
        char resp[512];
        size_t rl = http_write_101(resp, sizeof(resp), req.ws_key, SPAN_NULL);
        put(&c->out, resp, rl);
        mark(c);
        c->upgraded = true;
        ws_parser_init(&c->wp, WS_ROLE_SERVER, 1 << 20, false);
        off = (size_t)r;
    }
    for (;;) {
        struct ws_frame f;
        enum ws_err err;
        int r = ws_frame_parse(&c->wp, c->in.p + off, c->in.len - off, &f, &err, NULL);
        if (r == WS_NEED_MORE)
            break;
        if (r < 0) {
            drop(ep, c);
            return;
        }
        off += (size_t)r;
        if (f.opcode == WS_OP_TEXT && f.fin)
            on_request(c, (const char *)f.payload, f.len);
        else if (f.opcode == WS_OP_CLOSE) {
            drop(ep, c);
            return;
        }
    }
    memmove(c->in.p, c->in.p + off, c->in.len - off);
    c->in.len -= off;
}

static void flush_all(int ep)
{
    for (size_t i = 0; i < ndirty; i++) {
        struct conn *c = conns[dirty[i]];
        if (!c)
            continue;
        c->dirty = false;
        while (c->out.len) {
            ssize_t n = write(c->fd, c->out.p, c->out.len);
            if (n < 0) {
                if (errno == EAGAIN) {
                    /* Slow reader: keep the rest and retry on EPOLLOUT. */
                    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = c->fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                } else {
                    drop(ep, c);
                }
                break;
            }
            memmove(c->out.p, c->out.p + n, c->out.len - (size_t)n);
            c->out.len -= (size_t)n;
        }
    }
    ndirty = 0;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    /* [PORT], or --port PORT (and --bind 127.0.0.1, accepted for bench/lib/servers.py) */
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bind") && i + 1 < argc)
            i++;
        else
            port = atoi(argv[i]);
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 4096)) {
        perror("fanout_server: bind/listen");
        return 1;
    }
    socklen_t al = sizeof(a);
    getsockname(lfd, (struct sockaddr *)&a, &al);
    fprintf(stderr, "fanout_server listening on 127.0.0.1:%u\n", ntohs(a.sin_port));
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event evs[512];
    while (!stop) {
        int n = epoll_wait(ep, evs, 512, 200);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAX_CONNS) {
                        close(c);
                        continue;
                    }
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    conns[c] = calloc(1, sizeof(struct conn));
                    conns[c]->fd = c;
                    struct epoll_event e = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
                }
                continue;
            }
            struct conn *c = conns[fd];
            if (!c)
                continue;
            if (evs[i].events & EPOLLOUT) {
                struct epoll_event e = {.events = EPOLLIN, .data.fd = fd};
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &e);
                mark(c);
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(ep, c);
        }
        flush_all(ep);
    }
    return 0;
}
