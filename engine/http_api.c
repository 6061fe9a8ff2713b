/* http_api.c - HTTP API connections: request framing, routing, errors, auth, health and
 * publish (see http_api.h). The gathered endpoints are in http_stats.c. */
#include "http_api.h"
#include "cluster.h"

#include <openssl/crypto.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "broadcast.h"
#include "conn.h"
#include "connlog.h"
#include "dispatch.h"
#include "frame.h"
#include "history.h"
#include "log.h"
#include "presence.h"
#include "proto/json.h"
#include "proto/utf8.h"
#include "sendq.h"
#include "sys_stats.h"
#include "worker.h"

#define TICKS(ms) (((uint64_t)(ms) + WORKER_TICK_MS - 1) / WORKER_TICK_MS)
#define JSON_TYPE "application/json"

/* ---- answers ---- */

struct frame *http_api_response(int status, const char *hname, const char *hvalue,
                                const char *body_type, const char *body, size_t len,
                                bool keep_alive)
{
    char head[512];
    size_t hn =
        http_write_head(head, sizeof(head), status, body_type, len, keep_alive, hname, hvalue);
    struct frame *f = hn ? frame_alloc(hn + len, 0) : NULL;
    if (!f)
        return NULL;
    memcpy(f->data, head, hn);
    if (len)
        memcpy(f->data + hn, body, len);
    f->len = (uint32_t)(hn + len);
    return f;
}

void http_api_reply(struct conn *c, int status, const char *hname, const char *hvalue,
                    const char *body_type, const char *body, size_t len, bool keep_alive)
{
    c->w->m.http_status[metrics_http_status_index(status)]++;
    sendq_push(c, http_api_response(status, hname, hvalue, body_type, body, len, keep_alive));
    if (!keep_alive)
        conn_close(c, 0, NULL);
}

void http_api_error(struct conn *c, int status, const char *code, const char *message,
                    bool keep_alive)
{
    metrics_count_error(&c->w->m, true, code);
    char body[512];
    struct jw jw;
    jw_init(&jw, body, sizeof(body));
    jw_lit(&jw, "{\"error\":{\"code\":");
    jw_str(&jw, code, strlen(code));
    jw_lit(&jw, ",\"message\":");
    jw_str(&jw, message, strlen(message));
    jw_lit(&jw, "}}\n");
    const char *hname = NULL, *hvalue = NULL;
    if (status == 401)
        hname = "WWW-Authenticate", hvalue = "Bearer";
    else if (status == 429)
        hname = "Retry-After", hvalue = "1";
    http_api_reply(c, status, hname, hvalue, JSON_TYPE, body, jw.overflow ? 0 : jw.len, keep_alive);
}

static void method_not_allowed(struct conn *c, const char *allow, bool keep_alive)
{
    metrics_count_error(&c->w->m, true, "METHOD_NOT_ALLOWED");
    char body[160];
    int n =
        snprintf(body, sizeof(body),
                 "{\"error\":{\"code\":\"METHOD_NOT_ALLOWED\",\"message\":\"use %s\"}}\n", allow);
    http_api_reply(c, 405, "Allow", allow, JSON_TYPE, body, (size_t)n, keep_alive);
}

/* ---- jobs: answers that wait for other workers ---- */

struct http_job *http_job_new(struct conn *c, enum http_job_kind kind, bool keep_alive)
{
    struct worker *w = c->w;
    struct http_job *job = calloc(1, sizeof(*job));
    struct frame *held = frame_alloc(0, 0);
    if (!job || !held) {
        free(job);
        if (held)
            frame_release(held);
        w->m.alloc_failures++;
        http_api_error(c, 503, "OVERLOADED", "server out of memory: retry later", false);
        return NULL;
    }
    frame_ref(held, 1); /* the job's */
    uint64_t pos = sendq_push_held(c, held);
    if (pos == UINT64_MAX) { /* closing: nobody to answer */
        frame_release(held);
        free(job);
        return NULL;
    }
    job->kind = (uint8_t)kind;
    job->keep_alive = keep_alive;
    job->slot = c->slot;
    job->serial = c->serial;
    job->held = held;
    job->pos = pos;
    job->next = w->http_jobs;
    if (w->http_jobs)
        w->http_jobs->prev = job;
    w->http_jobs = job;
    c->http_jobs++;
    w->m.http_requests++;
    if (!keep_alive)
        conn_close(c, 0, NULL); /* the held answer still goes out, then the FIN */
    return job;
}

static void job_free(struct worker *w, struct http_job *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        w->http_jobs = job->next;
    if (job->next)
        job->next->prev = job->prev;
    frame_release(job->held);
    for (unsigned i = 0; i < job->nrooms; i++)
        free(job->rooms[i].name);
    free(job->rooms);
    free(job->res);
    free(job->names);
    free(job->snaps);
    free(job);
}

void http_job_finish(struct worker *w, struct http_job *job, struct frame *answer)
{
    struct conn *c = worker_conn_lookup(w, job->slot, job->serial);
    if (c) {
        c->http_jobs--;
        if (!answer) {
            w->m.alloc_failures++;
            static const char oom[] =
                "{\"error\":{\"code\":\"OVERLOADED\",\"message\":\"server out of memory\"}}\n";
            answer = http_api_response(503, NULL, NULL, JSON_TYPE, oom, sizeof(oom) - 1,
                                       job->keep_alive);
        }
        if (answer && !sendq_release_held_as(c, job->pos, job->held, answer))
            frame_release(answer);
        else if (!answer) /* not even the 503 fits: the connection pays */
            conn_abort(c);
    } else if (answer) {
        frame_release(answer);
    }
    job_free(w, job);
}

void http_api_free_jobs(struct worker *w)
{
    while (w->http_jobs)
        job_free(w, w->http_jobs);
}

/* ---- publish ---- */

/* The request body as a token array: the worker's when it is enough, else one sized for any
 * text of this length (freed by the caller when it is not w->toks). */
static int tokenize(struct worker *w, struct span body, jsmntok_t **toks)
{
    *toks = w->toks;
    int n = json_tokenize(body.base, body.len, w->toks, ENV_MAX_TOKENS);
    if (n != -JSON_ERR_TOO_MANY)
        return n;
    size_t need = env_max_tokens(body.len);
    if (!(*toks = malloc(need * sizeof(jsmntok_t))))
        return -JSON_ERR_TOO_MANY;
    return json_tokenize(body.base, body.len, *toks, (unsigned)need);
}

/* Unescapes and validates a channel token into w->unescape. NULL, or why it is refused. */
static const char *channel_of(struct worker *w, const char *json, const jsmntok_t *t,
                              struct span *out)
{
    if (t->type != JSMN_STRING)
        return "a channel must be a string";
    struct span esc = json_tok_span(json, t);
    int n = esc.len > CHANNEL_UNESCAPE_CAP
                ? -1
                : json_unescape(esc.base, esc.len, w->unescape, sizeof(w->unescape));
    if (n < 0)
        return channel_err_str(CHANNEL_ERR_TOO_LONG);
    enum channel_err err = channel_validate(w->unescape, (size_t)n);
    if (err != CHANNEL_OK)
        return channel_err_str(err);
    *out = (struct span){w->unescape, (size_t)n};
    return NULL;
}

static struct span raw_value(const char *json, const jsmntok_t *t)
{
    if (t->type == JSMN_STRING) /* jsmn's string tokens leave the quotes out */
        return (struct span){json + t->start - 1, (size_t)(t->end - t->start) + 2};
    return json_tok_span(json, t);
}

static struct frame *render_publish(struct worker *w, struct http_job *job)
{
    (void)w;
    size_t cap = 128 + job->nres * 160;
    const char *name = job->names;
    for (unsigned i = 0; i < job->nres; i++, name += strlen(name) + 1)
        cap += strlen(name);
    char *body = malloc(cap);
    if (!body)
        return NULL;
    struct jw jw;
    jw_init(&jw, body, cap);
    uint64_t total = 0;
    unsigned failed = 0;
    name = job->names;
    if (job->multi)
        jw_lit(&jw, "{\"results\":[");
    for (unsigned i = 0; i < job->nres; i++, name += strlen(name) + 1) {
        const struct http_pub_result *r = &job->res[i];
        if (i)
            jw_lit(&jw, ",");
        jw_lit(&jw, "{\"channel\":\"");
        jw_raw(&jw, name, strlen(name));
        if (r->err == HTTP_PUB_UNAVAILABLE) {
            failed++;
            jw_lit(&jw, "\",\"error\":{\"code\":\"UNAVAILABLE\",\"message\":\"the cluster bus "
                        "(Redis) is unavailable: retry later\"}}");
            continue;
        }
        if (r->err) {
            failed++;
            jw_lit(&jw, "\",\"error\":{\"code\":\"OVERLOADED\",\"message\":\"server out of "
                        "memory: retry later\"}}");
            continue;
        }
        char ep[HISTORY_EPOCH_HEX];
        history_epoch_format(r->epoch, ep);
        jw_lit(&jw, "\",\"seq\":");
        jw_u64(&jw, r->seq);
        jw_lit(&jw, ",\"epoch\":\"");
        jw_raw(&jw, ep, sizeof(ep));
        jw_lit(&jw, "\",\"subscribers\":");
        jw_u64(&jw, r->subscribers);
        jw_lit(&jw, "}");
        total += r->subscribers;
    }
    if (job->multi) {
        jw_lit(&jw, "],\"subscribers\":");
        jw_u64(&jw, total);
        jw_lit(&jw, "}");
    }
    jw_lit(&jw, "\n");
    int status = failed == job->nres ? 503 : 200;
    w->m.http_status[metrics_http_status_index(status)]++;
    struct frame *f = jw.overflow ? NULL
                                  : http_api_response(status, NULL, NULL, JSON_TYPE, body, jw.len,
                                                      job->keep_alive);
    free(body);
    return f;
}

/* One result is in: the last one answers. */
static void pub_put(struct worker *w, struct http_job *job)
{
    if (--job->waiting == 0)
        http_job_finish(w, job, render_publish(w, job));
}

void http_api_pub_ack(struct worker *w, void *ctx, uint32_t idx, uint64_t seq, uint64_t epoch,
                      uint64_t subscribers, int err)
{
    struct http_job *job = ctx;
    if (!job) /* the engine's own publish (sys_stats.c): nobody waits for it */
        return;
    job->res[idx] = (struct http_pub_result){seq, subscribers, (uint8_t)err, true, epoch};
    pub_put(w, job);
}

/* POST /api/publish {"channel","event","data"} and POST /api/broadcast {"channels":[..],..}:
 * every channel is checked before any is published, and every remote home's link must have
 * room, so a refused request publishes nothing. */
static void do_publish(struct conn *c, struct span body, bool multi, bool keep_alive,
                       const struct auth_grant *grant)
{
    struct worker *w = c->w;
    if (!utf8_valid((const uint8_t *)body.base, body.len)) {
        http_api_error(c, 400, "INVALID_MESSAGE", "the body is not valid UTF-8", keep_alive);
        return;
    }
    jsmntok_t *toks;
    int n = tokenize(w, body, &toks);
    const char *json = body.base;
    const char *bad = NULL;
    int ich = -1, iev = -1, ida = -1;
    if (n < 0)
        bad = "the body is not a JSON object";
    else if (toks[0].type != JSMN_OBJECT)
        bad = "the body is not a JSON object";
    if (!bad) {
        ich = json_obj_get(json, toks, n, 0, multi ? "channels" : "channel");
        iev = json_obj_get(json, toks, n, 0, "event");
        ida = json_obj_get(json, toks, n, 0, "data");
        if (ich < 0)
            bad = multi ? "\"channels\" (an array of strings) is required"
                        : "\"channel\" (a string) is required";
        else if (multi && (toks[ich].type != JSMN_ARRAY || toks[ich].size < 1 ||
                           toks[ich].size > HTTP_API_MAX_CHANNELS))
            bad = "\"channels\" must be an array of 1 to 64 strings";
        else if (iev >= 0 && toks[iev].type != JSMN_STRING)
            bad = "\"event\" must be a string";
    }
    unsigned nch = bad ? 0 : multi ? (unsigned)toks[ich].size : 1;
    /* The channel tokens: the array's elements are consecutive (strings own no tokens). */
    int first = multi ? ich + 1 : ich;
    struct span event = iev >= 0 ? json_tok_span(json, &toks[iev]) : SPAN_LIT("message");
    struct span payload = ida >= 0 ? raw_value(json, &toks[ida]) : SPAN_NULL;
    size_t names_len = 0;
    for (unsigned i = 0; !bad && i < nch; i++) {
        struct span name;
        if ((bad = channel_of(w, json, &toks[first + (int)i], &name)))
            break;
        if (sys_room_reserved(name)) {
            http_api_error(c, 403, "RESERVED_CHANNEL",
                           "channels starting with '$' are the server's: subscribe only",
                           keep_alive);
            goto out;
        }
        if (!auth_grant_allows(grant, name, true)) {
            http_api_error(c, 403, "FORBIDDEN", "the token does not allow publishing to a channel",
                           keep_alive);
            goto out;
        }
        if (!bc_event_fits(w, name, event, payload)) {
            http_api_error(c, 413, "TOO_LARGE", "the event would exceed max-message-bytes",
                           keep_alive);
            goto out;
        }
        unsigned home = room_home(room_hash(name.base, name.len), w->eng->nworkers);
        if (home != w->id && !worker_link_open(w, home)) {
            w->m.overloaded++;
            http_api_error(c, 503, "OVERLOADED", "a room's worker is overloaded: retry later",
                           keep_alive);
            goto out;
        }
        names_len += (size_t)(toks[first + (int)i].end - toks[first + (int)i].start) + 1;
    }
    if (bad) {
        http_api_error(c, 400, "INVALID_MESSAGE", bad, keep_alive);
        goto out;
    }
    if (c->http_jobs >= HTTP_API_MAX_JOBS) {
        w->m.rate_limited++;
        http_api_error(c, 429, "RATE_LIMITED",
                       "too many answers waiting on this connection: read them first", keep_alive);
        goto out;
    }
    struct http_job *job = http_job_new(c, JOB_PUBLISH, keep_alive);
    if (!job)
        goto out;
    job->multi = multi;
    job->nres = nch;
    job->res = calloc(nch, sizeof(*job->res));
    job->names = malloc(names_len);
    if (!job->res || !job->names) {
        http_job_finish(w, job, NULL);
        goto out;
    }
    char *np = job->names;
    for (unsigned i = 0; i < nch; i++) {
        struct span esc = json_tok_span(json, &toks[first + (int)i]);
        memcpy(np, esc.base, esc.len);
        np[esc.len] = 0;
        np += esc.len + 1;
    }
    /* Hold the job while its channels are published: a local result must not finish it. */
    job->waiting = 1;
    for (unsigned i = 0; i < nch; i++) {
        struct span name;
        channel_of(w, json, &toks[first + (int)i], &name); /* checked above */
        struct http_pub_result *r = &job->res[i];
        w->m.http_publishes++;
        job->waiting++;
        switch (
            bc_publish_http(w, name, event, payload, job, i, &r->seq, &r->epoch, &r->subscribers)) {
        case BC_HTTP_SENT: break;
        case BC_HTTP_DONE:
            r->done = true;
            job->waiting--;
            break;
        case BC_HTTP_UNAVAILABLE:
            r->err = HTTP_PUB_UNAVAILABLE;
            job->waiting--;
            break;
        default:
            r->err = 1;
            job->waiting--;
            break;
        }
    }
    pub_put(w, job); /* the hold taken above */
out:
    if (toks != w->toks)
        free(toks);
}

/* ---- health, auth, routing ---- */

static void health(struct conn *c, bool keep_alive)
{
    struct worker *w = c->w;
    struct engine *e = w->eng;
    char body[256];
    /* Cluster mode: "redis" says whether publishes can work; 503 with --redis-down-503. */
    int cl = atomic_load_explicit(&cluster_stats.state, memory_order_relaxed);
    bool redis_down = cl == CLUSTER_DOWN;
    bool bad = w->draining || (redis_down && w->cfg->redis_down_503);
    int n = snprintf(body, sizeof(body),
                     "{\"status\":\"%s\",\"uptime_s\":%lld,\"connections\":%u,\"rooms\":%u,"
                     "\"workers\":%u%s}\n",
                     w->draining ? "draining"
                     : bad       ? "degraded"
                                 : "healthy",
                     (long long)((w->mono_ms - w->start_mono_ms) / 1000),
                     atomic_load_explicit(&e->nconns, memory_order_relaxed),
                     atomic_load_explicit(&e->nrooms, memory_order_relaxed), e->nworkers,
                     cl == CLUSTER_OFF ? ""
                     : redis_down      ? ",\"redis\":\"down\""
                                       : ",\"redis\":\"up\"");
    http_api_reply(c, bad ? 503 : 200, NULL, NULL, JSON_TYPE, body, (size_t)n,
                   keep_alive && !w->draining);
}

/* Constant-time comparison of the presented key with the configured one (an empty
 * configured key matches nothing). */
static bool key_ok(const char *want, const struct http_request *req)
{
    struct span got = req->api_key;
    if (!got.base && req->authorization.len > 7 &&
        strncasecmp(req->authorization.base, "Bearer ", 7) == 0)
        got = (struct span){req->authorization.base + 7, req->authorization.len - 7};
    size_t wl = strlen(want);
    if (!wl || !got.base)
        return false;
    if (got.len != wl) {
        CRYPTO_memcmp(want, want, wl); /* same work whatever the length */
        return false;
    }
    return CRYPTO_memcmp(want, got.base, wl) == 0;
}

static bool authorized(struct conn *c, const char *want, const struct http_request *req,
                       bool keep_alive)
{
    if (key_ok(want, req))
        return true;
    const char *msg = !want[0] ? "the server has no API key configured (--api-key)"
                      : (req->api_key.base || req->authorization.base)
                          ? "wrong API key"
                          : "an API key is required (X-API-Key or Authorization: Bearer)";
    http_api_error(c, 401, "UNAUTHORIZED", msg, keep_alive);
    return false;
}

/* A backend's JWT (auth.h) in place of the API key, on /api/publish and /api/broadcast only:
 * its publish claim says where it may publish. Returns 1 with *grant (the caller frees it), 0
 * when the request carries no JWT (the API key rules apply), -1 when a JWT was refused (answered
 * 401, with why). */
static int jwt_credential(struct conn *c, const struct http_request *req, bool keep_alive,
                          struct auth_grant **grant)
{
    struct span a = req->authorization;
    if (!auth_has_key() || !a.base || a.len <= 7 || strncasecmp(a.base, "Bearer ", 7) != 0)
        return 0;
    struct span tok = {a.base + 7, a.len - 7};
    if (!memchr(tok.base, '.', tok.len))
        return 0; /* an API key, not a JWT */
    const char *why = auth_verify(tok, c->w->now_ms, grant);
    if (!why)
        return 1;
    http_api_error(c, 401, "UNAUTHORIZED", why, keep_alive);
    return -1;
}

static bool is_get(const struct http_request *req)
{
    return span_eq_lit(req->method, "GET");
}

/* One complete request (head parsed, body read). */
static void handle(struct conn *c, const struct http_request *req, struct span body)
{
    struct worker *w = c->w;
    const struct rc_config *cfg = w->cfg;
    bool keep_alive = req->minor_version == 1 && !req->conn_close;
    struct span path = req->path;
    w->m.messages_in++;
    if (!dispatch_rate_ok(c)) {
        bool persistent = dispatch_rate_persistent(c);
        if (persistent)
            connlog(c, LOG_LVL_INFO, "HTTP rate limit exceeded persistently, closing");
        http_api_error(c, 429, "RATE_LIMITED", "too many requests: slow down",
                       keep_alive && !persistent);
        return;
    }
    if (log_min_level <= LOG_LVL_DEBUG) {
        char target[512];
        auth_redact_target(req->target, target, sizeof(target));
        conn_debug(c, "HTTP %.*s %s", (int)req->method.len, req->method.base, target);
    }
    bool pub = span_eq_lit(path, "/api/publish"), bcast = span_eq_lit(path, "/api/broadcast");
    bool rooms = span_eq_lit(path, "/api/rooms");
    bool room = !rooms && path.len > 11 && memcmp(path.base, "/api/rooms/", 11) == 0;
    bool status = span_eq_lit(path, "/api/status");
    bool poll = path.len > 10 && memcmp(path.base, "/api/poll/", 10) == 0;
    bool health_p = span_eq_lit(path, "/health"), metrics = span_eq_lit(path, "/metrics");
    bool dash = span_eq_lit(path, "/");
    if (!pub && !bcast && !rooms && !room && !status && !health_p && !metrics && !poll && !dash) {
        http_api_error(c, 404, "NOT_FOUND", "no such endpoint (see docs/http-api.md)", keep_alive);
        return;
    }
    if (pub || bcast ? !span_eq_lit(req->method, "POST") : !is_get(req)) {
        method_not_allowed(c, pub || bcast ? "POST" : "GET", keep_alive);
        return;
    }
    /* /health, /metrics and the dashboard (/) are open unless --metrics-key is set; the rest
     * needs --api-key (or, to publish, a JWT). */
    bool open = health_p || metrics || dash;
    const char *key = open ? cfg->metrics_key : cfg->api_key;
    struct auth_grant *grant = NULL;
    if ((key[0] || !open) && !key_ok(key, req)) {
        int j = (pub || bcast) ? jwt_credential(c, req, keep_alive, &grant) : 0;
        if (j < 0 || (j == 0 && !authorized(c, key, req, keep_alive)))
            return;
    }
    if (health_p) {
        health(c, keep_alive);
        return;
    }
    if (dash) {
        http_api_reply(c, 200, "Cache-Control", "no-store", "text/html; charset=utf-8",
                       (const char *)dashboard_html, dashboard_html_len, keep_alive);
        return;
    }
    if (w->draining) {
        auth_grant_free(grant);
        http_api_error(c, 503, "SHUTTING_DOWN", "the server is shutting down", false);
        return;
    }
    if (pub || bcast) {
        do_publish(c, body, bcast, keep_alive, grant);
        auth_grant_free(grant);
        return;
    }
    if (c->http_jobs >= HTTP_API_MAX_JOBS) {
        w->m.rate_limited++;
        http_api_error(c, 429, "RATE_LIMITED",
                       "too many answers waiting on this connection: read them first", keep_alive);
        return;
    }
    if (poll)
        http_poll_start(c, (struct span){path.base + 10, path.len - 10}, req->query, keep_alive);
    else if (room && path.len > 20 && memcmp(path.base + path.len - 9, "/presence", 9) == 0)
        presence_http(c, (struct span){path.base + 11, path.len - 20}, keep_alive);
    else if (room)
        http_stats_start(c, JOB_ROOM, keep_alive, (struct span){path.base + 11, path.len - 11});
    else
        http_stats_start(c,
                         metrics  ? JOB_METRICS
                         : status ? JOB_STATUS
                                  : JOB_ROOMS,
                         keep_alive, req->query);
}

/* ---- framing ---- */

/* The connection holds one of max_connections from its first request on: API clients and
 * WebSocket clients share the limit. False (answered 503) when it is reached. */
static bool take_slot(struct conn *c)
{
    struct worker *w = c->w;
    if (c->flags & CONN_COUNTED)
        return true;
    unsigned n = atomic_fetch_add_explicit(&w->eng->nconns, 1, memory_order_relaxed);
    if (n >= w->cfg->max_connections) {
        atomic_fetch_sub_explicit(&w->eng->nconns, 1, memory_order_relaxed);
        w->m.refused_full++;
        http_api_error(c, 503, "SERVER_FULL", "max-connections reached: retry later", false);
        return false;
    }
    c->flags |= CONN_COUNTED;
    return true;
}

int http_api_consume(struct conn *c, uint8_t *buf, size_t len, size_t *need)
{
    struct worker *w = c->w;
    struct http_request req;
    *need = 0;
    if (c->http_need && len < c->http_need) {
        *need = c->http_need; /* the body is still coming: nothing to parse again */
        return 0;
    }
    bool first = c->head_scanned == 0;
    if (!c->http_need && !conn_head_complete(c, buf, len) && !first && len <= HTTP_API_MAX_HEAD)
        return 0;
    int r = http_request_parse((const char *)buf, len, HTTP_API_MAX_HEAD, &req);
    if (r == HTTP_NEED_MORE)
        return 0;
    if (!take_slot(c))
        return -1;
    if (r == HTTP_ERROR) {
        connlog_refusal(c, req.status, req.reason);
        http_api_error(c, req.status, req.status == 431 ? "HEAD_TOO_LARGE" : "BAD_REQUEST",
                       req.reason, false);
        return -1;
    }
    c->head_scanned = 0;
    bool has_body = req.content_length > 0 || req.chunked;
    if (req.chunked) {
        http_api_error(c, 501, "NOT_IMPLEMENTED",
                       "chunked request bodies are not supported: send Content-Length", false);
        return -1;
    }
    if (req.content_length < 0 &&
        (span_eq_lit(req.method, "POST") || span_eq_lit(req.method, "PUT") ||
         span_eq_lit(req.method, "PATCH"))) {
        http_api_error(c, 411, "LENGTH_REQUIRED", "a request body needs Content-Length", false);
        return -1;
    }
    if (has_body && (uint64_t)req.content_length > w->cfg->max_message_bytes) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the body is over max-message-bytes (%u)",
                 w->cfg->max_message_bytes);
        http_api_error(c, 413, "TOO_LARGE", msg, false);
        return -1;
    }
    size_t total = (size_t)r + (size_t)(has_body ? req.content_length : 0);
    if (len < total) {
        c->http_need = (uint32_t)total;
        *need = total;
        return 0;
    }
    c->http_need = 0;
    handle(c, &req, (struct span){(const char *)buf + r, total - (size_t)r});
    if (c->state == CONN_HTTP && !(c->flags & (CONN_CLOSE_REQ | CONN_ABORT_REQ)))
        tw_schedule(&w->tw, &c->timer, w->tick + TICKS(w->cfg->http_idle_timeout_s * 1000));
    return (int)total;
}

void http_api_on_timer(struct conn *c)
{
    if (c->in.len || c->http_need) {
        connlog(c, LOG_LVL_INFO, "HTTP request not completed in time, closing");
        if (take_slot(c))
            http_api_error(c, 408, "TIMEOUT", "request not completed in time", false);
        return;
    }
    conn_close(c, 0, NULL); /* idle keep-alive: FIN after whatever is still queued */
}

void http_api_on_xmsg(struct worker *w, struct xmsg *m)
{
    http_stats_on_xmsg(w, m);
}
