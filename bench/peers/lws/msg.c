/* msg.c - refcounted, once-serialized outgoing messages and their JSON appenders (msg.h). */
#include "msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libwebsockets.h>

static void die(const char *why)
{
    fprintf(stderr, "lws-broadcast: %s\n", why);
    abort();
}

struct msg *msg_new(size_t cap)
{
    struct msg *m = malloc(sizeof(*m) + LWS_PRE + cap);
    if (!m)
        die("out of memory");
    m->refs = 1;
    m->len = 0;
    m->cap = cap;
    return m;
}

void msg_unref(struct msg *m)
{
    if (--m->refs == 0)
        free(m);
}

unsigned char *msg_data(struct msg *m)
{
    return m->buf + LWS_PRE;
}

void msg_put(struct msg *m, const void *p, size_t n)
{
    if (m->len + n > m->cap)
        die("message buffer overflow"); /* a sizing bug in the caller */
    memcpy(msg_data(m) + m->len, p, n);
    m->len += n;
}

void msg_put_u64(struct msg *m, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    msg_put(m, tmp, (size_t)n);
}

void msg_put_str(struct msg *m, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    msg_put_lit(m, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            msg_put(m, e, 2);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            msg_put(m, e, 6);
        } else {
            msg_put(m, &s[i], 1);
        }
    }
    msg_put_lit(m, "\"");
}

void msg_put_timestamp(struct msg *m)
{
    struct timespec ts;
    struct tm tm;
    char out[40];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, sizeof(out), "\"%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, sizeof(out) - n, ".%03ldZ\"", ts.tv_nsec / 1000000);
    msg_put(m, out, n);
}
