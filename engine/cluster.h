/* cluster.h - several nodes, one room space: Redis as the cluster bus (docs/cluster.md).
 *
 * With --redis, every publish goes through Redis: one Lua script per event atomically reads
 * (or creates) the room's epoch, increments its seq, appends the event to the room's capped
 * stream and PUBLISHes it on the room's channel. Every node, the origin included, delivers
 * what its subscription receives, so seq and epoch are Redis's and the same everywhere.
 *
 * One thread per node (the "bus" thread) owns both Redis connections (commands, pub/sub),
 * driven by hiredis's async API over poll(2): no worker ever blocks on Redis. Workers hand it
 * struct xmsg requests through a mutex-guarded list and an eventfd; it answers with MSG_RING
 * from a tiny io_uring of its own, as one more sender (id = nworkers) on every worker's
 * ordered links (worker.h), so what it posts to a worker is handled in posting order.
 *
 * Per node, a room's home worker (room.h) stays the one place that orders its events: it asks
 * the bus to SUBSCRIBE when the room's first subscriber on this node comes (and UNSUBSCRIBE
 * when the last leaves), it gets a SYNC (epoch, seq, the stream's last history-size events)
 * before any subscribe is answered, then each event, which it encodes once, records in its
 * history and fans out to the node's workers as in single-node mode.
 */
#ifndef RINGCAST_ENGINE_CLUSTER_H
#define RINGCAST_ENGINE_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/span.h"

struct bc_sub_opts;
struct conn;
struct engine;
struct frame;
struct member;
struct rc_config;
struct room;
struct worker;
struct xmsg;

/* Longest wait for a Redis reply before the bus is declared down, by default (ms). */
#define CLUSTER_DEF_TIMEOUT_MS 2000
/* Publishes queued or waiting for Redis, per node, by default: beyond, UNAVAILABLE. With the
 * events the bus may have unread on a link (XLINK_WINDOW / 2) it stays under a worker's reorder
 * ring (XLINK_REORDER), so the bus's link keeps its order; the option is capped for that. */
#define CLUSTER_DEF_MAX_PENDING 4096
/* Reconnect backoff: from 100 ms, doubling, capped at 5 s, each try jittered by +-25%. */
#define CLUSTER_BACKOFF_MIN_MS 100
#define CLUSTER_BACKOFF_MAX_MS 5000
/* Events held per room while its SYNC is being read (beyond: the room syncs again). They are
 * posted to the home in one burst after the SYNC, past the bus's half-window read gate: kept at
 * XLINK_WINDOW / 4 (worker.h; checked in cluster_chan.c) so that with the gate's XLINK_WINDOW / 2
 * and the pending publishes' acks the link stays under a worker's reorder ring. */
#define CLUSTER_SYNC_BUFFER 2048

enum cluster_state {
    CLUSTER_OFF = 0,  /* no --redis (or --redis-optional and Redis unreachable at start) */
    CLUSTER_DOWN = 1, /* connecting, or lost: publishes fail with UNAVAILABLE */
    CLUSTER_UP = 2,
};

/* Counters for /metrics and /health (read with relaxed loads from any thread). */
struct cluster_stats {
    _Atomic int state; /* enum cluster_state */
    _Atomic uint64_t reconnects, publishes, publish_errors, events_in, syncs, resyncs_lost;
    _Atomic uint64_t pending; /* publishes queued or in flight */
    _Atomic uint64_t rooms;   /* channels subscribed in Redis */
};
extern struct cluster_stats cluster_stats;

/* Startup (main thread): parses --redis, checks that Redis answers (PING, with the timeout) and
 * loads the scripts. Returns 0 (cluster mode on), 1 (no --redis, or --redis-optional and Redis
 * unreachable: local-only, warned), or -1 after printing why (exit 2). */
int cluster_init(const struct rc_config *cfg);
/* Starts the bus thread once the workers' rings exist. Returns 0 or -errno. */
int cluster_start(struct engine *eng);
/* Stops and joins the bus thread (after the workers are joined); fails what is pending. */
void cluster_stop(void);

/* ---- worker side (cluster_room.c) ---- */

/* Rooms whose name starts with '$' are the node's own ($sys stats, sys_stats.h): never on the
 * bus. */
static inline bool cluster_local_room(struct span name)
{
    return name.len && name.base[0] == '$';
}

/* True when a publish may be handed to the bus now (it is up and its queue has room);
 * otherwise counts the refusal. */
bool cluster_can_publish(struct worker *w);
/* Hands an XM_PUBLISH (filled as for a remote home) to the bus; its XM_PUB_ACK comes back. */
void cluster_submit(struct worker *w, struct xmsg *m);
/* Subscribe on the home of a room the bus has not synced yet: the reply and the replay wait
 * for the SYNC (m is the new member, reply its "subscribed" frame). True when it took over
 * (answered or held); false: proceed as single-node. */
bool cluster_home_subscribe(struct conn *c, struct room *r, struct member *m, struct frame *reply,
                            const struct bc_sub_opts *o, struct span id);
/* An XM_COUNT (asking an ack) or XM_RESUME reached the home of a room not synced yet: it waits
 * for the SYNC. True when it took m. */
bool cluster_home_defer(struct worker *w, struct room *r, struct xmsg *m);
/* An XM_POLL on the home of a room the bus has not synced: it waits for the SYNC (the room
 * is followed while polls wait on it). True when it took m. */
bool cluster_home_poll(struct worker *w, struct xmsg *m);
/* The home room's node-wide interest may have changed: subscribe or unsubscribe in Redis. */
void cluster_home_check(struct worker *w, struct room *r);
/* A remote join was refused (XM_JOIN_ACK with unavail: the bus was down): r's waiting
 * subscribers are answered UNAVAILABLE and leave. */
void cluster_join_refused(struct worker *w, struct room *r);
/* The bus lost Redis (XM_CL_DOWN): every home room still waiting for its SYNC answers its
 * waiters UNAVAILABLE and leaves the bus (the next subscribe starts a fresh sync). */
void cluster_on_down(struct worker *w);
/* XM_CL_EVENT, XM_CL_SYNC, XM_CL_LOST, XM_CL_DOWN. Takes m. */
void cluster_on_xmsg(struct worker *w, struct xmsg *m);
/* Frees r's deferred messages (the room is going). */
void cluster_room_free(struct room *r);

#endif
