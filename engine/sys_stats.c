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

/* The event's data: fixed fields, then SYS_TOP_ROOMS names escaped (at most 6 bytes each). */
#define STATS_CAP (1024 + SYS_TOP_ROOMS * (6 * CHANNEL_MAX_LEN + 48))

static uint64_t subs_of(const struct room *r)
{
    return r->nlocal + r->remote;
}

/* This worker's home rooms with the most subscribers ('$' rooms left out), best first. */
static unsigned top_rooms(struct worker *w, struct room **top)
{
    unsigned n = 0;
    for (unsigned b = 0; b < w->rooms.nbuckets; b++)
        for (struct room *r = w->rooms.buckets[b]; r; r = r->hnext) {
            if (!r->is_home || sys_room_reserved(room_name(r)) || subs_of(r) == 0)
                continue;
            if (n == SYS_TOP_ROOMS && subs_of(top[n - 1]) >= subs_of(r))
                continue;
            unsigned i = n < SYS_TOP_ROOMS ? n++ : n - 1;
            while (i > 0 && subs_of(top[i - 1]) < subs_of(r)) {
                top[i] = top[i - 1];
                i--;
            }
            top[i] = r;
        }
    return n;
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
    if (w->draining || w->mono_ms - w->sys_stats_ms < 1000)
        return;
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
    jw_lit(&jw, ",\"top\":[");
    struct room *top[SYS_TOP_ROOMS];
    unsigned n = top_rooms(w, top);
    for (unsigned i = 0; i < n; i++) {
        if (i)
            jw_lit(&jw, ",");
        jw_lit(&jw, "{\"name\":\"");
        jw_span(&jw, room_name_escaped(top[i]));
        jw_lit(&jw, "\",\"subscribers\":");
        jw_u64(&jw, subs_of(top[i]));
        jw_lit(&jw, ",\"seq\":");
        jw_u64(&jw, top[i]->seq);
        jw_lit(&jw, "}");
    }
    jw_lit(&jw, "]}");
    struct span event = SPAN_LIT("stats"), payload = {buf, jw.len};
    if (jw.overflow || !bc_event_fits(w, room, event, payload))
        return;
    uint64_t seq, epoch, subscribers;
    /* No answer to wait for: a NULL context makes the home's ack a no-op (http_api_pub_ack). */
    bc_publish_http(w, room, event, payload, NULL, 0, &seq, &epoch, &subscribers);
}
