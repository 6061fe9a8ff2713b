/* http_client.c - one blocking HTTP/1.1 request per call (see http_client.h). */
#include "http_client.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool hc_parse_url(const char *url, struct hc_target *t)
{
    memset(t, 0, sizeof(*t));
    if (strncmp(url, "http://", 7) != 0)
        return false;
    const char *h = url + 7;
    size_t hl = strcspn(h, ":/?#");
    if (hl == 0 || hl >= sizeof(t->host))
        return false;
    memcpy(t->host, h, hl);
    const char *p = h + hl;
    snprintf(t->port, sizeof(t->port), "80");
    if (*p == ':') {
        p++;
        size_t pl = strspn(p, "0123456789");
        if (pl == 0 || pl > 5 || atoi(p) < 1 || atoi(p) > 65535)
            return false;
        memcpy(t->port, p, pl);
        t->port[pl] = 0;
        p += pl;
    }
    /* A base path ("http://host/ringcast") is kept without its trailing slash. */
    size_t bl = strcspn(p, "?#");
    while (bl && p[bl - 1] == '/')
        bl--;
    if (bl >= sizeof(t->base) || (p[bl] && p[bl] != '/' && p[bl] != '?' && p[bl] != '#'))
        return false;
    memcpy(t->base, p, bl);
    return true;
}

static int wait_fd(int fd, short ev, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd pfd = {fd, ev, 0};
        int r = poll(&pfd, 1, (int)left);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
    }
}

static int connect_to(const struct hc_target *t, int64_t deadline, char *err, size_t errcap)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(t->host, t->port, &hints, &res);
    if (g) {
        snprintf(err, errcap, "cannot resolve %s: %s", t->host, gai_strerror(g));
        return -1;
    }
    int fd = -1, last = ECONNREFUSED;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            last = errno;
            continue;
        }
        int r = connect(fd, a->ai_addr, a->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            r = wait_fd(fd, POLLOUT, deadline);
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (r == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
                r = -soerr;
            if (r < 0)
                errno = -r;
        }
        if (r < 0) {
            last = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errcap, "cannot connect to %s:%s: %s", t->host, t->port, strerror(last));
    return fd;
}

int hc_request(const struct hc_target *t, const char *method, const char *path, const char *key,
               const char *body, size_t body_len, int timeout_ms, struct hc_response *out)
{
    memset(out, 0, sizeof(*out));
    int64_t deadline = now_ms() + timeout_ms;
    int fd = connect_to(t, deadline, out->error, sizeof(out->error));
    if (fd < 0)
        return -1;
    size_t cap = 1024 + strlen(path) + strlen(t->base) + strlen(t->host) + (key ? strlen(key) : 0);
    char *req = malloc(cap + body_len);
    if (!req) {
        close(fd);
        snprintf(out->error, sizeof(out->error), "out of memory");
        return -1;
    }
    int n = snprintf(req, cap,
                     "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: ringcast-mcp\r\n"
                     "Accept: */*\r\nConnection: close\r\n%s%s%s",
                     method, t->base, path, t->host, t->port, key && key[0] ? "X-API-Key: " : "",
                     key && key[0] ? key : "", key && key[0] ? "\r\n" : "");
    if (body)
        n += snprintf(req + n, cap - (size_t)n,
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
    n += snprintf(req + n, cap - (size_t)n, "\r\n");
    if (body_len)
        memcpy(req + n, body, body_len);
    size_t total = (size_t)n + body_len, sent = 0;
    int rc = 0;
    while (sent < total && rc == 0) {
        ssize_t w = send(fd, req + sent, total - sent, MSG_NOSIGNAL);
        if (w > 0)
            sent += (size_t)w;
        else if (w < 0 && (errno == EAGAIN || errno == EINTR))
            rc = wait_fd(fd, POLLOUT, deadline);
        else
            rc = -(w < 0 ? errno : EPIPE);
    }
    free(req);
    /* Read until the server closes (we asked for Connection: close) or the response is whole. */
    size_t len = 0, rcap = 4096, head_len = 0;
    long long content_length = -1;
    char *buf = rc == 0 ? malloc(rcap + 1) : NULL;
    if (rc == 0 && !buf)
        rc = -ENOMEM;
    while (rc == 0) {
        if (head_len && content_length >= 0 && len >= head_len + (size_t)content_length)
            break;
        if (len == rcap) {
            if (rcap >= HC_MAX_RESPONSE) {
                rc = -EFBIG;
                break;
            }
            rcap *= 2;
            char *nb = realloc(buf, rcap + 1);
            if (!nb) {
                rc = -ENOMEM;
                break;
            }
            buf = nb;
        }
        ssize_t r = recv(fd, buf + len, rcap - len, 0);
        if (r > 0) {
            len += (size_t)r;
            buf[len] = 0;
            if (!head_len) {
                char *e = strstr(buf, "\r\n\r\n");
                if (e) {
                    head_len = (size_t)(e - buf) + 4;
                    for (char *h = strstr(buf, "\r\n"); h && h < e; h = strstr(h + 2, "\r\n"))
                        if (strncasecmp(h + 2, "Content-Length:", 15) == 0)
                            content_length = strtoll(h + 17, NULL, 10);
                }
            }
        } else if (r == 0) {
            break;
        } else if (errno == EAGAIN || errno == EINTR) {
            rc = wait_fd(fd, POLLIN, deadline);
        } else {
            rc = -errno;
        }
    }
    close(fd);
    if (rc < 0) {
        free(buf);
        snprintf(out->error, sizeof(out->error), "request to %s:%s failed: %s", t->host, t->port,
                 rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
        return -1;
    }
    if (!head_len || len < 12 || strncmp(buf, "HTTP/1.", 7) != 0) {
        free(buf);
        snprintf(out->error, sizeof(out->error), "%s:%s answered something that is not HTTP",
                 t->host, t->port);
        return -1;
    }
    out->status = atoi(buf + 9);
    size_t blen = len - head_len;
    if (content_length >= 0 && (size_t)content_length < blen)
        blen = (size_t)content_length;
    memmove(buf, buf + head_len, blen);
    buf[blen] = 0;
    out->body = buf;
    out->body_len = blen;
    return 0;
}
