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

/* Error codes counted (metrics_error_index), "other" included. */
#define METRICS_NERRORS 22
/* Buckets of the publish-to-last-send histogram: 16 bounds, 10 us to 1 s, and +Inf. */
#define METRICS_LAT_NB 17

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

    /* Error answers by code (metrics_error_index): [0] WebSocket error envelopes, [1] HTTP API
     * error bodies. */
    uint64_t errors[2][METRICS_NERRORS];
    /* Publish-to-last-send (metrics_lat_flush): samples per bucket (not cumulative; the last is
     * +Inf), their sum in ns and their count. */
    uint64_t lat_buckets[METRICS_LAT_NB];
    uint64_t lat_sum_ns;
    uint64_t lat_count;
    /* Presence (presence.h) */
    uint64_t presence_requests; /* presence lists asked here (WebSocket and HTTP) */
    uint64_t presence_events;   /* $presence.join/leave frames queued to members */
    uint64_t presence_dropped;  /* presence events or records not sent (full link or outbox) */
};

/* ---- errors by code ---- */

/* Index of an error code ("RATE_LIMITED", ...) in metrics.errors; 0 for one not in the table.
 * A string compare per table entry: only error paths call it. */
unsigned metrics_error_index(const char *code);
/* The code of index i ("other" for 0). */
const char *metrics_error_code(unsigned i);
static inline void metrics_count_error(struct metrics *m, bool http, const char *code)
{
    m->errors[http][metrics_error_index(code)]++;
}

/* ---- publish-to-last-send latency ----
 *
 * What is measured, per worker: from the moment the worker that received a publish read the
 * clock for the loop iteration that handled its recv completion (t0, carried in the frame and
 * across workers in the XM_PUBLISH), to the moment this worker's io_uring_submit of that
 * iteration's sends returned (the sends of the event to its last local subscriber included).
 * A send to a socket with room in its buffer is issued inline by the submit, so when it returns
 * the bytes are in the kernel; a send that has to wait for room (a slow consumer) is not
 * followed further. Completion per event would need a counter per event per worker touched on
 * every send completion; this costs, per publish, one store in the frame and one entry here,
 * and per loop iteration with deliveries one clock read (no clock read per publish or per
 * subscriber: t0 is the iteration's clock). A publish fanned out over several workers gives a
 * sample on each (its own last send); Prometheus sums the workers' histograms. */
#define METRICS_LAT_PEND 32 /* distinct t0s one iteration keeps (more are folded into the last) */
extern const int64_t metrics_lat_bounds_ns[METRICS_LAT_NB - 1];

/* The publishes this iteration delivered, grouped by t0 (most share their iteration's). */
struct metrics_lat_pend {
    unsigned len;
    uint32_t n[METRICS_LAT_PEND];
    int64_t t0[METRICS_LAT_PEND];
};

/* One publish delivered to local subscribers in this iteration. A frame nobody stamped (t0 0:
 * an event the engine made up, not a publish) is not timed. */
static inline void metrics_lat_mark(struct metrics_lat_pend *p, int64_t t0_ns)
{
    if (!t0_ns)
        return;
    if (p->len && p->t0[p->len - 1] == t0_ns) {
        p->n[p->len - 1]++;
    } else if (p->len < METRICS_LAT_PEND) {
        p->t0[p->len] = t0_ns;
        p->n[p->len++] = 1;
    } else {
        p->n[p->len - 1]++; /* rare: the count stays right, the sample takes a later t0 */
    }
}
/* The iteration's sends were submitted at now_ns: records p's samples into m, empties p. */
void metrics_lat_flush(struct metrics *m, struct metrics_lat_pend *p, int64_t now_ns);
/* The q-quantile (0..1) in ns of a bucket array (not cumulative), interpolated inside its
 * bucket; 0 when empty. */
uint64_t metrics_lat_quantile_ns(const uint64_t *buckets, double q);

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
