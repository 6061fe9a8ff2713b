/* http_stats.c - the HTTP API endpoints gathered from every worker: /api/status, /metrics,
 * /api/rooms and /api/rooms/{name} (see http_api.h).
 *
 * Counters and rooms belong to their worker and are read on its own thread: the asking worker
 * posts one XM_STATS to every other worker (one to the home for a single room), each answers
 * with an XM_STATS_ACK carrying a copy of its part, and the last part renders the answer. So
 * the counters stay plain (one writer, no atomics on the hot path), each worker's numbers are
 * taken at one instant and agree with each other, and a scrape costs one message per worker.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broadcast.h"
#include "conn.h"
#include "frame.h"
#include "http_api.h"
#include "log.h"
#include "metrics.h"
#include "proto/json.h"
#include "room.h"
#include "sendq.h"
#include "worker.h"

#ifndef RINGCAST_VERSION
#define RINGCAST_VERSION "0.1.0"
#endif

#define JSON_TYPE "application/json"
#define PROM_TYPE "text/plain; version=0.0.4; charset=utf-8"

static struct xmsg *msg_new(struct worker *w, uint8_t type, size_t extra)
{
    struct xmsg *m = malloc(sizeof(*m) + extra);
    if (!m)
        return NULL;
    memset(m, 0, sizeof(*m));
    m->type = type;
    m->from = (uint8_t)w->id;
    return m;
}

/* ---- rooms: each worker lists the rooms it is home for ---- */

static int name_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    return c ? c : (al > bl) - (al < bl);
}

static int room_ptr_cmp(const void *x, const void *y)
{
    const struct room *a = *(struct room *const *)x, *b = *(struct room *const *)y;
    return name_cmp(a->name, a->name_len, b->name, b->name_len);
}

/* Up to limit + 1 home rooms named after cursor and starting with prefix, in name order (or
 * the one room named exactly `exact`). Returns how many went into out (malloc'd), or -1. */
static int rooms_select(struct worker *w, struct span prefix, struct span cursor, bool exact,
                        unsigned limit, struct room ***out)
{
    *out = NULL;
    if (exact) {
        struct room *r =
            room_find(&w->rooms, room_hash(prefix.base, prefix.len), prefix.base, prefix.len);
        if (!r || !r->is_home)
            return 0;
        if (!(*out = malloc(sizeof(**out))))
            return -1;
        (*out)[0] = r;
        return 1;
    }
    size_t n = 0, cap = 0;
    struct room **v = NULL;
    for (unsigned b = 0; b < w->rooms.nbuckets; b++)
        for (struct room *r = w->rooms.buckets[b]; r; r = r->hnext) {
            if (!r->is_home || r->name_len < prefix.len ||
                memcmp(r->name, prefix.base, prefix.len) != 0 ||
                (cursor.len && name_cmp(r->name, r->name_len, cursor.base, cursor.len) <= 0))
                continue;
            if (n == cap) {
                cap = cap ? 2 * cap : 64;
                struct room **nv = realloc(v, cap * sizeof(*v));
                if (!nv) {
                    free(v);
                    return -1;
                }
                v = nv;
            }
            v[n++] = r;
        }
    if (n > 1)
        qsort(v, n, sizeof(*v), room_ptr_cmp);
    *out = v;
    return (int)(n > limit + 1 ? limit + 1 : n);
}

static bool job_add_room(struct http_job *job, const char *name, size_t len, uint64_t seq,
                         uint64_t subs)
{
    if (job->nrooms == job->rooms_cap) {
        unsigned cap = job->rooms_cap ? 2 * job->rooms_cap : 16;
        struct http_room_entry *nr = realloc(job->rooms, cap * sizeof(*nr));
        if (!nr)
            return false;
        job->rooms = nr;
        job->rooms_cap = cap;
    }
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return false;
    memcpy(copy, name, len);
    job->rooms[job->nrooms++] = (struct http_room_entry){copy, (uint16_t)len, seq, subs};
    return true;
}

static struct span job_prefix(const struct http_job *job)
{
    return (struct span){job->query, job->prefix_len};
}
static struct span job_cursor(const struct http_job *job)
{
    return (struct span){job->query + job->prefix_len + 1, job->cursor_len};
}

/* ---- the parts ---- */

/* Our part of m's request, as the XM_STATS_ACK to send back (NULL: out of memory). */
static struct xmsg *part_answer(struct worker *w, struct xmsg *req)
{
    uint8_t kind = (uint8_t)req->seq;
    if (kind == JOB_STATUS || kind == JOB_METRICS) {
        struct xmsg *a = msg_new(w, XM_STATS_ACK, sizeof(struct metrics_snap));
        if (a)
            metrics_snap_take(w, (struct metrics_snap *)(void *)a->data);
        return a;
    }
    struct span prefix = {req->data, req->room_len};
    struct span cursor = {req->data + req->room_len, req->event_len};
    struct room **v;
    int n = rooms_select(w, prefix, cursor, kind == JOB_ROOM, req->count, &v);
    if (n < 0)
        return NULL;
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += 2 + v[i]->name_len + 16;
    struct xmsg *a = msg_new(w, XM_STATS_ACK, bytes);
    if (a) {
        char *p = a->data;
        for (int i = 0; i < n; i++) {
            struct room *r = v[i];
            uint64_t subs = r->nlocal + r->remote;
            memcpy(p, &r->name_len, 2);
            memcpy(p + 2, r->name, r->name_len);
            p += 2 + r->name_len;
            memcpy(p, &r->seq, 8);
            memcpy(p + 8, &subs, 8);
            p += 16;
        }
        a->count = (uint32_t)n;
        a->payload_len = (uint32_t)bytes;
    }
    free(v);
    return a;
}

/* Takes our own part straight into the job. False when memory is short. */
static bool part_local(struct worker *w, struct http_job *job)
{
    if (job->kind == JOB_STATUS || job->kind == JOB_METRICS) {
        metrics_snap_take(w, &job->snaps[w->id]);
        return true;
    }
    struct room **v;
    int n =
        rooms_select(w, job_prefix(job), job_cursor(job), job->kind == JOB_ROOM, job->limit, &v);
    bool ok = n >= 0;
    for (int i = 0; ok && i < n; i++)
        ok = job_add_room(job, v[i]->name, v[i]->name_len, v[i]->seq, v[i]->nlocal + v[i]->remote);
    free(v);
    return ok;
}

static void part_done(struct worker *w, struct http_job *job)
{
    if (--job->waiting == 0)
        http_job_finish(w, job, http_stats_render(w, job));
}

void http_stats_on_xmsg(struct worker *w, struct xmsg *m)
{
    if (m->type == XM_STATS) {
        unsigned to = m->from;
        struct xmsg *a = part_answer(w, m);
        if (a) {
            a->ctx = m->ctx;
            a->seq = m->seq;
            free(m);
        } else { /* no memory for our part: the request goes back marked */
            w->m.alloc_failures++;
            a = m;
            a->err = true;
            a->count = 0;
        }
        a->type = XM_STATS_ACK;
        a->from = (uint8_t)w->id;
        a->to = (uint8_t)to;
        worker_post(w, to, a, UD_XMSG);
        return;
    }
    struct http_job *job = m->ctx;
    if (m->err) {
        job->incomplete = true;
    } else if (job->kind == JOB_STATUS || job->kind == JOB_METRICS) {
        memcpy(&job->snaps[m->from], m->data, sizeof(struct metrics_snap));
    } else {
        const char *p = m->data;
        for (uint32_t i = 0; i < m->count; i++) {
            uint16_t len;
            uint64_t seq, subs;
            memcpy(&len, p, 2);
            memcpy(&seq, p + 2 + len, 8);
            memcpy(&subs, p + 10 + len, 8);
            if (!job_add_room(job, p + 2, len, seq, subs))
                job->incomplete = true;
            p += 18 + len;
        }
    }
    free(m);
    part_done(w, job);
}

void http_stats_start(struct conn *c, enum http_job_kind kind, bool keep_alive,
                      struct span query_or_name)
{
    struct worker *w = c->w;
    struct engine *e = w->eng;
    /* Parse what the request asks before taking a job, so a bad one is a plain 400/404. */
    char prefix[CHANNEL_MAX_LEN + 1], cursor[CHANNEL_MAX_LEN + 1];
    int plen = 0, clen = 0;
    unsigned limit = HTTP_API_PAGE_DEFAULT;
    unsigned target = w->id; /* JOB_ROOM: the home */
    if (kind == JOB_ROOM) {
        plen = http_pct_decode(query_or_name, prefix, sizeof(prefix) - 1, false);
        if (plen < 0 || channel_validate(prefix, (size_t)plen) != CHANNEL_OK) {
            http_api_error(c, 404, "NOT_FOUND", "no such room", keep_alive);
            return;
        }
        target = room_home(room_hash(prefix, (size_t)plen), e->nworkers);
    } else if (kind == JOB_ROOMS) {
        struct span v;
        if (http_query_get(query_or_name, "prefix", &v) &&
            (plen = http_pct_decode(v, prefix, sizeof(prefix) - 1, true)) < 0) {
            http_api_error(c, 400, "BAD_REQUEST", "prefix: bad percent-encoding or too long",
                           keep_alive);
            return;
        }
        if (http_query_get(query_or_name, "cursor", &v) &&
            (clen = http_pct_decode(v, cursor, sizeof(cursor) - 1, true)) < 0) {
            http_api_error(c, 400, "BAD_REQUEST", "cursor: bad percent-encoding or too long",
                           keep_alive);
            return;
        }
        if (http_query_get(query_or_name, "limit", &v)) {
            unsigned long n = 0;
            size_t i = 0;
            for (; i < v.len && v.base[i] >= '0' && v.base[i] <= '9' && n <= HTTP_API_MAX_PAGE; i++)
                n = n * 10 + (unsigned long)(v.base[i] - '0');
            if (!v.len || i < v.len || n < 1 || n > HTTP_API_MAX_PAGE) {
                http_api_error(c, 400, "BAD_REQUEST", "limit must be a number from 1 to 1000",
                               keep_alive);
                return;
            }
            limit = (unsigned)n;
        }
    }
    /* Every link we post on must have room: an overloaded engine answers 503 at once. */
    for (unsigned t = 0; t < e->nworkers; t++)
        if (t != w->id && (kind != JOB_ROOM || t == target) && !worker_link_open(w, t)) {
            w->m.overloaded++;
            http_api_error(c, 503, "OVERLOADED", "a worker is overloaded: retry later", keep_alive);
            return;
        }
    struct http_job *job = http_job_new(c, kind, keep_alive);
    if (!job)
        return;
    job->limit = limit;
    memcpy(job->query, prefix, (size_t)plen);
    job->query[plen] = 0;
    memcpy(job->query + plen + 1, cursor, (size_t)clen);
    job->prefix_len = (uint16_t)plen;
    job->cursor_len = (uint16_t)clen;
    if ((kind == JOB_STATUS || kind == JOB_METRICS) &&
        !(job->snaps = calloc(e->nworkers, sizeof(*job->snaps)))) {
        http_job_finish(w, job, NULL);
        return;
    }
    job->waiting = 1; /* our own part, taken last */
    for (unsigned t = 0; t < e->nworkers; t++) {
        if (t == w->id || (kind == JOB_ROOM && t != target))
            continue;
        struct xmsg *m = msg_new(w, XM_STATS, (size_t)plen + (size_t)clen);
        if (!m) {
            job->incomplete = true;
            continue;
        }
        m->ctx = job;
        m->seq = kind;
        m->count = limit;
        m->room_len = (uint16_t)plen;
        m->event_len = (uint32_t)clen;
        memcpy(m->data, prefix, (size_t)plen);
        memcpy(m->data + plen, cursor, (size_t)clen);
        m->to = (uint8_t)t;
        job->waiting++;
        worker_post(w, t, m, UD_XMSG);
    }
    if ((kind != JOB_ROOM || target == w->id) && !part_local(w, job))
        job->incomplete = true;
    part_done(w, job);
}

/* ---- rendering ---- */

static int entry_cmp(const void *x, const void *y)
{
    const struct http_room_entry *a = x, *b = y;
    return name_cmp(a->name, a->len, b->name, b->len);
}

static void room_json(struct jw *jw, const struct http_room_entry *r)
{
    jw_lit(jw, "{\"name\":");
    jw_str(jw, r->name, r->len);
    jw_lit(jw, ",\"subscribers\":");
    jw_u64(jw, r->subscribers);
    jw_lit(jw, ",\"seq\":");
    jw_u64(jw, r->seq);
    jw_lit(jw, "}");
}

static void render_rooms(struct http_job *job, struct jw *jw)
{
    if (job->nrooms > 1)
        qsort(job->rooms, job->nrooms, sizeof(*job->rooms), entry_cmp);
    unsigned n = job->nrooms < job->limit ? job->nrooms : job->limit;
    jw_lit(jw, "{\"rooms\":[");
    for (unsigned i = 0; i < n; i++) {
        if (i)
            jw_lit(jw, ",");
        room_json(jw, &job->rooms[i]);
    }
    jw_lit(jw, "],\"next\":");
    if (job->nrooms > n)
        jw_str(jw, job->rooms[n - 1].name, job->rooms[n - 1].len);
    else
        jw_lit(jw, "null");
    jw_lit(jw, "}\n");
}

static void kv_u64(struct jw *jw, const char *k, uint64_t v, bool comma)
{
    if (comma)
        jw_lit(jw, ",");
    jw_str(jw, k, strlen(k));
    jw_lit(jw, ":");
    jw_u64(jw, v);
}

/* One option of /api/status's "config": its name with '_' for '-', secrets redacted. */
static void status_option(void *arg, const char *name, const char *value, bool number)
{
    struct jw *jw = arg;
    char key[64];
    size_t n = strlen(name);
    if (n >= sizeof(key))
        n = sizeof(key) - 1;
    for (size_t i = 0; i < n; i++)
        key[i] = name[i] == '-' ? '_' : name[i];
    jw_lit(jw, "\"");
    jw_raw(jw, key, n);
    jw_lit(jw, "\":");
    if (!value)
        jw_lit(jw, "null");
    else if (number)
        jw_raw(jw, value, strlen(value));
    else
        jw_str(jw, value, strlen(value));
    jw_lit(jw, ",");
}

static void render_status(struct worker *w, struct http_job *job, struct jw *jw)
{
    const struct rc_config *cfg = w->cfg;
    struct engine *e = w->eng;
    jw_lit(jw, "{\"version\":\"" RINGCAST_VERSION "\"");
    kv_u64(jw, "uptime_s", (uint64_t)((w->mono_ms - w->start_mono_ms) / 1000), true);
    jw_lit(jw, ",\"draining\":");
    jw_raw(jw, w->draining ? "true" : "false", w->draining ? 4 : 5);
    jw_lit(jw, ",\"config\":{");
    config_each(cfg, status_option, jw); /* each ends with a comma */
    jw_lit(jw, "\"config_file\":");
    jw_str(jw, cfg->config_file, strlen(cfg->config_file));
    jw_lit(jw, "},\"limits\":{");
    kv_u64(jw, "max_connections", cfg->max_connections, false);
    kv_u64(jw, "max_rooms", cfg->max_rooms, true);
    kv_u64(jw, "max_subscriptions", cfg->max_subscriptions, true);
    kv_u64(jw, "max_message_bytes", cfg->max_message_bytes, true);
    kv_u64(jw, "max_queue_bytes", cfg->max_queue_bytes, true);
    kv_u64(jw, "http_max_head_bytes", HTTP_API_MAX_HEAD, true);
    kv_u64(jw, "http_max_body_bytes", cfg->max_message_bytes, true);
    kv_u64(jw, "http_max_waiting_answers", HTTP_API_MAX_JOBS, true);
    kv_u64(jw, "http_max_broadcast_channels", HTTP_API_MAX_CHANNELS, true);
    jw_lit(jw, "},\"workers\":[");
    uint64_t tot[7] = {0};
    for (unsigned i = 0; i < e->nworkers; i++) {
        const struct metrics_snap *s = &job->snaps[i];
        uint64_t v[7] = {s->websocket + s->http, s->home_rooms,  s->queued_bytes,
                         s->m.deliveries,        s->m.publishes, s->m.messages_in,
                         s->m.slow_consumers};
        jw_raw(jw, i ? ",{" : "{", i ? 2 : 1);
        kv_u64(jw, "id", i, false);
        jw_lit(jw, ",\"connections\":{");
        kv_u64(jw, "websocket", s->websocket, false);
        kv_u64(jw, "http", s->http, true);
        kv_u64(jw, "handshaking", s->handshaking, true);
        kv_u64(jw, "closing", s->closing, true);
        jw_lit(jw, "}");
        kv_u64(jw, "rooms", v[1], true);
        kv_u64(jw, "queued_bytes", v[2], true);
        kv_u64(jw, "deliveries", v[3], true);
        kv_u64(jw, "publishes", v[4], true);
        kv_u64(jw, "messages_in", v[5], true);
        kv_u64(jw, "slow_consumer_closes", v[6], true);
        jw_lit(jw, "}");
        for (unsigned k = 0; k < 7; k++)
            tot[k] += v[k];
    }
    jw_lit(jw, "],\"totals\":{");
    kv_u64(jw, "connections", tot[0], false);
    kv_u64(jw, "rooms", tot[1], true);
    kv_u64(jw, "queued_bytes", tot[2], true);
    kv_u64(jw, "deliveries", tot[3], true);
    kv_u64(jw, "publishes", tot[4], true);
    kv_u64(jw, "messages_in", tot[5], true);
    kv_u64(jw, "slow_consumer_closes", tot[6], true);
    jw_lit(jw, "}}\n");
}

struct frame *http_stats_render(struct worker *w, struct http_job *job)
{
    int status = 200;
    struct frame *f = NULL;
    if (job->incomplete) { /* a part is missing (out of memory somewhere) */
        static const char body[] =
            "{\"error\":{\"code\":\"OVERLOADED\",\"message\":\"server out of memory\"}}\n";
        status = 503;
        f = http_api_response(status, NULL, NULL, JSON_TYPE, body, sizeof(body) - 1,
                              job->keep_alive);
    } else if (job->kind == JOB_METRICS) {
        char *text;
        size_t len;
        if (metrics_prom_render(
                job->snaps, w->eng->nworkers, (w->mono_ms - w->start_mono_ms) / 1000,
                atomic_load(&w->eng->nconns), w->cfg->max_connections, &text, &len)) {
            f = http_api_response(200, NULL, NULL, PROM_TYPE, text, len, job->keep_alive);
            free(text);
        }
    } else if (job->kind == JOB_ROOM && job->nrooms == 0) {
        static const char body[] =
            "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"no such room\"}}\n";
        status = 404;
        f = http_api_response(status, NULL, NULL, JSON_TYPE, body, sizeof(body) - 1,
                              job->keep_alive);
    } else {
        /* Rendered into a buffer that doubles until the answer fits. */
        for (size_t cap = 4096; cap <= (64u << 20) && !f; cap *= 2) {
            char *buf = malloc(cap);
            if (!buf)
                break;
            struct jw jw;
            jw_init(&jw, buf, cap);
            if (job->kind == JOB_STATUS)
                render_status(w, job, &jw);
            else if (job->kind == JOB_ROOMS)
                render_rooms(job, &jw);
            else {
                room_json(&jw, &job->rooms[0]);
                jw_lit(&jw, "\n");
            }
            if (!jw.overflow)
                f = http_api_response(200, NULL, NULL, JSON_TYPE, buf, jw.len, job->keep_alive);
            free(buf);
            if (!jw.overflow)
                break;
        }
    }
    w->m.http_status[metrics_http_status_index(status)]++;
    return f;
}
