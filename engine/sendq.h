/* sendq.h - per-connection send queues, corked: one sendmsg per connection per loop iteration.
 *
 * A queue holds frame pointers (frame.h), never copies. Queuing only appends a pointer and puts
 * the connection on the worker's dirty list; after the iteration's completions are handled,
 * sendq_flush turns every dirty connection's queue into one sendmsg whose iovec has one entry
 * per frame, and the worker hands them all to the kernel in one io_uring_submit. A burst of
 * publishes therefore costs one send per subscriber, not one per message.
 *
 * Order: at most one send is in flight per connection; what is queued meanwhile goes in the
 * next one, after the completion. A short send resumes at the exact byte.
 *
 * Backpressure: a connection whose unsent bytes would pass max_queue_bytes is a slow consumer:
 * everything not already handed to the kernel is dropped and the connection is closed with
 * 4008, so nobody else waits for it.
 *
 * Memory: the queue block (msghdr, iovecs, the first pointers) exists only while something is
 * queued or in flight; idle connections hold none. Blocks are recycled through a small
 * per-worker pool.
 */
#ifndef RINGCAST_ENGINE_SENDQ_H
#define RINGCAST_ENGINE_SENDQ_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

struct conn;
struct frame;
struct worker;

/* Frames per sendmsg: enough to empty a corked burst in one go, small enough to keep the
 * block about half a kilobyte. */
#define OUTQ_IOV 32
/* Frame pointers held without a second allocation. */
#define OUTQ_INLINE 16
/* Idle blocks a worker keeps for reuse. */
#define OUTQ_POOL_MAX 64

/* WebSocket close code for a slow consumer (ringcast's own, documented in docs/protocol.md). */
#define CLOSE_SLOW_CONSUMER 4008

struct outq {
    struct outq *pool_next;
    uint32_t head, tail, cap; /* frames f[head..tail) are queued */
    uint32_t off;             /* bytes of f[head] already sent */
    uint32_t inflight;        /* frames covered by the send in flight, from head */
    uint64_t bytes;           /* unsent bytes, in flight included */
    struct frame **f;         /* f_inline, or a heap array once more are queued */
    struct msghdr msg;
    struct iovec iov[OUTQ_IOV];
    struct frame *f_inline[OUTQ_INLINE];
};

/* Queues f on c, taking over one reference the caller holds. A closing connection drops it.
 * A connection over max_queue_bytes is closed as a slow consumer (the frame is dropped). */
void sendq_push(struct conn *c, struct frame *f);
/* Like sendq_push, but never refused for size: close frames and the 4008 close itself. */
void sendq_push_force(struct conn *c, struct frame *f);
/* Submits one sendmsg for every dirty connection that has none in flight. */
void sendq_flush(struct worker *w);
/* A send completion: releases what was sent, queues the rest for the next flush. */
void sendq_on_complete(struct conn *c, int res);
/* Drops every queued frame not in flight (the connection is going away). */
void sendq_discard(struct conn *c);
/* True when nothing is queued or in flight. */
bool sendq_empty(const struct conn *c);
/* Frees the worker's pool of idle blocks. */
void sendq_pool_free(struct worker *w);

#endif
