/* sys_stats.c - per-worker statistics events into "$sys" (see sys_stats.h). */
#include "sys_stats.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "broadcast.h"
#include "metrics.h"
#include "proto/json.h"
#include "room.h"
#include "worker.h"

/* The event's data: fixed fields and the latency buckets, then twice SYS_TOP_ROOMS names
 * escaped (at most 6 bytes each). */
#define STATS_CAP (2048 + 2 * SYS_TOP_ROOMS * (6 * CHANNEL_MAX_LEN + 64))

static uint64_t subs_of(const struct room *r)
{
    return r->nlocal + r->remote;
}

/* Keeps top[0..*n) the best SYS_TOP_ROOMS by key, best first; v is r's key. */
static void top_insert(struct room **top, uint64_t *keys, unsigned *n, struct room *r, uint64_t v)
{
    if (*n == SYS_TOP_ROOMS && keys[*n - 1] >= v)
        return;
    unsigned i = *n < SYS_TOP_ROOMS ? (*n)++ : *n - 1;
    while (i > 0 && keys[i - 1] < v) {
        top[i] = top[i - 1];
        keys[i] = keys[i - 1];
        i--;
    }
    top[i] = r;
    keys[i] = v;
}

/* This worker's home rooms ('$' rooms left out), best first: by subscribers, and by events
 * published since the last stats event (each room's seq then is remembered in stats_seq). One
 * walk of the table a second. */
struct tops {
    struct room *subs[SYS_TOP_ROOMS], *rate[SYS_TOP_ROOMS];
    uint64_t subs_key[SYS_TOP_ROOMS], rate_key[SYS_TOP_ROOMS];
    unsigned nsubs, nrate;
};

static void top_rooms(struct worker *w, struct tops *t)
{
    t->nsubs = t->nrate = 0;
    for (unsigned b = 0; b < w->rooms.nbuckets; b++)
        for (struct room *r = w->rooms.buckets[b]; r; r = r->hnext) {
            if (!r->is_home || sys_room_reserved(room_name(r)))
                continue;
            /* seq restarts with a new epoch (history.h): count from 0 then */
            uint64_t published = r->seq >= r->stats_seq ? r->seq - r->stats_seq : r->seq;
            r->stats_seq = r->seq;
            if (subs_of(r))
                top_insert(t->subs, t->subs_key, &t->nsubs, r, subs_of(r));
            if (published)
                top_insert(t->rate, t->rate_key, &t->nrate, r, published);
        }
}

static void top_write(struct jw *jw, const char *key, struct room *const *top,
                      const uint64_t *published, unsigned n)
{
    jw_raw(jw, ",\"", 2);
    jw_raw(jw, key, strlen(key));
    jw_raw(jw, "\":[", 3);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            jw_lit(jw, ",");
        jw_lit(jw, "{\"name\":\"");
        jw_span(jw, room_name_escaped(top[i]));
        jw_lit(jw, "\",\"subscribers\":");
        jw_u64(jw, subs_of(top[i]));
        jw_lit(jw, ",\"seq\":");
        jw_u64(jw, top[i]->seq);
        if (published) { /* events in the last interval (interval_ms) */
            jw_lit(jw, ",\"published\":");
            jw_u64(jw, published[i]);
        }
        jw_lit(jw, "}");
    }
    jw_lit(jw, "]");
}

static void field(struct jw *jw, const char *name, uint64_t v)
{
    jw_raw(jw, ",\"", 2);
    jw_raw(jw, name, strlen(name));
    jw_raw(jw, "\":", 2);
    jw_u64(jw, v);
}

void sys_stats_tick(struct worker *w)
{
    if (w->draining || w->mono_ms - w->sys_stats_ms < 1000 ||
        !atomic_load_explicit(&w->eng->sys_subs, memory_order_relaxed))
        return;
    int64_t dt_ms = w->mono_ms - (w->sys_stats_ms ? w->sys_stats_ms : w->start_mono_ms);
    w->sys_stats_ms = w->mono_ms;
    struct span room = SPAN_LIT(SYS_ROOM);
    unsigned home = room_home(room_hash(room.base, room.len), w->eng->nworkers);
    if (home != w->id && !worker_link_open(w, home))
        return; /* the home is behind: skip this second rather than add to its backlog */
    struct metrics_snap s;
    metrics_snap_take(w, &s);
    static _Thread_local char buf[STATS_CAP];
    struct jw jw;
    jw_init(&jw, buf, sizeof(buf));
    jw_lit(&jw, "{\"worker\":");
    jw_u64(&jw, w->id);
    field(&jw, "workers", w->eng->nworkers);
    field(&jw, "t_ms", (uint64_t)(w->mono_ms - w->start_mono_ms));
    field(&jw, "connections_all", atomic_load_explicit(&w->eng->nconns, memory_order_relaxed));
    field(&jw, "rooms_all", atomic_load_explicit(&w->eng->nrooms, memory_order_relaxed));
    field(&jw, "websocket", s.websocket);
    field(&jw, "http", s.http);
    field(&jw, "home_rooms", s.home_rooms);
    field(&jw, "queued_bytes", s.queued_bytes);
    field(&jw, "accepted", s.m.accepted);
    field(&jw, "messages_in", s.m.messages_in);
    field(&jw, "publishes", s.m.publishes);
    field(&jw, "http_publishes", s.m.http_publishes);
    field(&jw, "deliveries", s.m.deliveries);
    field(&jw, "bytes_out", s.m.bytes_out);
    field(&jw, "slow_consumers", s.m.slow_consumers);
    field(&jw, "rate_limited", s.m.rate_limited);
    field(&jw, "interval_ms", (uint64_t)dt_ms);
    /* Publish-to-last-send (metrics.h) over the last interval: this worker's bucket counts
     * (a subscriber adds the workers' up and takes quantiles) and its own p50/p99. */
    static _Thread_local uint64_t prev[METRICS_LAT_NB];
    uint64_t delta[METRICS_LAT_NB];
    for (unsigned i = 0; i < METRICS_LAT_NB; i++) {
        delta[i] = s.m.lat_buckets[i] - prev[i];
        prev[i] = s.m.lat_buckets[i];
    }
    field(&jw, "lat_p50_us", metrics_lat_quantile_ns(delta, 0.5) / 1000);
    field(&jw, "lat_p99_us", metrics_lat_quantile_ns(delta, 0.99) / 1000);
    jw_lit(&jw, ",\"lat_bounds_us\":[");
    for (unsigned i = 0; i + 1 < METRICS_LAT_NB; i++) {
        if (i)
            jw_lit(&jw, ",");
        jw_u64(&jw, (uint64_t)metrics_lat_bounds_ns[i] / 1000);
    }
    jw_lit(&jw, "],\"lat_buckets\":[");
    for (unsigned i = 0; i < METRICS_LAT_NB; i++) {
        if (i)
            jw_lit(&jw, ",");
        jw_u64(&jw, delta[i]);
    }
    jw_lit(&jw, "]");
    struct tops t;
    top_rooms(w, &t);
    top_write(&jw, "top", t.subs, NULL, t.nsubs);
    top_write(&jw, "top_rate", t.rate, t.rate_key, t.nrate);
    jw_lit(&jw, "}");
    struct span event = SPAN_LIT("stats"), payload = {buf, jw.len};
    if (jw.overflow || !bc_event_fits(w, room, event, payload))
        return;
    uint64_t seq, epoch, subscribers;
    /* No answer to wait for: a NULL context makes the home's ack a no-op (http_api_pub_ack). */
    bc_publish_http(w, room, event, payload, NULL, 0, &seq, &epoch, &subscribers);
}
