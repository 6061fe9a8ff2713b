/* connlog.h - log lines about one connection: its lifecycle at debug level (accept, upgrade,
 * subscribe, close with code and reason) and handshake refusals at info, rate-limited.
 *
 * Every line starts with the peer and the connection id, "127.0.0.1:40112 (w0-17): ...", IPv6
 * peers in brackets ("[::1]:40112 (w1-3): ..."), so that one grep follows a client.
 */
#ifndef RINGCAST_ENGINE_CONNLOG_H
#define RINGCAST_ENGINE_CONNLOG_H

#include "log.h"

struct conn;

/* Writes "PEER (wN-M): <fmt>" at level ("PEER (wN-M) user=SUB: ..." for a token with a sub). Use
 * conn_debug for lifecycle events. */
void connlog(const struct conn *c, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Lifecycle events: free (no getpeername) unless --log-level debug. */
#define conn_debug(c, ...)                                                                         \
    do {                                                                                           \
        if (log_min_level <= LOG_LVL_DEBUG)                                                        \
            connlog((c), LOG_LVL_DEBUG, __VA_ARGS__);                                              \
    } while (0)

/* A handshake refused with HTTP status (400, 401, 403, 404, 405, 408, 426, 429, 431, 503) and why:
 * logged at info, at most one line per status per second for the whole process, with the number of
 * suppressed ones (a client can cause refusals at will). */
void connlog_refusal(const struct conn *c, int status, const char *why);

#endif
