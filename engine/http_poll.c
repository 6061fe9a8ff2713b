/* http_poll.c - GET /api/poll/{channel}: the polling fallback over a room's history (see
 * history.h for where events wait, http_api.h for jobs and reply order). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broadcast.h"
#include "conn.h"
#include "frame.h"
#include "history.h"
#include "http_api.h"
#include "proto/json.h"
#include "proto/ws_frame.h"
#include "room.h"
#include "worker.h"

#define JSON_TYPE "application/json"

/* An unsigned decimal query value no larger than max. */
static bool query_u64(struct span v, uint64_t max, uint64_t *out)
{
    uint64_t n = 0;
    if (!v.len || v.len > 20)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        if (v.base[i] < '0' || v.base[i] > '9')
            return false;
        uint64_t d = (uint64_t)(v.base[i] - '0');
        if (n > (UINT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
    }
    if (n > max)
        return false;
    *out = n;
    return true;
}

void http_poll_start(struct conn *c, struct span name_pct, struct span query, bool keep_alive)
{
    struct worker *w = c->w;
    char name[CHANNEL_MAX_LEN + 1];
    int len = http_pct_decode(name_pct, name, sizeof(name) - 1, false);
    if (len < 0 || channel_validate(name, (size_t)len) != CHANNEL_OK) {
        http_api_error(c, 400, "INVALID_CHANNEL", "the channel is not a valid channel name",
                       keep_alive);
        return;
    }
    uint64_t since = 0, epoch = 0, wait = 0;
    /* Waits end before the connection's idle timer would close it. */
    uint64_t max_wait = w->cfg->http_idle_timeout_s > 1 ? w->cfg->http_idle_timeout_s - 1 : 0;
    if (max_wait > HISTORY_POLL_MAX_WAIT_S)
        max_wait = HISTORY_POLL_MAX_WAIT_S;
    struct span v;
    if (http_query_get(query, "since", &v) && !query_u64(v, UINT64_MAX, &since)) {
        http_api_error(c, 400, "BAD_REQUEST", "since must be an unsigned integer", keep_alive);
        return;
    }
    if (http_query_get(query, "epoch", &v) && !history_epoch_parse(v, &epoch)) {
        http_api_error(c, 400, "BAD_REQUEST", "epoch must be 1 to 16 hex digits", keep_alive);
        return;
    }
    if (http_query_get(query, "wait", &v) && !query_u64(v, UINT64_MAX, &wait)) {
        http_api_error(c, 400, "BAD_REQUEST", "wait must be a number of seconds", keep_alive);
        return;
    }
    if (wait > max_wait)
        wait = max_wait;
    uint32_t hash = room_hash(name, (size_t)len);
    unsigned home = room_home(hash, w->eng->nworkers);
    if (home != w->id && !worker_link_open(w, home)) {
        w->m.overloaded++;
        http_api_error(c, 503, "OVERLOADED", "the room's worker is overloaded: retry later",
                       keep_alive);
        return;
    }
    struct xmsg *m = bc_xmsg_new(w, XM_POLL, (struct span){name, (size_t)len}, 0, 0);
    if (!m) {
        w->m.alloc_failures++;
        http_api_error(c, 503, "OVERLOADED", "server out of memory: retry later", false);
        return;
    }
    struct http_job *job = http_job_new(c, JOB_POLL, keep_alive);
    if (!job) {
        free(m);
        return;
    }
    job->waiting = 1;
    job->limit = (unsigned)wait; /* the interval advice depends on it */
    m->http = true;
    m->ctx = job;
    m->room_hash = hash;
    m->since = since;
    m->epoch = epoch;
    m->deadline_ms = wait ? w->mono_ms + (int64_t)wait * 1000 : 0;
    if (home == w->id)
        history_on_poll(w, m);
    else
        bc_post(w, home, m);
}

/* The JSON text of an event frame: its payload, after the WebSocket header. */
static struct span frame_json(const struct frame *f)
{
    const uint8_t *p = f->buf + WS_MAX_HEADER_UNMASKED;
    return (struct span){(const char *)p, (size_t)(f->data + f->len - p)};
}

void http_api_poll_ack(struct worker *w, struct xmsg *m)
{
    struct http_job *job = m->ctx;
    struct frame **fs = bc_xmsg_frames(m);
    struct frame *answer = NULL;
    if (!m->err) {
        size_t cap = 128;
        for (uint32_t i = 0; i < m->nframes; i++)
            cap += frame_json(fs[i]).len + 1;
        char *body = malloc(cap);
        if (body) {
            char ep[HISTORY_EPOCH_HEX];
            history_epoch_format(m->epoch, ep);
            struct jw jw;
            jw_init(&jw, body, cap);
            jw_lit(&jw, "{\"events\":[");
            for (uint32_t i = 0; i < m->nframes; i++) {
                if (i)
                    jw_lit(&jw, ",");
                jw_span(&jw, frame_json(fs[i])); /* the bytes a subscriber got */
            }
            jw_lit(&jw, "],\"seq\":");
            jw_u64(&jw, m->seq);
            jw_lit(&jw, ",\"epoch\":\"");
            jw_raw(&jw, ep, sizeof(ep));
            if (m->recovered)
                jw_lit(&jw, "\",\"recovered\":true}\n");
            else
                jw_lit(&jw, "\",\"recovered\":false}\n");
            /* A long poller asks again at once; a plain poller every second. */
            answer = http_api_response(200, "X-Poll-Interval", job->limit ? "0" : "1", JSON_TYPE,
                                       body, jw.len, job->keep_alive);
            w->m.http_status[metrics_http_status_index(200)]++;
            free(body);
        }
    }
    for (uint32_t i = 0; i < m->nframes; i++)
        frame_release(fs[i]);
    free(m);
    http_job_finish(w, job, answer);
}
