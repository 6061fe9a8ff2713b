/* metrics.h - per-worker event counters.
 *
 * Each worker owns its counters and bumps them without atomics (one writer); the main thread
 * reads them only after the workers have exited, to log a summary at shutdown. A status line
 * (SIGUSR1) is logged by each worker itself, from its own thread.
 */
#ifndef RINGCAST_ENGINE_METRICS_H
#define RINGCAST_ENGINE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct metrics {
    uint64_t accepted;
    uint64_t upgraded;
    uint64_t refused_full; /* 503: max_connections reached */
    uint64_t handshake_errors;
    uint64_t protocol_closes;  /* closed for a framing or policy error */
    uint64_t slow_consumers;   /* closed with 4008 */
    uint64_t heartbeat_closes; /* closed with 4000 */
    uint64_t messages_in;
    uint64_t publishes;  /* publishes sequenced here (home) */
    uint64_t deliveries; /* frames queued to subscribers */
    uint64_t sends;      /* sendmsg operations submitted */
    uint64_t rate_limited;
    uint64_t enobufs;         /* recv re-armed after the buffer ring ran dry */
    uint64_t xmsg_failed;     /* cross-worker messages the kernel refused */
    uint64_t refused_pending; /* accepts refused: max_connections upgrades already pending */
    uint64_t refused_rooms;   /* subscribes refused: max_rooms reached */
    uint64_t alloc_failures;  /* allocations that failed (the client that caused it pays) */
    uint64_t xframes_dropped; /* broadcast frames not posted: the target's link was full */
    uint64_t overloaded;      /* publishes refused: the home's link was full */
    uint64_t bytes_in;        /* bytes received from clients */
    uint64_t bytes_out;       /* bytes sent to clients */
    uint64_t http_requests;   /* HTTP API requests answered (or held for an answer) */
    uint64_t http_publishes;  /* events published through the HTTP API (one per channel) */
    /* HTTP API answers by status: index from http_api's status table (metrics_prom.c) */
    uint64_t http_status[16];

    /* Room history (history.h) */
    uint64_t resumes;         /* subscribes with since, answered here (home) */
    uint64_t resumes_lost;    /* ... answered "recovered":false */
    uint64_t replayed;        /* history frames sent to resuming members (home) */
    uint64_t history_evicted; /* idle rooms freed with their history under max-rooms */

    /* Presence (presence.h) */
    uint64_t presence_requests; /* presence lists asked here (WebSocket and HTTP) */
    uint64_t presence_events;   /* $presence.join/leave frames queued to members */
    uint64_t presence_dropped;  /* presence events or records not sent (full link or outbox) */
};

struct worker;

/* Adds every counter of b into a. */
void metrics_add(struct metrics *a, const struct metrics *b);
/* Logs the counters at info level, one line. */
void metrics_log(const struct metrics *m);
/* Logs worker w's one-line status (SIGUSR1): connections, rooms, bytes queued to clients and
 * the counters so far. Runs on w's own thread (a UD_STATUS message), so it reads w's state
 * without a lock. */
void metrics_log_status(struct worker *w);

/* ---- the HTTP API's view (http_api.h): gathered per worker, rendered by the asking one ---- */

/* One worker's state at one moment, taken on its own thread (so the numbers agree with each
 * other) and carried to the asking worker in an XM_STATS_ACK. */
struct metrics_snap {
    struct metrics m;
    uint64_t websocket, http, handshaking, closing; /* connections by state */
    uint64_t home_rooms;                            /* rooms this worker is home for */
    uint64_t room_entries;                          /* rooms in its table (home or local) */
    uint64_t queued_bytes;                          /* unsent bytes queued to its clients */
    uint64_t xposted;                               /* cross-worker messages it posted */
    uint64_t presence_bytes; /* presence.h: outboxes, waiting lists, rooms' opt-in counts */
};
/* Fills s from w (on w's thread). */
void metrics_snap_take(struct worker *w, struct metrics_snap *s);
/* Index into metrics.http_status for an HTTP status (the last slot: any other). */
unsigned metrics_http_status_index(int status);
/* The status of index i (0 for the catch-all). */
int metrics_http_status_code(unsigned i);
/* Writes the Prometheus text exposition (format 0.0.4) of n workers' snapshots into a
 * malloc'd buffer (*out, *len). Returns false when memory is short. */
bool metrics_prom_render(const struct metrics_snap *snaps, unsigned n, int64_t uptime_s,
                         unsigned nconns_all, unsigned max_connections, char **out, size_t *len);

#endif
