/* connlog.c - per-connection log lines (see connlog.h). */
#include "connlog.h"

#include <stdarg.h>
#include <stdio.h>

#include "auth.h"
#include "conn.h"

void connlog(const struct conn *c, enum log_level level, const char *fmt, ...)
{
    if (level < log_min_level)
        return;
    char peer[96], msg[768];
    conn_peer_format(c, peer, sizeof(peer));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* The token's user (sub, printable by auth.c's rule), so an operator can tell whose
     * connection a line is about. */
    struct span sub = c->grant ? auth_grant_sub(c->grant) : SPAN_NULL;
    if (sub.len)
        log_msg(level, "%s user=%.*s: %s", peer, (int)sub.len, sub.base, msg);
    else
        log_msg(level, "%s: %s", peer, msg);
}

/* One limiter per status a client can provoke; the rest share one. */
static struct log_limit lim_400, lim_401, lim_403, lim_404, lim_405, lim_408, lim_426, lim_429,
    lim_431, lim_503, lim_other;

void connlog_refusal(const struct conn *c, int status, const char *why)
{
    if (log_min_level > LOG_LVL_INFO)
        return;
    struct log_limit *l;
    switch (status) {
    case 400: l = &lim_400; break;
    case 401: l = &lim_401; break;
    case 403: l = &lim_403; break;
    case 404: l = &lim_404; break;
    case 405: l = &lim_405; break;
    case 408: l = &lim_408; break;
    case 426: l = &lim_426; break;
    case 429: l = &lim_429; break;
    case 431: l = &lim_431; break;
    case 503: l = &lim_503; break;
    default: l = &lim_other; break;
    }
    char peer[96];
    conn_peer_format(c, peer, sizeof(peer));
    log_limited(l, LOG_LVL_INFO, "%s: handshake refused with %d: %s", peer, status,
                why ? why : "-");
}
