/* cluster_bus.h - the bus thread's internals, shared by cluster.c (connections, the thread,
 * the hand-off with workers) and cluster_chan.c (channels, syncs, publishes). Bus thread only,
 * except where a comment says otherwise. Not a public header: see cluster.h.
 */
#ifndef RINGCAST_ENGINE_CLUSTER_BUS_H
#define RINGCAST_ENGINE_CLUSTER_BUS_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster.h"
#include "worker.h"

/* Keys and channel of a room: "rc:m:NAME" (hash: e = epoch, s = seq), "rc:s:NAME" (stream),
 * "rc:c:NAME" (channel). Names are binary-safe arguments. */
#define KEY_META   "rc:m:"
#define KEY_STREAM "rc:s:"
#define KEY_CHAN   "rc:c:"
#define PREFIX_LEN 5

struct rconn {
    redisAsyncContext *ac;
    bool rd, wr;
    unsigned outstanding; /* replies we wait for */
    int64_t progress_ms;  /* last reply, or when outstanding went from 0 to 1 */
};

/* A room this node is subscribed to (or subscribing, or leaving) in Redis. */
struct croom {
    struct croom *next;
    uint32_t hash, gen;
    uint32_t sync;   /* the sync script sent last: an older one's reply is ignored */
    bool want;       /* the home wants its events */
    bool subscribed; /* SUBSCRIBE sent, no UNSUBSCRIBE since */
    bool confirmed;  /* ... and Redis confirmed it */
    bool leaving;    /* UNSUBSCRIBE sent, not confirmed yet */
    bool syncing;    /* sync script sent: events wait in buf */
    bool live;       /* SYNC posted: events go to the home */
    struct xmsg *buf, *buf_tail;
    unsigned nbuf;
    uint16_t len;
    char name[];
};

#define CROOM_BUCKETS 4096

struct cluster_bus {
    const struct rc_config *cfg;
    struct engine *eng;
    char host[256], path[256], user[128], pass[256];
    int port, db;
    char pub_sha[41], sync_sha[41];
    pthread_t thread;
    bool running;
    int efd;
    pthread_mutex_t mu;
    struct xmsg *q_head, *q_tail;
    _Atomic bool stop;
    struct rconn cmd, sub;
    bool cmd_ready, sub_ready; /* connected and set up */
    bool reset;                /* a connection failed: tear both down in the loop */
    int64_t next_try_ms, backoff_ms, ping_ms;
    bool ping_out;
    struct io_uring ring;
    struct xlink_out *xout;
    unsigned id;
    struct croom *rooms[CROOM_BUCKETS];
    unsigned max_pending;
    int64_t timeout_ms;
};

extern struct cluster_bus cl;

/* Clocks, in ms. */
int64_t bus_now_ms(void);
int64_t bus_unix_ms(void);
/* A random epoch (never 0), offered to the scripts for a room that has none. */
uint64_t bus_fresh_epoch(void);
/* Posts m to worker `to` on the bus's ordered link (MSG_RING); ownership passes. */
void bus_post(struct xmsg *m, unsigned to);
/* Answers publish m UNAVAILABLE (to its worker) and frees its place in the bound. */
void bus_pub_fail(struct xmsg *m);
/* Sends a command on rc, counting the reply it waits for. False: not sent (no connection). */
bool bus_command(struct rconn *rc, redisCallbackFn *fn, void *priv, int argc, const char **argv,
                 const size_t *lens);
/* A reply came on rc (liveness, cluster.c). */
void bus_replied(struct rconn *rc);

/* cluster_chan.c */
struct croom **bus_croom_slot(uint32_t hash, const char *name, size_t len);
void bus_croom_drop_buf(struct croom *r);
void bus_croom_free(struct croom *r);
/* SUBSCRIBEs r's channel when the sub connection is ready and r is not subscribed. */
void bus_subscribe(struct croom *r);
/* XM_CL_SUB / XM_CL_UNSUB from a home. Takes m. */
void bus_room_request(struct xmsg *m);
/* XM_PUBLISH from a worker: the publish script; the ack goes back to m->from. Takes m. */
void bus_publish(struct xmsg *m);

#endif
