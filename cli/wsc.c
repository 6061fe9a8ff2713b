/* wsc.c - the blocking WebSocket client behind ringcast-cli (wsc.h). */
#include "wsc.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "proto/http.h"

/* A refused upgrade's body is one line of text (docs/protocol.md, section 1); this much of it
 * is shown. */
#define REFUSAL_BODY_MAX 512

static void set_err(struct wsc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct wsc *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left until deadline (-1: none), for poll. */
static int left_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t d = deadline - now_ms();
    return d < 0 ? 0 : d > 1000000000 ? 1000000000 : (int)d;
}

static int64_t deadline_in(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* ---- URL ---- */

int wsc_url_parse(const char *url, struct wsc_url *u, const char **err)
{
    memset(u, 0, sizeof(*u));
    const char *p;
    if (strncasecmp(url, "wss://", 6) == 0) {
        u->tls = true;
        p = url + 6;
    } else if (strncasecmp(url, "ws://", 5) == 0) {
        p = url + 5;
    } else {
        *err = "the URL must start with ws:// or wss:// (for example ws://127.0.0.1:8765/ws)";
        return -1;
    }
    const char *hend;
    const char *after;
    if (*p == '[') {
        hend = strchr(p, ']');
        if (!hend) {
            *err = "unterminated [IPv6] host in the URL";
            return -1;
        }
        p++;
        after = hend + 1;
    } else {
        hend = p + strcspn(p, ":/?#");
        after = hend;
    }
    size_t hlen = (size_t)(hend - p);
    if (hlen == 0 || hlen >= sizeof(u->host)) {
        *err = hlen ? "host name too long" : "the URL has no host";
        return -1;
    }
    memcpy(u->host, p, hlen);
    if (strcspn(u->host, " \t\r\n@") != hlen) {
        *err = "the URL's host holds a space, a control character or user info";
        return -1;
    }
    p = after;
    if (*p == ':') {
        p++;
        size_t n = strspn(p, "0123456789");
        long port = n && n <= 5 ? strtol(p, NULL, 10) : 0;
        if (port < 1 || port > 65535 || (p[n] && !strchr("/?#", p[n]))) {
            *err = "the URL's port must be a number from 1 to 65535";
            return -1;
        }
        snprintf(u->port, sizeof(u->port), "%ld", port);
        p += n;
    } else if (*p && !strchr("/?#", *p)) {
        *err = "unexpected character after the URL's host";
        return -1;
    } else {
        strcpy(u->port, u->tls ? "443" : "80");
    }
    size_t tlen = strcspn(p, "#");
    if (tlen + 2 > sizeof(u->target)) {
        *err = "the URL's path is too long";
        return -1;
    }
    if (*p == '?')
        u->target[0] = '/';
    memcpy(u->target + strlen(u->target), p, tlen);
    if (u->target[0] == 0)
        strcpy(u->target, "/");
    bool v6 = strchr(u->host, ':') != NULL;
    snprintf(u->host_header, sizeof(u->host_header), "%s%s%s:%s", v6 ? "[" : "", u->host,
             v6 ? "]" : "", u->port);
    return 0;
}

/* ---- socket I/O ---- */

/* Writes all of buf to the socket, waiting (poll) while it is full. */
static int raw_send_all(struct wsc *c, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    while (len) {
        ssize_t n = send(c->fd, b, len, MSG_NOSIGNAL);
        if (n > 0) {
            b += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
            if (poll(&pfd, 1, 10000) == 0) {
                set_err(c, "send: the server took nothing for 10 s");
                return WSC_ERR;
            }
            continue;
        }
        set_err(c, "send: %s", strerror(errno));
        return WSC_ERR;
    }
    return WSC_OK;
}

/* wss://: sends whatever ciphertext OpenSSL has for the server. */
static int tls_flush(struct wsc *c)
{
    uint8_t buf[16384];
    size_t n;
    while ((n = tlsc_out_take(c->tls, buf, sizeof(buf))) > 0)
        if (raw_send_all(c, buf, n))
            return WSC_ERR;
    return WSC_OK;
}

/* Writes all of buf (plaintext: over wss:// it is encrypted first). */
static int send_all(struct wsc *c, const void *buf, size_t len)
{
    if (!c->tls)
        return raw_send_all(c, buf, len);
    char why[256];
    if (tlsc_write(c->tls, buf, len, why, sizeof(why))) {
        set_err(c, "TLS: %s", why);
        return WSC_ERR;
    }
    return tls_flush(c);
}

/* Grows *buf (capacity *cap; first when it has none yet, doubling from there) to hold at least
 * need bytes. */
static int buf_reserve(struct wsc *c, uint8_t **buf, size_t *cap, size_t need, size_t first)
{
    if (need <= *cap)
        return WSC_OK;
    size_t n = *cap ? *cap : first;
    while (n < need)
        n *= 2;
    uint8_t *nb = realloc(*buf, n);
    if (!nb) {
        set_err(c, "out of memory");
        return WSC_ERR;
    }
    *buf = nb;
    *cap = n;
    return WSC_OK;
}

/* Room in rbuf for extra more bytes after rlen. */
static int rbuf_reserve(struct wsc *c, size_t extra)
{
    return buf_reserve(c, &c->rbuf, &c->rcap, c->rlen + extra, 16384);
}

/* wss://: n bytes of ciphertext arrived in buf: decrypts all it completes into rbuf. Returns
 * WSC_OK with *got plaintext bytes added (0: a record is still incomplete), or WSC_ERR. */
static int tls_input(struct wsc *c, const uint8_t *buf, size_t n, size_t *got)
{
    char why[256];
    *got = 0;
    if (tlsc_feed(c->tls, buf, n)) {
        set_err(c, "out of memory");
        return WSC_ERR;
    }
    for (;;) {
        if (rbuf_reserve(c, 16384))
            return WSC_ERR;
        ssize_t r = tlsc_read(c->tls, c->rbuf + c->rlen, c->rcap - c->rlen, why, sizeof(why));
        if (r == 0)
            break;
        if (r == TLSC_EOF) {
            c->tls_eof = true; /* said once what came before it is parsed (fill) */
            break;
        }
        if (r < 0) {
            set_err(c, "TLS: %s", why);
            return WSC_ERR;
        }
        c->rlen += (size_t)r;
        *got += (size_t)r;
    }
    return tls_flush(c); /* a key update's answer, say */
}

/* recv() returned n <= 0: true when it is worth another try (EINTR, EAGAIN), else false with the
 * error set (the server closed the connection, or why recv failed). */
static bool recv_again(struct wsc *c, ssize_t n)
{
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n == 0)
        set_err(c, "the server closed the connection without a close frame (1006)");
    else
        set_err(c, "recv: %s", strerror(errno));
    return false;
}

/* Reads what the socket has into rbuf, growing it to hold at least want unparsed bytes. Waits
 * until deadline; WSC_INTR when a signal arrives under sigmask. A closed socket is WSC_ERR. */
static int fill(struct wsc *c, size_t want, int64_t deadline, const sigset_t *sigmask)
{
    /* Unparsed bytes move to the front so a frame always sits whole in one buffer. */
    size_t have = c->rlen - c->roff;
    if (c->roff) {
        memmove(c->rbuf, c->rbuf + c->roff, have);
        c->roff = 0;
        c->rlen = have;
    }
    size_t need = (want > have ? want : have) + 4096;
    if (rbuf_reserve(c, need - c->rlen))
        return WSC_ERR;
    if (c->tls_eof) {
        set_err(c, "the server closed the TLS session without a close frame (1006)");
        return WSC_ERR;
    }
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int ms = left_ms(deadline);
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
        int r = ppoll(&pfd, 1, ms < 0 ? NULL : &ts, sigmask);
        if (r < 0 && errno == EINTR)
            return WSC_INTR;
        if (r < 0) {
            set_err(c, "poll: %s", strerror(errno));
            return WSC_ERR;
        }
        if (r == 0)
            return WSC_TIMEOUT;
        if (c->tls) {
            uint8_t cipher[16384];
            ssize_t n = recv(c->fd, cipher, sizeof(cipher), 0);
            size_t got;
            if (n > 0 && tls_input(c, cipher, (size_t)n, &got))
                return WSC_ERR;
            if (n > 0 && got)
                return WSC_OK;
            if (n > 0 && c->tls_eof) {
                set_err(c, "the server closed the TLS session without a close frame (1006)");
                return WSC_ERR;
            }
            if (n > 0)
                continue; /* a record is still incomplete */
            if (recv_again(c, n))
                continue;
            return WSC_ERR;
        }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            return WSC_OK;
        }
        if (recv_again(c, n))
            continue;
        return WSC_ERR;
    }
}

/* Sends one masked frame; control payloads are at most 125 bytes. */
static int send_frame(struct wsc *c, uint8_t opcode, const void *payload, size_t len)
{
    uint8_t key[4];
    if (getrandom(key, sizeof(key), 0) != sizeof(key))
        memset(key, 0x5a, sizeof(key)); /* masking needs no secrecy from this side */
    uint8_t hdr[WS_MAX_HEADER];
    size_t h = ws_frame_header_write(hdr, opcode, true, len, key);
    uint8_t *frame = malloc(h + len + 1);
    if (!frame) {
        set_err(c, "out of memory");
        return WSC_ERR;
    }
    memcpy(frame, hdr, h);
    if (len)
        memcpy(frame + h, payload, len);
    ws_mask(frame + h, len, key, 0);
    int r = send_all(c, frame, h + len);
    free(frame);
    return r;
}

/* ---- handshake ---- */

static int tcp_connect(struct wsc *c, const struct wsc_url *u, int64_t deadline)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res;
    int g = getaddrinfo(u->host, u->port, &hints, &res);
    if (g) {
        set_err(c, "cannot resolve %s: %s", u->host, gai_strerror(g));
        return WSC_ERR;
    }
    int last = ECONNREFUSED;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            r = poll(&pfd, 1, left_ms(deadline));
            int soerr = ETIMEDOUT;
            socklen_t sl = sizeof(soerr);
            if (r > 0)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
            errno = soerr;
            r = soerr ? -1 : 0;
        }
        if (r == 0) {
            c->fd = fd;
            freeaddrinfo(res);
            return WSC_OK;
        }
        last = errno;
        close(fd);
    }
    freeaddrinfo(res);
    set_err(c, "connect to %s: %s", u->host_header, strerror(last));
    return WSC_ERR;
}

/* The refusal's status line and body, for c->err. */
static void refusal(struct wsc *c, const struct http_response *res, size_t head, int64_t deadline)
{
    size_t want = res->content_length >= 0 ? (size_t)res->content_length : REFUSAL_BODY_MAX;
    if (want > REFUSAL_BODY_MAX)
        want = REFUSAL_BODY_MAX;
    /* The server closes after a refusal: read until the body is here or the socket ends. */
    while (c->rlen - head < want && fill(c, head + want, deadline, NULL) == WSC_OK)
        ;
    size_t blen = c->rlen - head < want ? c->rlen - head : want;
    char body[REFUSAL_BODY_MAX + 1];
    memcpy(body, c->rbuf + head, blen);
    body[blen] = 0;
    while (blen && (body[blen - 1] == '\n' || body[blen - 1] == '\r'))
        body[--blen] = 0;
    for (size_t i = 0; i < blen; i++)
        if ((unsigned char)body[i] < 0x20)
            body[i] = ' ';
    set_err(c, "upgrade refused: HTTP %d %.*s%s%s", res->status, (int)res->reason.len,
            res->reason.base, blen ? ": " : "", body);
}

/* wss://: the TLS handshake on the connected socket, within deadline (ctx: the client
 * context, made before connecting so a bad --ca file fails first). */
static int tls_handshake(struct wsc *c, const struct wsc_url *u, SSL_CTX *ctx, int64_t deadline)
{
    char why[512];
    c->tls = calloc(1, sizeof(*c->tls));
    if (!c->tls) {
        set_err(c, "out of memory");
        return WSC_ERR;
    }
    int r = tlsc_start(c->tls, ctx, u->host, why, sizeof(why));
    if (r) {
        set_err(c, "TLS setup for %s: %s", u->host_header, why);
        return WSC_ERR;
    }
    for (;;) {
        r = tlsc_handshake(c->tls, why, sizeof(why));
        /* Handshake messages, or the alert that says why we give up. */
        if (tls_flush(c) && r >= 0)
            return WSC_ERR;
        if (r < 0) {
            bool cert = strncmp(why, "certificate verify failed", 25) == 0;
            set_err(c, "TLS handshake with %s failed: %s%s", u->host_header, why,
                    cert ? " (--ca FILE trusts another CA; --insecure skips the check)" : "");
            return WSC_ERR;
        }
        if (r == 1)
            return WSC_OK;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left_ms(deadline));
        if (pr == 0) {
            set_err(c, "TLS handshake with %s: no answer in time", u->host_header);
            return WSC_ERR;
        }
        if (pr < 0 && errno == EINTR)
            continue;
        uint8_t cipher[16384];
        ssize_t n = pr < 0 ? -1 : recv(c->fd, cipher, sizeof(cipher), 0);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) {
            set_err(c, "TLS handshake with %s failed: %s", u->host_header,
                    n == 0 ? "the server closed the connection" : strerror(errno));
            return WSC_ERR;
        }
        if (tlsc_feed(c->tls, cipher, (size_t)n)) {
            set_err(c, "out of memory");
            return WSC_ERR;
        }
    }
}

int wsc_connect(struct wsc *c, const struct wsc_url *u, const char *token,
                const struct wsc_tls *tls, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    int64_t deadline = deadline_in(timeout_ms);
    SSL_CTX *ctx = NULL;
    if (u->tls) {
        char why[512];
        ctx = tlsc_ctx_new(tls ? tls->ca_file : NULL, tls && tls->insecure, why, sizeof(why));
        if (!ctx) {
            set_err(c, "%s", why);
            return WSC_ERR;
        }
    }
    int r = tcp_connect(c, u, deadline);
    if (!r && ctx)
        r = tls_handshake(c, u, ctx, deadline);
    SSL_CTX_free(ctx); /* the session holds its own reference */
    if (r)
        return WSC_ERR;
    size_t early;
    if (c->tls && tls_input(c, NULL, 0, &early)) /* records that came with the handshake */
        return WSC_ERR;

    uint8_t raw[16];
    char key[WS_KEY_LEN + 4];
    if (getrandom(raw, sizeof(raw), 0) != sizeof(raw)) {
        set_err(c, "getrandom: %s", strerror(errno));
        return WSC_ERR;
    }
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw));
    char req[4096];
    size_t n =
        http_write_upgrade_request(req, sizeof(req), span_from_cstr(u->host_header),
                                   span_from_cstr(u->target), (struct span){key, WS_KEY_LEN});
    if (n == 0) {
        set_err(c, "the URL's path holds a space or a control character");
        return WSC_ERR;
    }
    if (token) {
        if (strcspn(token, " \t\r\n") != strlen(token) || !*token) {
            set_err(c, "--token must be one word without spaces or line breaks");
            return WSC_ERR;
        }
        /* The head ends in a blank line: insert the header before it. */
        int m =
            snprintf(req + n - 2, sizeof(req) - n + 2, "Authorization: Bearer %s\r\n\r\n", token);
        if (m < 0 || (size_t)m >= sizeof(req) - n + 2) {
            set_err(c, "--token is too long");
            return WSC_ERR;
        }
        n = n - 2 + (size_t)m;
    }
    if (send_all(c, req, n))
        return WSC_ERR;

    struct http_response res;
    int head;
    for (;;) {
        head = http_response_parse((const char *)c->rbuf, c->rlen, HTTP_MAX_HEAD_DEFAULT, &res);
        if (head != HTTP_NEED_MORE)
            break;
        int r = fill(c, c->rlen + 1, deadline, NULL);
        if (r == WSC_TIMEOUT) {
            set_err(c, "no answer to the upgrade from %s within %d ms", u->host_header, timeout_ms);
            return WSC_ERR;
        }
        if (r == WSC_INTR) {
            set_err(c, "interrupted while waiting for the upgrade's answer");
            return WSC_ERR;
        }
        if (r) {
            if (c->rlen == 0)
                set_err(c, "%s closed the connection before answering the upgrade", u->host_header);
            return WSC_ERR;
        }
    }
    if (head < 0) {
        set_err(c, "%s answered the upgrade with something that is not HTTP", u->host_header);
        return WSC_ERR;
    }
    if (res.status != 101) {
        refusal(c, &res, (size_t)head, deadline);
        return WSC_ERR;
    }
    if (!ws_accept_matches((struct span){key, WS_KEY_LEN}, res.ws_accept)) {
        set_err(c, "the server's Sec-WebSocket-Accept is wrong: not a WebSocket server?");
        return WSC_ERR;
    }
    /* Frames may have come with the 101 (session.created does): they stay in rbuf. */
    c->roff = (size_t)head;
    ws_parser_init(&c->wp, WS_ROLE_CLIENT, WSC_MAX_MESSAGE, false);
    return WSC_OK;
}

/* ---- messages ---- */

int wsc_send_text(struct wsc *c, const char *s, size_t len)
{
    return send_frame(c, WS_OP_TEXT, s, len);
}

static int msg_append(struct wsc *c, const uint8_t *p, size_t len)
{
    if (buf_reserve(c, &c->msg, &c->mcap, c->mlen + len + 1, 4096) != WSC_OK)
        return WSC_ERR;
    memcpy(c->msg + c->mlen, p, len);
    c->mlen += len;
    c->msg[c->mlen] = 0;
    return WSC_OK;
}

int wsc_recv(struct wsc *c, int timeout_ms, const sigset_t *sigmask, struct span *msg)
{
    int64_t deadline = deadline_in(timeout_ms);
    for (;;) {
        struct ws_frame f;
        enum ws_err err;
        size_t need = 0;
        int r = ws_frame_parse(&c->wp, c->rbuf ? c->rbuf + c->roff : NULL, c->rlen - c->roff, &f,
                               &err, &need);
        if (r == WS_ERROR) {
            uint8_t pl[WS_MAX_CONTROL_PAYLOAD];
            const char *why = ws_err_str(err);
            size_t pn = ws_close_payload_write(pl, ws_err_close_code(err), why, strlen(why));
            send_frame(c, WS_OP_CLOSE, pl, pn);
            c->close_sent = true;
            set_err(c, "protocol error from the server: %s (closed with %u)", why,
                    ws_err_close_code(err));
            return WSC_ERR;
        }
        if (r == WS_NEED_MORE) {
            int fr =
                fill(c, need > c->rlen - c->roff ? need : c->rlen - c->roff + 1, deadline, sigmask);
            if (fr)
                return fr;
            continue;
        }
        c->roff += (size_t)r;
        switch (f.opcode) {
        case WS_OP_TEXT:
        case WS_OP_CONT:
            if (f.msg_start)
                c->mlen = 0;
            if (msg_append(c, f.payload, f.len))
                return WSC_ERR;
            if (f.msg_end) {
                *msg = (struct span){(const char *)c->msg, c->mlen};
                return WSC_OK;
            }
            break;
        case WS_OP_PING:
            if (send_frame(c, WS_OP_PONG, f.payload, f.len))
                return WSC_ERR;
            break;
        case WS_OP_CLOSE:
            c->close_code = f.close_code;
            snprintf(c->close_reason, sizeof(c->close_reason), "%.*s", (int)f.close_reason.len,
                     f.close_reason.base);
            if (!c->close_sent) {
                /* Echo the code (RFC 6455 5.5.1); 1005 goes back as an empty payload. */
                uint8_t pl[WS_MAX_CONTROL_PAYLOAD];
                size_t pn = ws_close_payload_write(pl, f.close_code, NULL, 0);
                send_frame(c, WS_OP_CLOSE, pl, pn);
                c->close_sent = true;
            }
            return WSC_CLOSED;
        default: break; /* pong */
        }
    }
}

int wsc_close(struct wsc *c, uint16_t code, const char *reason)
{
    if (c->fd < 0)
        return WSC_ERR;
    if (!c->close_sent) {
        uint8_t pl[WS_MAX_CONTROL_PAYLOAD];
        size_t pn = ws_close_payload_write(pl, code, reason, reason ? strlen(reason) : 0);
        if (send_frame(c, WS_OP_CLOSE, pl, pn))
            return WSC_ERR;
        c->close_sent = true;
    }
    int64_t deadline = deadline_in(WSC_CLOSE_WAIT_MS);
    for (;;) {
        struct span m;
        int r = wsc_recv(c, left_ms(deadline), NULL, &m);
        if (r == WSC_CLOSED)
            return WSC_OK;
        if (r != WSC_OK)
            return r;
    }
}

void wsc_free(struct wsc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    tlsc_release(&c->tls);
    free(c->rbuf);
    free(c->msg);
    c->rbuf = c->msg = NULL;
    c->roff = c->rlen = c->rcap = c->mlen = c->mcap = 0;
}
