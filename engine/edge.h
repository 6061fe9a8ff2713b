/* edge.h - the checks an upgrade passes before anything is committed to it: per-IP limits,
 * the Origin allow-list, and the JWT (auth.h), in that order.
 *
 * Per-IP state is one process-wide table (not one per worker): SO_REUSEPORT spreads one
 * client's connections over all workers by its source port, so per-worker tables would each
 * see a fraction of it and a limit of N would really be about N x workers. The table has a
 * fixed number of entries (--per-ip-table-size), keyed by a seeded hash of the address (a
 * client cannot aim its addresses at one bucket), in 256 stripes, each under its own mutex.
 * The lock is taken twice per WebSocket connection (upgrade, close), never per message: the
 * hot path stays lock-free. An entry lives while its address has connections, or for the
 * second after its last new connection (the per-second count). IPv4 addresses are keyed
 * whole, IPv6 addresses by their /64 (one host usually holds a whole /64).
 *
 * At its bound: an address that finds no entry (all entries of its probe window are held by
 * live addresses) is refused with 503 and Retry-After, counted in edge_table_full, and logged
 * (rate-limited). That fails closed: the table exists to bound what many addresses can do,
 * and a full table means many addresses hold connections right now.
 */
#ifndef RINGCAST_ENGINE_EDGE_H
#define RINGCAST_ENGINE_EDGE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto/span.h"

struct conn;
struct http_request;
struct rc_config;

/* Refusal counters, all workers (read by /metrics and the final totals). */
struct edge_stats {
    _Atomic uint64_t ip_concurrent; /* 429: max-connections-per-ip */
    _Atomic uint64_t ip_rate;       /* 429: max-new-connections-per-ip-per-s */
    _Atomic uint64_t table_full;    /* 503: no per-IP entry free */
    _Atomic uint64_t origin;        /* 403 */
    _Atomic uint64_t auth;          /* 401 */
    _Atomic unsigned entries;       /* per-IP entries in use now */
};
extern struct edge_stats edge_stats;

/* Parses --allowed-origins and sizes the per-IP table. Returns 0, or -1 after printing the
 * error to stderr. Main thread, before the workers start. */
int edge_init(const struct rc_config *cfg);
void edge_shutdown(void);
/* Logs the refusal counters at shutdown, one line (nothing when all are zero). */
void edge_log_totals(void);

/* The outcome of edge_check_upgrade when it refuses. */
struct edge_refusal {
    int status;           /* 401, 403, 429 or 503 */
    const char *why;      /* one line (static string), for the body and the log */
    const char *hname;    /* an extra response header (WWW-Authenticate, Retry-After) */
    const char *hvalue;   /* or NULL */
    struct span protocol; /* on success: the subprotocol to echo in the 101 (may be empty) */
};

/* Runs the checks for upgrade request req on c. Returns 0 when c may upgrade (c->grant and
 * c->ip_slot are set, with the flags that make conn.c release them), else the status to
 * refuse with, details in *r. */
int edge_check_upgrade(struct conn *c, const struct http_request *req, struct edge_refusal *r);
/* Gives back c's per-IP connection (the connection is closing). */
void edge_release(struct conn *c);

/* True when origin (an Origin header value) matches an --allowed-origins entry: a lone star
 * matches any origin; "https://app.example.com" matches exactly (scheme, host, port; no case);
 * a host written with a leading "*." matches any origin whose host is a subdomain of the rest
 * (any scheme and port, unless the entry names them). */
bool edge_origin_match(const char *list, struct span origin);

#endif
