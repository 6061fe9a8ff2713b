/* metrics_prom.c - worker snapshots and the Prometheus text exposition (see metrics.h).
 *
 * Every metric is per worker (label worker="N"): counters are read on their worker's thread
 * by the gather of http_stats.c, never across threads, so they need no atomics. Names follow
 * Prometheus practice: ringcast_ prefix, the unit in the name, _total on counters. The list is
 * documented in docs/operations.md.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "conn.h"
#include "edge.h"
#include "metrics.h"
#include "presence.h"
#include "sendq.h"
#include "worker.h"

#ifndef RINGCAST_VERSION
#define RINGCAST_VERSION "0.1.0"
#endif

/* The HTTP statuses the API answers with, counted one by one (index 0: any other). */
static const int http_codes[16] = {0,   200, 400, 401, 404, 405, 408,
                                   411, 413, 429, 431, 501, 503, 403};

unsigned metrics_http_status_index(int status)
{
    for (unsigned i = 1; i < 16; i++)
        if (http_codes[i] == status)
            return i;
    return 0;
}

int metrics_http_status_code(unsigned i)
{
    return i < 16 ? http_codes[i] : 0;
}

void metrics_snap_take(struct worker *w, struct metrics_snap *s)
{
    memset(s, 0, sizeof(*s));
    s->m = w->m;
    for (unsigned i = 0; i < w->nslots; i++) {
        const struct conn *c = w->slots[i];
        if (!c)
            continue;
        if (c->oq)
            s->queued_bytes += c->oq->bytes;
        switch (c->state) {
        case CONN_OPEN: s->websocket++; break;
        case CONN_HTTP: s->http++; break;
        case CONN_HANDSHAKE: s->handshaking++; break;
        default: s->closing++; break;
        }
    }
    s->room_entries = w->rooms.count;
    for (unsigned b = 0; b < w->rooms.nbuckets; b++)
        for (const struct room *r = w->rooms.buckets[b]; r; r = r->hnext) {
            s->home_rooms += r->is_home;
            if (r->pres)
                s->presence_bytes += presence_room_bytes(w);
        }
    s->presence_bytes += presence_bytes(w);
    for (unsigned t = 0; t < w->eng->nworkers; t++)
        s->xposted += atomic_load_explicit(&w->xout[t].posted, memory_order_relaxed);
}

/* A growing text buffer; on allocation failure it stops growing and says so at the end. */
struct tbuf {
    char *p;
    size_t len, cap;
    bool oom;
};

static void __attribute__((format(printf, 2, 3))) tprintf(struct tbuf *b, const char *fmt, ...)
{
    for (;;) {
        if (b->oom)
            return;
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)(n > 0 ? n : 0);
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* One metric family: HELP, TYPE, then one sample per worker. */
#define FAMILY(name, type, help, field)                                                            \
    do {                                                                                           \
        tprintf(&b, "# HELP " name " " help "\n# TYPE " name " " type "\n");                       \
        for (unsigned i = 0; i < n; i++)                                                           \
            tprintf(&b, name "{worker=\"%u\"} %llu\n", i, (unsigned long long)(snaps[i].field));   \
    } while (0)

/* The cluster bus (cluster.h), process-wide; nothing without --redis. */
static void cluster_prom(struct tbuf *b)
{
    int st = atomic_load(&cluster_stats.state);
    if (st == CLUSTER_OFF)
        return;
    tprintf(b,
            "# HELP ringcast_redis_up 1 when the cluster bus (Redis) is connected.\n"
            "# TYPE ringcast_redis_up gauge\nringcast_redis_up %d\n"
            "# HELP ringcast_redis_reconnects_total Connection attempts to Redis (the first "
            "included).\n# TYPE ringcast_redis_reconnects_total counter\n"
            "ringcast_redis_reconnects_total %llu\n"
            "# HELP ringcast_redis_publishes_total Publishes Redis sequenced for this node.\n"
            "# TYPE ringcast_redis_publishes_total counter\nringcast_redis_publishes_total %llu\n"
            "# HELP ringcast_redis_publish_errors_total Publishes answered UNAVAILABLE.\n"
            "# TYPE ringcast_redis_publish_errors_total counter\n"
            "ringcast_redis_publish_errors_total %llu\n"
            "# HELP ringcast_redis_events_total Events received from Redis.\n"
            "# TYPE ringcast_redis_events_total counter\nringcast_redis_events_total %llu\n"
            "# HELP ringcast_redis_syncs_total Room syncs read from Redis.\n"
            "# TYPE ringcast_redis_syncs_total counter\nringcast_redis_syncs_total %llu\n"
            "# HELP ringcast_redis_history_lost_total Rooms whose history Redis lost under "
            "subscribers (closed 1013).\n# TYPE ringcast_redis_history_lost_total counter\n"
            "ringcast_redis_history_lost_total %llu\n"
            "# HELP ringcast_redis_queue_depth Publishes queued or in flight to Redis.\n"
            "# TYPE ringcast_redis_queue_depth gauge\nringcast_redis_queue_depth %llu\n"
            "# HELP ringcast_redis_rooms Channels this node is subscribed to in Redis.\n"
            "# TYPE ringcast_redis_rooms gauge\nringcast_redis_rooms %llu\n",
            st == CLUSTER_UP, (unsigned long long)atomic_load(&cluster_stats.reconnects),
            (unsigned long long)atomic_load(&cluster_stats.publishes),
            (unsigned long long)atomic_load(&cluster_stats.publish_errors),
            (unsigned long long)atomic_load(&cluster_stats.events_in),
            (unsigned long long)atomic_load(&cluster_stats.syncs),
            (unsigned long long)atomic_load(&cluster_stats.resyncs_lost),
            (unsigned long long)atomic_load(&cluster_stats.pending),
            (unsigned long long)atomic_load(&cluster_stats.rooms));
}

bool metrics_prom_render(const struct metrics_snap *snaps, unsigned n, int64_t uptime_s,
                         unsigned nconns_all, unsigned max_connections, char **out, size_t *len)
{
    struct tbuf b = {malloc(16384), 0, 16384, false};
    if (!b.p)
        return false;
    tprintf(&b, "# HELP ringcast_build_info Version of the running engine.\n"
                "# TYPE ringcast_build_info gauge\n"
                "ringcast_build_info{version=\"" RINGCAST_VERSION "\"} 1\n");
    tprintf(&b,
            "# HELP ringcast_uptime_seconds Seconds since the engine started.\n"
            "# TYPE ringcast_uptime_seconds gauge\nringcast_uptime_seconds %lld\n",
            (long long)uptime_s);
    tprintf(&b,
            "# HELP ringcast_workers Worker threads.\n# TYPE ringcast_workers gauge\n"
            "ringcast_workers %u\n",
            n);
    tprintf(&b,
            "# HELP ringcast_connections_limit The max-connections limit.\n"
            "# TYPE ringcast_connections_limit gauge\nringcast_connections_limit %u\n"
            "# HELP ringcast_connections_counted Connections holding one of max-connections, "
            "all workers.\n# TYPE ringcast_connections_counted gauge\n"
            "ringcast_connections_counted %u\n",
            max_connections, nconns_all);
    tprintf(&b, "# HELP ringcast_connections Open connections by state.\n"
                "# TYPE ringcast_connections gauge\n");
    for (unsigned i = 0; i < n; i++) {
        const struct metrics_snap *s = &snaps[i];
        tprintf(&b,
                "ringcast_connections{worker=\"%u\",state=\"websocket\"} %llu\n"
                "ringcast_connections{worker=\"%u\",state=\"http\"} %llu\n"
                "ringcast_connections{worker=\"%u\",state=\"handshake\"} %llu\n"
                "ringcast_connections{worker=\"%u\",state=\"closing\"} %llu\n",
                i, (unsigned long long)s->websocket, i, (unsigned long long)s->http, i,
                (unsigned long long)s->handshaking, i, (unsigned long long)s->closing);
    }
    FAMILY("ringcast_connections_accepted_total", "counter", "TCP connections accepted.",
           m.accepted);
    FAMILY("ringcast_websocket_upgrades_total", "counter", "WebSocket upgrades completed.",
           m.upgraded);
    tprintf(&b, "# HELP ringcast_connections_rejected_total Connections refused, by reason.\n"
                "# TYPE ringcast_connections_rejected_total counter\n");
    for (unsigned i = 0; i < n; i++) {
        const struct metrics *m = &snaps[i].m;
        tprintf(&b,
                "ringcast_connections_rejected_total{worker=\"%u\",reason=\"max_connections\"} "
                "%llu\n"
                "ringcast_connections_rejected_total{worker=\"%u\",reason=\"pending_limit\"} "
                "%llu\n"
                "ringcast_connections_rejected_total{worker=\"%u\",reason=\"handshake_error\"} "
                "%llu\n",
                i, (unsigned long long)m->refused_full, i, (unsigned long long)m->refused_pending,
                i, (unsigned long long)m->handshake_errors);
    }
    /* Edge refusals (edge.h) are counted process-wide, not per worker. */
    tprintf(&b,
            "# HELP ringcast_edge_refusals_total Upgrades refused by auth, Origin or the per-IP "
            "limits, all workers.\n# TYPE ringcast_edge_refusals_total counter\n"
            "ringcast_edge_refusals_total{reason=\"auth\"} %llu\n"
            "ringcast_edge_refusals_total{reason=\"origin\"} %llu\n"
            "ringcast_edge_refusals_total{reason=\"per_ip_concurrent\"} %llu\n"
            "ringcast_edge_refusals_total{reason=\"per_ip_rate\"} %llu\n"
            "ringcast_edge_refusals_total{reason=\"per_ip_table_full\"} %llu\n"
            "# HELP ringcast_per_ip_entries Per-IP table entries holding an address.\n"
            "# TYPE ringcast_per_ip_entries gauge\nringcast_per_ip_entries %u\n",
            (unsigned long long)atomic_load(&edge_stats.auth),
            (unsigned long long)atomic_load(&edge_stats.origin),
            (unsigned long long)atomic_load(&edge_stats.ip_concurrent),
            (unsigned long long)atomic_load(&edge_stats.ip_rate),
            (unsigned long long)atomic_load(&edge_stats.table_full),
            atomic_load(&edge_stats.entries));
    cluster_prom(&b);
    tprintf(&b, "# HELP ringcast_connections_closed_total Connections closed by the server, by "
                "reason.\n# TYPE ringcast_connections_closed_total counter\n");
    for (unsigned i = 0; i < n; i++) {
        const struct metrics *m = &snaps[i].m;
        tprintf(&b,
                "ringcast_connections_closed_total{worker=\"%u\",reason=\"slow_consumer\"} %llu\n"
                "ringcast_connections_closed_total{worker=\"%u\",reason=\"heartbeat\"} %llu\n"
                "ringcast_connections_closed_total{worker=\"%u\",reason=\"protocol_error\"} "
                "%llu\n",
                i, (unsigned long long)m->slow_consumers, i,
                (unsigned long long)m->heartbeat_closes, i, (unsigned long long)m->protocol_closes);
    }
    FAMILY("ringcast_messages_received_total", "counter",
           "Client messages (WebSocket messages and HTTP API requests) received.", m.messages_in);
    FAMILY("ringcast_received_bytes_total", "counter", "Bytes received from clients.", m.bytes_in);
    FAMILY("ringcast_sent_bytes_total", "counter", "Bytes sent to clients.", m.bytes_out);
    FAMILY("ringcast_sends_total", "counter", "sendmsg operations submitted.", m.sends);
    FAMILY("ringcast_publishes_total", "counter", "Events sequenced by their room's home worker.",
           m.publishes);
    FAMILY("ringcast_http_publishes_total", "counter",
           "Events published through the HTTP API (one per channel).", m.http_publishes);
    FAMILY("ringcast_deliveries_total", "counter", "Events queued to subscribers.", m.deliveries);
    FAMILY("ringcast_resumes_total", "counter", "Subscribes with since, answered by the home.",
           m.resumes);
    FAMILY("ringcast_resumes_unrecovered_total", "counter",
           "Resumes answered recovered:false (history lost, evicted or expired).", m.resumes_lost);
    FAMILY("ringcast_replayed_total", "counter", "Kept events replayed to resuming subscribers.",
           m.replayed);
    FAMILY("ringcast_history_evicted_total", "counter",
           "Rooms kept only by history, freed at max-rooms.", m.history_evicted);
    FAMILY("ringcast_presence_requests_total", "counter", "Presence lists asked for.",
           m.presence_requests);
    FAMILY("ringcast_presence_events_total", "counter",
           "$presence.join/leave events queued to members.", m.presence_events);
    FAMILY("ringcast_presence_dropped_total", "counter",
           "Presence events or records not sent (a full link or outbox).", m.presence_dropped);
    FAMILY("ringcast_rate_limited_total", "counter",
           "Messages and requests refused by the rate limit.", m.rate_limited);
    FAMILY("ringcast_overloaded_total", "counter",
           "Requests refused because a worker's link was full.", m.overloaded);
    FAMILY("ringcast_rooms_refused_total", "counter", "Subscribes refused at max-rooms.",
           m.refused_rooms);
    FAMILY("ringcast_alloc_failures_total", "counter", "Allocations that failed.",
           m.alloc_failures);
    FAMILY("ringcast_recv_buffer_exhausted_total", "counter",
           "Receives re-armed after the provided buffers ran out.", m.enobufs);
    FAMILY("ringcast_cross_worker_messages_total", "counter",
           "Messages and broadcast frames posted to other workers.", xposted);
    FAMILY("ringcast_cross_worker_frames_dropped_total", "counter",
           "Broadcast frames not posted: the target worker's link was full.", m.xframes_dropped);
    FAMILY("ringcast_cross_worker_failures_total", "counter",
           "Cross-worker messages the kernel refused.", m.xmsg_failed);
    FAMILY("ringcast_rooms", "gauge", "Rooms this worker is home for.", home_rooms);
    FAMILY("ringcast_room_entries", "gauge",
           "Room entries in this worker's table (home rooms and local subscriptions).",
           room_entries);
    FAMILY("ringcast_queued_bytes", "gauge", "Bytes queued to clients and not yet sent.",
           queued_bytes);
    FAMILY("ringcast_presence_bytes", "gauge",
           "Memory held for presence: record outboxes, waiting lists, rooms' opt-in counts.",
           presence_bytes);
    FAMILY("ringcast_http_requests_total", "counter",
           "HTTP API requests whose answer waited for other workers.", m.http_requests);
    tprintf(&b, "# HELP ringcast_http_responses_total HTTP API answers by status code.\n"
                "# TYPE ringcast_http_responses_total counter\n");
    for (unsigned i = 0; i < n; i++)
        for (unsigned k = 0; k < 16; k++) {
            int code = metrics_http_status_code(k);
            if (k && !code)
                continue;
            if (k)
                tprintf(&b, "ringcast_http_responses_total{worker=\"%u\",code=\"%d\"} %llu\n", i,
                        code, (unsigned long long)snaps[i].m.http_status[k]);
            else
                tprintf(&b, "ringcast_http_responses_total{worker=\"%u\",code=\"other\"} %llu\n", i,
                        (unsigned long long)snaps[i].m.http_status[k]);
        }
    tprintf(&b, "# HELP ringcast_errors_total Error answers by code: WebSocket error envelopes "
                "(via=\"websocket\") and HTTP API error bodies (via=\"http\").\n"
                "# TYPE ringcast_errors_total counter\n");
    for (unsigned i = 0; i < n; i++)
        for (unsigned via = 0; via < 2; via++)
            for (unsigned k = 0; k < METRICS_NERRORS; k++)
                tprintf(&b, "ringcast_errors_total{worker=\"%u\",via=\"%s\",code=\"%s\"} %llu\n", i,
                        via ? "http" : "websocket", metrics_error_code(k),
                        (unsigned long long)snaps[i].m.errors[via][k]);
    tprintf(&b, "# HELP ringcast_publish_to_last_send_seconds From a publish's receipt to the "
                "submission of this worker's last send of it (one sample per worker that has "
                "subscribers).\n# TYPE ringcast_publish_to_last_send_seconds histogram\n");
    for (unsigned i = 0; i < n; i++) {
        const struct metrics *m = &snaps[i].m;
        uint64_t cum = 0;
        for (unsigned k = 0; k < METRICS_LAT_NB; k++) {
            cum += m->lat_buckets[k];
            if (k < METRICS_LAT_NB - 1)
                tprintf(&b,
                        "ringcast_publish_to_last_send_seconds_bucket{worker=\"%u\",le=\"%g\"} "
                        "%llu\n",
                        i, (double)metrics_lat_bounds_ns[k] / 1e9, (unsigned long long)cum);
            else
                tprintf(&b,
                        "ringcast_publish_to_last_send_seconds_bucket{worker=\"%u\",le=\"+Inf\"} "
                        "%llu\n",
                        i, (unsigned long long)cum);
        }
        tprintf(&b,
                "ringcast_publish_to_last_send_seconds_sum{worker=\"%u\"} %.9f\n"
                "ringcast_publish_to_last_send_seconds_count{worker=\"%u\"} %llu\n",
                i, (double)m->lat_sum_ns / 1e9, i, (unsigned long long)m->lat_count);
    }
    if (b.oom) {
        free(b.p);
        return false;
    }
    *out = b.p;
    *len = b.len;
    return true;
}
