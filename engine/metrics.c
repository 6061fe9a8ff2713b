/* metrics.c - counter summary (see metrics.h). */
#include "metrics.h"

#include <inttypes.h>

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
