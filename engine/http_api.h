/* http_api.h - the HTTP/1.1 API on the WebSocket port: health, metrics, status, rooms, publish.
 *
 * A request that is not for a WebSocket endpoint (no Upgrade: websocket, and a path other than
 * /, /ws, /ws/{id}) turns its connection into an HTTP API connection (CONN_HTTP) for the rest
 * of its life: keep-alive, pipelined requests answered in order, Content-Length bodies only.
 * The API is documented in docs/http-api.md.
 *
 * Order: every answer goes through the connection's send queue (sendq.h) when its request is
 * handled. An answer that needs other workers (a publish to a room homed elsewhere, anything
 * gathered from every worker) takes its place as a held entry, and a job (struct http_job)
 * waits for the other workers' messages; the last one fills the answer in and releases it. A
 * job is owned by the worker that created it and is touched by no other thread: messages
 * carry its pointer there and back (xmsg.ctx) without dereferencing it elsewhere. A job
 * outlives its connection (a client may leave before the answer): it is freed when its last
 * answer arrives, or by worker_free for answers discarded at shutdown.
 *
 * Bounds (docs/operations.md): a request head is at most HTTP_API_MAX_HEAD bytes (431), a body
 * at most max-message-bytes (413), a connection has at most HTTP_API_MAX_JOBS answers waiting
 * for other workers (429 beyond), a broadcast names at most HTTP_API_MAX_CHANNELS channels, a
 * rooms page at most HTTP_API_MAX_PAGE rooms; every request takes a token from the
 * connection's rate-limit bucket (429; a persistent flood is closed); an idle connection, or
 * an unfinished request, is closed after http-idle-timeout-s (408 for the latter); what is
 * queued to a client that does not read is bounded by max-queue-bytes like any other.
 */
#ifndef RINGCAST_ENGINE_HTTP_API_H
#define RINGCAST_ENGINE_HTTP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/channel.h"
#include "proto/http.h"
#include "proto/span.h"

struct conn;
struct frame;
struct worker;
struct xmsg;
struct metrics_snap;

/* Largest request head: the same bound as the upgrade request's. */
#define HTTP_API_MAX_HEAD HTTP_MAX_HEAD_DEFAULT
/* Answers one connection may have waiting for other workers: enough to pipeline publishes to
 * remote rooms at full speed over one connection, small enough that a client that pipelines
 * and never reads holds little (each waiting answer is a job and a link message). */
#define HTTP_API_MAX_JOBS 64
/* Channels one /api/broadcast may name. */
#define HTTP_API_MAX_CHANNELS 64
/* Rooms per /api/rooms page: the default and the most a client may ask for. */
#define HTTP_API_PAGE_DEFAULT 100
#define HTTP_API_MAX_PAGE     1000

/* Consumes one request from buf (the connection is CONN_HTTP): returns the bytes used, 0 when
 * more input is needed (*need: the size to wait for, 0 if unknown), -1 when input stops
 * mattering (the connection is closing). */
int http_api_consume(struct conn *c, uint8_t *buf, size_t len, size_t *need);
/* The connection's timer fired: idle keep-alive (closed quietly) or unfinished request (408). */
void http_api_on_timer(struct conn *c);
/* The home's answer to an HTTP publish (broadcast.h, bc_publish_http). */
void http_api_pub_ack(struct worker *w, void *ctx, uint32_t idx, uint64_t seq, uint64_t epoch,
                      uint64_t subscribers, int err);
/* XM_STATS (on any worker: answer with our part) and XM_STATS_ACK (on the asking one). */
void http_api_on_xmsg(struct worker *w, struct xmsg *m);
/* Frees the worker's jobs still waiting (shutdown, after every thread has stopped). */
void http_api_free_jobs(struct worker *w);

/* http_poll.c: GET /api/poll/{channel}?since&epoch&wait; answers c itself. */
void http_poll_start(struct conn *c, struct span name_pct, struct span query, bool keep_alive);
/* An XM_POLL_ACK from the room's home (or the home's direct answer): renders the job's
 * answer, drops the frame references and frees m. */
void http_api_poll_ack(struct worker *w, struct xmsg *m);

/* ---- shared by http_api.c and http_stats.c ---- */

enum http_job_kind {
    JOB_PUBLISH, /* /api/publish, /api/broadcast: one result per channel */
    JOB_STATUS,  /* /api/status: a snapshot of every worker */
    JOB_METRICS, /* /metrics: the same, rendered for Prometheus */
    JOB_ROOMS,   /* /api/rooms: a page of every worker's home rooms */
    JOB_ROOM,    /* /api/rooms/{name}: one room, from its home */
    JOB_POLL,    /* /api/poll/{channel}: events from the room's history (http_poll.c) */
};

struct http_pub_result {
    uint64_t seq, subscribers;
    uint8_t err; /* 0, 1 (out of memory: OVERLOADED) or HTTP_PUB_UNAVAILABLE */
    bool done;
    uint64_t epoch; /* the room's (history.h) */
};
/* http_api_pub_ack's err: the cluster bus (Redis) could not take the publish. */
#define HTTP_PUB_UNAVAILABLE 2

struct http_room_entry {
    char *name; /* unescaped, malloc'd */
    uint16_t len;
    uint64_t seq, subscribers;
};

struct http_job {
    struct http_job *next, *prev; /* the worker's list */
    uint8_t kind;
    bool keep_alive;
    bool multi;      /* JOB_PUBLISH: /api/broadcast (a list of results) */
    bool incomplete; /* a worker's part is missing (out of memory): answered 503 */
    unsigned waiting;
    uint32_t slot; /* the asking connection: (slot, serial), looked up when the answer is ready */
    uint64_t serial;
    struct frame *held; /* our reference to the held placeholder */
    uint64_t pos;
    /* JOB_PUBLISH */
    unsigned nres;
    struct http_pub_result *res;
    char *names; /* the channels as JSON string contents, '\0'-separated */
    /* JOB_STATUS, JOB_METRICS */
    struct metrics_snap *snaps;
    /* JOB_ROOMS, JOB_ROOM */
    unsigned limit;
    struct http_room_entry *rooms;
    unsigned nrooms, rooms_cap;
    char query[2 * CHANNEL_MAX_LEN + 4]; /* prefix '\0' cursor '\0' (unescaped) */
    uint16_t prefix_len, cursor_len;
};

/* Queues an HTTP answer with a JSON body (or body_type) on c; closes c after it unless
 * keep_alive. hname/hvalue: one extra header or NULL. */
void http_api_reply(struct conn *c, int status, const char *hname, const char *hvalue,
                    const char *body_type, const char *body, size_t len, bool keep_alive);
/* {"error":{"code":code,"message":message}} with status. */
void http_api_error(struct conn *c, int status, const char *code, const char *message,
                    bool keep_alive);
/* A new job for c's request, its answer's place held in c's queue; NULL when c is closing or
 * memory is short (then answered 503 already). */
struct http_job *http_job_new(struct conn *c, enum http_job_kind kind, bool keep_alive);
/* Fills the job's answer in (a built response frame, or NULL for a 503) and frees the job. */
void http_job_finish(struct worker *w, struct http_job *job, struct frame *answer);
/* Builds a complete response frame (one reference), or NULL. */
struct frame *http_api_response(int status, const char *hname, const char *hvalue,
                                const char *body_type, const char *body, size_t len,
                                bool keep_alive);

/* http_stats.c: the gathered endpoints. Each answers c itself. */
void http_stats_start(struct conn *c, enum http_job_kind kind, bool keep_alive,
                      struct span query_or_name);
/* An XM_STATS or XM_STATS_ACK. */
void http_stats_on_xmsg(struct worker *w, struct xmsg *m);
/* Renders a finished gather job's answer. */
struct frame *http_stats_render(struct worker *w, struct http_job *job);

/* The dashboard page (GET /), engine/dashboard.html embedded at build time (embed.py). */
extern const unsigned char dashboard_html[];
extern const unsigned long dashboard_html_len;

#endif
