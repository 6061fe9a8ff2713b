/* worker.h - one thread, one io_uring ring, one core: the engine's unit of execution.
 *
 * A worker owns its ring, its provided-buffer ring, its listening socket, the connections it
 * accepted, its half of every room table (room.h) and its timer wheel. Nothing a worker owns is
 * touched by another thread: workers talk only through IORING_OP_MSG_RING messages
 * (broadcast.h), so the hot path takes no lock.
 *
 * Every SQE's user_data is a pointer with a kind in its low 4 bits (all our objects are at
 * least 16-byte aligned), so one completion loop tells receives, sends, accepts, ticks and
 * cross-worker messages apart without a lookup.
 */
#ifndef RINGCAST_ENGINE_WORKER_H
#define RINGCAST_ENGINE_WORKER_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "proto/envelope.h"
#include "room.h"
#include "timer_wheel.h"

/* Timer wheel tick: heartbeats and handshake timeouts are second-scale, 100 ms is plenty. */
#define WORKER_TICK_MS 100
/* How long a connection we are closing may take to answer our close frame. */
#define WORKER_CLOSE_WAIT_MS 5000

enum ud_kind {
    UD_IGNORE = 0,   /* completions nobody waits for (cancels) */
    UD_RECV = 1,     /* struct conn *: multishot recv */
    UD_SEND = 2,     /* struct conn *: sendmsg */
    UD_ACCEPT = 3,   /* struct worker *: multishot accept */
    UD_TICK = 4,     /* struct worker *: periodic timeout */
    UD_XMSG = 5,     /* struct xmsg *: cross-worker message (or its failed send) */
    UD_XFRAME = 6,   /* struct frame *: broadcast frame to deliver (or its failed send) */
    UD_SHUTDOWN = 7, /* no pointer: the main thread asks for a graceful shutdown */
    UD_STATUS = 8,   /* no pointer: the main thread asks for a status line (SIGUSR1) */
    UD_RELOAD = 9,   /* const struct rc_config *: the configuration to use from now (SIGHUP) */
};
#define UD_KIND_MASK 15ull

static inline uint64_t ud_make(const void *p, enum ud_kind k)
{
    return (uint64_t)(uintptr_t)p | (uint64_t)k;
}
static inline enum ud_kind ud_kind(uint64_t ud)
{
    return (enum ud_kind)(ud & UD_KIND_MASK);
}
static inline void *ud_ptr(uint64_t ud)
{
    return (void *)(uintptr_t)(ud & ~UD_KIND_MASK);
}

struct worker;
struct conn;

/* Cross-worker links. Every message a worker posts to another (struct xmsg, or a broadcast
 * frame) carries the link's sequence number in the MSG_RING's 32-bit value (which arrives as
 * the target CQE's res): sender id in bits 24-29, sequence in bits 0-23. io_uring does not
 * promise that MSG_RING completions reach a ring in submission order (on DEFER_TASKRUN targets
 * some kernels deliver them through LIFO task work), so the receiver restores the order: a
 * message that arrives early waits in the link's reorder ring until the ones before it came.
 *
 * Backpressure: a sender may have at most XLINK_WINDOW messages of a link unconsumed. Beyond
 * it a broadcast frame is not posted (its subscribers on that worker are closed with 1013, see
 * docs/architecture.md), a publish forwarded to its home is refused with OVERLOADED, and
 * subscriber counts wait on the room's dirty list; replies (acks) are always posted, and are
 * bounded by the requests that caused them. */
#define XLINK_WINDOW 8192
/* Reorder ring: the sender's window plus the replies the other direction's window allows. */
#define XLINK_REORDER  (2 * XLINK_WINDOW)
#define XLINK_SEQ_MASK 0xffffffu

struct xlink_out {
    uint32_t seq;            /* next sequence number */
    _Atomic uint64_t posted; /* messages posted (read by others at shutdown) */
    uint64_t consumed_seen;  /* the target's consumed count, last read */
};

struct xlink_in {
    uint32_t expect; /* the sequence number to handle next */
    bool broken;     /* a message was lost: handle in arrival order from now on */
    uint64_t *held;  /* reorder ring of user_data (0: empty), allocated on demand */
    uint32_t nheld;
    _Atomic uint64_t consumed; /* messages handled (read by the sender for its window) */
};

/* State shared by all workers: read-only after startup except the atomics. */
struct engine {
    const struct rc_config *cfg;
    unsigned nworkers;
    struct worker **workers;
    _Atomic unsigned nconns;    /* open connections, all workers: the max_connections gate */
    _Atomic unsigned npending;  /* connections still upgrading, all workers: capped the same */
    _Atomic unsigned nrooms;    /* room structs, all workers: the max_rooms gate */
    _Atomic unsigned sys_subs;  /* members of "$sys", all workers: stats only while > 0 */
    _Atomic unsigned quiesced;  /* workers that stopped taking requests at shutdown */
    int xorder_test;            /* test hook: 1 reverse, 2 shuffle cross-worker batches */
    bool cluster;               /* --redis: events go through the bus (cluster.h) */
    _Atomic int started;        /* workers that finished setup (or failed: see start_err) */
    _Atomic int start_err;      /* first setup error (-errno), 0 if none */
    _Atomic unsigned accepting; /* workers whose accept is armed and submitted */
    _Atomic unsigned drained;   /* workers done with their connections at shutdown */
    _Atomic unsigned finished;  /* workers done reading their rings at shutdown */
    pthread_mutex_t lock;       /* startup only: workers wait for `go` */
    pthread_cond_t cond;
    int go; /* 1: all workers are set up, start accepting; -1: give up */
};

struct outq;
struct http_job;
struct presence_state;

struct worker {
    struct engine *eng;
    const struct rc_config *cfg;
    unsigned id;
    int cpu; /* core it is pinned to, -1 if none */
    pthread_t thread;
    struct io_uring ring;
    int ring_fd; /* target fd for other workers' MSG_RING */
    int listen_fd;
    bool accept_armed;

    /* provided receive buffers (buffer group = 0) */
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    unsigned nbufs, buf_size;
    unsigned br_added; /* buffers given back since the last io_uring_buf_ring_advance */

    /* connections: slot table so cross-worker replies can find a connection by (slot, serial)
     * without holding a pointer that may dangle */
    struct conn **slots;
    uint32_t *free_slots;
    unsigned nslots, nfree;
    unsigned nconns;
    uint64_t serial;

    struct conn *dirty;       /* connections with frames queued this iteration (sendq.h) */
    struct conn *rearm;       /* connections whose multishot recv must be re-armed */
    struct conn *reap;        /* connections marked to close or abort (conn.h) */
    struct room *count_dirty; /* rooms whose subscriber count the home has yet to hear */
    struct xmsg *retry;       /* messages whose MSG_RING the kernel refused, to post again */

    struct xlink_out *xout;       /* per target worker */
    struct xlink_in *xin;         /* per sending worker */
    _Atomic bool gone;            /* exit: this worker's ring is torn down, post nothing to it */
    _Atomic uint64_t lost_from;   /* senders that dropped frames for us (window full) */
    _Atomic uint64_t broken_from; /* senders whose MSG_RING failed: a gap in their sequence */
    unsigned rand;                /* rand_r state of the xorder test hook */
    uint64_t refused_accepts;     /* accepts refused since the last log line */
    int64_t refused_log_ms;
    int64_t xdrop_log_ms;
    struct http_job *http_jobs; /* HTTP API answers waiting for other workers (http_api.h) */
    struct room *poll_rooms;    /* home rooms with parked long polls (history.h) */
    unsigned npolls;            /* parked long polls: at most HISTORY_POLL_MAX_WAITING */
    uint64_t resume_token;      /* the last resume token given to a member (room.h) */
    struct outq *oq_pool;       /* idle queue blocks kept for reuse */
    unsigned oq_pool_n;
    /* presence.h: record outboxes and waiting lists, NULL until used */
    struct presence_state *pres;

    struct room_table rooms;
    struct timer_wheel tw;
    uint64_t tick;   /* timer ticks since start */
    int64_t now_ms;  /* CLOCK_REALTIME, read once per loop iteration */
    int64_t mono_ms; /* CLOCK_MONOTONIC, same */
    int64_t mono_ns; /* the same reading in ns: a publish's t0 (metrics.h) */

    struct __kernel_timespec tick_ts;
    int64_t start_mono_ms;
    bool draining;    /* shutdown asked: no accepts, requests answered SHUTTING_DOWN */
    bool closing_all; /* every link is empty: the 1001 closes are queued */
    bool discard;     /* shutdown's last pass: free arriving messages, send nothing */
    int64_t drain_log_ms;
    bool stop;
    int64_t drain_deadline_ms; /* monotonic */

    uint64_t trim_accepted; /* m.accepted at the last malloc_trim */
    int64_t sys_stats_ms;   /* mono_ms of the last "$sys" stats event (sys_stats.h) */
    uint64_t last_accept_tick;

    struct metrics m;
    struct metrics_lat_pend lat; /* publishes delivered this iteration, timed after the submit */
    jsmntok_t toks[ENV_MAX_TOKENS];
    char unescape[CHANNEL_UNESCAPE_CAP];
};

/* Creates worker id (nothing started yet). */
struct worker *worker_new(struct engine *eng, unsigned id, int cpu, int listen_fd);
/* Starts the thread: it pins itself, sets up its ring, reports to eng->started, arms accept,
 * and runs until shutdown. Returns 0 or -errno from pthread_create. */
int worker_start(struct worker *w);
/* Frees a worker whose thread has been joined (or never started). */
void worker_free(struct worker *w);

/* An SQE, submitting first when the queue is full. Never NULL. */
struct io_uring_sqe *worker_sqe(struct worker *w);

/* Gives a provided buffer back to the kernel (made visible at the end of the batch). */
void worker_buf_return(struct worker *w, unsigned bid);
static inline uint8_t *worker_buf(struct worker *w, unsigned bid)
{
    return w->bufs + (size_t)bid * w->buf_size;
}

/* Posts a cross-worker message to worker target: the target's handler gets ptr, in the order
 * posted. Ownership of ptr passes to the target. Never refused (replies). */
void worker_post(struct worker *w, unsigned target, void *ptr, enum ud_kind kind);
/* Like worker_post, but false (nothing posted, ptr still the caller's) when the link's
 * window is full. */
bool worker_post_try(struct worker *w, unsigned target, void *ptr, enum ud_kind kind);
/* True when the link to target has room for one more windowed message. */
bool worker_link_open(struct worker *w, unsigned target);

/* The connection in slot with serial, or NULL when it is gone. */
struct conn *worker_conn_lookup(struct worker *w, uint32_t slot, uint64_t serial);

#endif
