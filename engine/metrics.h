/* metrics.h - per-worker event counters.
 *
 * Each worker owns its counters and bumps them without atomics (one writer); the main thread
 * reads them only after the workers have exited, to log a summary at shutdown. A status line
 * (SIGUSR1) is logged by each worker itself, from its own thread.
 */
#ifndef RINGCAST_ENGINE_METRICS_H
#define RINGCAST_ENGINE_METRICS_H

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

#endif
