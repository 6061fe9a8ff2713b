/* metrics.c - counter summary (see metrics.h). */
#include "metrics.h"

#include <inttypes.h>
#include <string.h>

#include "conn.h"
#include "log.h"
#include "sendq.h"
#include "worker.h"

void metrics_add(struct metrics *a, const struct metrics *b)
{
    const uint64_t *src = (const uint64_t *)b;
    uint64_t *dst = (uint64_t *)a;
    for (unsigned i = 0; i < sizeof(*a) / sizeof(uint64_t); i++)
        dst[i] += src[i];
}

/* Every code the engine answers with, over WebSocket (docs/protocol.md) or HTTP
 * (docs/http-api.md). A new code gets a slot here (and METRICS_NERRORS grows), or it counts as
 * "other". */
static const char *const error_codes[METRICS_NERRORS] = {
    "other",
    "BAD_REQUEST",
    "FORBIDDEN",
    "HEAD_TOO_LARGE",
    "INVALID_CHANNEL",
    "INVALID_MESSAGE",
    "LENGTH_REQUIRED",
    "METHOD_NOT_ALLOWED",
    "NOT_FOUND",
    "NOT_IMPLEMENTED",
    "OVERLOADED",
    "RATE_LIMITED",
    "RESERVED_CHANNEL",
    "SERVER_FULL",
    "SHUTTING_DOWN",
    "TIMEOUT",
    "TOO_LARGE",
    "TOO_MANY_ROOMS",
    "TOO_MANY_SUBSCRIPTIONS",
    "UNAUTHORIZED",
    "UNKNOWN_REQUEST",
    "UNAVAILABLE", /* cluster mode: Redis down (docs/cluster.md) */
};

unsigned metrics_error_index(const char *code)
{
    for (unsigned i = 1; i < METRICS_NERRORS; i++)
        if (error_codes[i] && strcmp(error_codes[i], code) == 0)
            return i;
    return 0;
}

const char *metrics_error_code(unsigned i)
{
    return i < METRICS_NERRORS && error_codes[i] ? error_codes[i] : "other";
}

/* Powers of ten in 1-2.5-5 steps: a publish to a few subscribers takes tens of microseconds, a
 * publish to thousands or one behind a full link milliseconds. */
const int64_t metrics_lat_bounds_ns[METRICS_LAT_NB - 1] = {
    10000,   25000,    50000,    100000,   250000,    500000,    1000000,   2500000,
    5000000, 10000000, 25000000, 50000000, 100000000, 250000000, 500000000, 1000000000,
};

void metrics_lat_flush(struct metrics *m, struct metrics_lat_pend *p, int64_t now_ns)
{
    for (unsigned i = 0; i < p->len; i++) {
        int64_t d = now_ns - p->t0[i];
        if (d < 0)
            d = 0;
        unsigned b = 0;
        while (b < METRICS_LAT_NB - 1 && d > metrics_lat_bounds_ns[b])
            b++;
        m->lat_buckets[b] += p->n[i];
        m->lat_sum_ns += (uint64_t)d * p->n[i];
        m->lat_count += p->n[i];
    }
    p->len = 0;
}

uint64_t metrics_lat_quantile_ns(const uint64_t *buckets, double q)
{
    uint64_t total = 0;
    for (unsigned b = 0; b < METRICS_LAT_NB; b++)
        total += buckets[b];
    if (!total)
        return 0;
    double rank = q * (double)total, seen = 0;
    for (unsigned b = 0; b < METRICS_LAT_NB; b++) {
        if (!buckets[b] || seen + (double)buckets[b] < rank) {
            seen += (double)buckets[b];
            continue;
        }
        double lo = b ? (double)metrics_lat_bounds_ns[b - 1] : 0;
        if (b == METRICS_LAT_NB - 1) /* +Inf: the last bound is all we know */
            return (uint64_t)lo;
        double hi = (double)metrics_lat_bounds_ns[b];
        return (uint64_t)(lo + (hi - lo) * (rank - seen) / (double)buckets[b]);
    }
    return (uint64_t)metrics_lat_bounds_ns[METRICS_LAT_NB - 2];
}

void metrics_log(const struct metrics *m)
{
    log_info("totals: accepted=%" PRIu64 " upgraded=%" PRIu64 " refused_full=%" PRIu64
             " handshake_errors=%" PRIu64 " protocol_closes=%" PRIu64 " slow_consumers=%" PRIu64
             " heartbeat_closes=%" PRIu64 " messages_in=%" PRIu64 " publishes=%" PRIu64
             " deliveries=%" PRIu64 " sends=%" PRIu64 " rate_limited=%" PRIu64 " enobufs=%" PRIu64
             " xmsg_failed=%" PRIu64 " refused_pending=%" PRIu64 " refused_rooms=%" PRIu64
             " alloc_failures=%" PRIu64 " xframes_dropped=%" PRIu64 " overloaded=%" PRIu64,
             m->accepted, m->upgraded, m->refused_full, m->handshake_errors, m->protocol_closes,
             m->slow_consumers, m->heartbeat_closes, m->messages_in, m->publishes, m->deliveries,
             m->sends, m->rate_limited, m->enobufs, m->xmsg_failed, m->refused_pending,
             m->refused_rooms, m->alloc_failures, m->xframes_dropped, m->overloaded);
}

void metrics_log_status(struct worker *w)
{
    uint64_t queued = 0;
    unsigned handshaking = 0, closing = 0;
    for (unsigned i = 0; i < w->nslots; i++) {
        const struct conn *c = w->slots[i];
        if (!c)
            continue;
        if (c->oq)
            queued += c->oq->bytes;
        if (c->state == CONN_HANDSHAKE)
            handshaking++;
        else if (c->state != CONN_OPEN && c->state != CONN_HTTP)
            closing++;
    }
    const struct metrics *m = &w->m;
    log_info("status: connections=%u handshaking=%u closing=%u rooms=%u queued_bytes=%" PRIu64
             " accepted=%" PRIu64 " messages_in=%" PRIu64 " publishes=%" PRIu64
             " deliveries=%" PRIu64 " slow_consumers=%" PRIu64 " rate_limited=%" PRIu64 "%s",
             w->nconns, handshaking, closing, w->rooms.count, queued, m->accepted, m->messages_in,
             m->publishes, m->deliveries, m->slow_consumers, m->rate_limited,
             w->draining ? " draining" : "");
}
