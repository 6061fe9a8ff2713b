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
 * Reply order: a reply that depends on another worker (a publish to a room homed elsewhere, a
 * subscribe waiting for its home's ack) takes its place in the queue when the request is
 * handled, as a *held* entry; a send covers only the entries before the first held one. When
 * the answer arrives the entry is released (sendq_release_held) and everything behind it
 * follows. So one connection's replies, and the events around them, leave in request order
 * whichever worker answers first.
 *
 * Backpressure: a queue is charged what it really pins, not its wire bytes: every entry costs
 * its frame's allocation (header, reserved payload, malloc overhead) and its pointer, so a
 * flood of 2-byte pongs costs what it uses. A connection whose charge would pass
 * max_queue_bytes is a slow consumer: the frame is refused, the connection is marked, and the
 * worker's reaper (conn.h, "Lifetimes") drops what the kernel does not have yet and closes it
 * with 4008 once the current completion is handled. A push never frees or closes anything.
 *
 * TLS (tls.h): the queue holds the same plaintext frames; a send encrypts a bounded batch of
 * them into the session's ciphertext buffer, releases them, and sends that buffer. The buffer
 * counts against max_queue_bytes with the frames, so a TLS slow consumer is closed the same way.
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
/* Idle blocks a worker keeps for reuse: enough for every queue of a fan-out to a thousand
 * subscribers to come back to the pool and leave it again without malloc/free (about 760 KiB
 * at most); after a burst of connections the pool is trimmed to OUTQ_POOL_IDLE
 * (sendq_pool_trim), so idle connections do not pay for their setup's peak. */
#define OUTQ_POOL_MAX  1024
#define OUTQ_POOL_IDLE 64

/* WebSocket close code for a slow consumer (ringcast's own, documented in docs/protocol.md). */
#define CLOSE_SLOW_CONSUMER 4008

struct outq {
    struct outq *pool_next;
    uint32_t head, tail, cap; /* frames f[head..tail) are queued */
    uint32_t off;             /* bytes of f[head] already sent */
    uint32_t inflight;        /* frames covered by the send in flight, from head */
    uint64_t bytes;           /* unsent wire bytes, in flight included */
    uint64_t mem;             /* what the queued frames cost in memory (sendq_frame_cost) */
    uint64_t popped;          /* entries ever removed from head: f[i] is entry popped+i-head */
    struct frame **f;         /* f_inline, or a heap array; bit 0 set: a held entry */
    struct msghdr msg;
    struct iovec iov[OUTQ_IOV];
    struct frame *f_inline[OUTQ_INLINE];
};

/* Memory one queued frame pins: its allocation and the queue's pointer to it. */
uint64_t sendq_frame_cost(const struct frame *f);

/* Queues f on c, taking over one reference the caller holds. Returns false when f was
 * refused (and released): the connection is closing, or f would take it past
 * max_queue_bytes, which marks it as a slow consumer (closed by the reaper). */
bool sendq_push(struct conn *c, struct frame *f);
/* Like sendq_push, but never refused for size: control replies the protocol requires. */
bool sendq_push_force(struct conn *c, struct frame *f);
/* Queues f as a held entry: nothing behind it is sent until sendq_release_held. Takes over
 * one reference (the queue's); the caller keeps its own to release the entry. Returns the
 * entry's position, or UINT64_MAX when refused like sendq_push (f's queue reference is then
 * dropped). f's bytes may still be written until it is released. */
uint64_t sendq_push_held(struct conn *c, struct frame *f);
/* Releases the held entry at pos if it is still f (it is gone when the connection was
 * discarded or closed meanwhile); f's length may have changed since it was queued. */
void sendq_release_held(struct conn *c, uint64_t pos, struct frame *f);
/* Like sendq_release_held, but the entry leaves as frame f instead of held (a reply whose size
 * was unknown when its place was taken: an HTTP API answer gathered from every worker). Takes
 * over f's reference and drops the queue's reference on held. Returns false when the entry is
 * gone (f is then still the caller's). Never refused for size: the reply was asked for. */
bool sendq_release_held_as(struct conn *c, uint64_t pos, struct frame *held, struct frame *f);
/* Replaces the unsent frame at pos with f when pos still holds old and none of its bytes has
 * left (pong coalescing). Returns false, leaving f to the caller, otherwise. */
bool sendq_replace(struct conn *c, uint64_t pos, struct frame *old, struct frame *f);
/* The position the next pushed frame will take. */
uint64_t sendq_next_pos(const struct conn *c);
/* Submits one sendmsg for every dirty connection that has none in flight. */
void sendq_flush(struct worker *w);
/* Puts c on the dirty list so the next flush sends what it has (TLS: output the session made
 * outside the send path, such as handshake replies and close_notify). */
void sendq_kick(struct conn *c);
/* A send completion: releases what was sent, queues the rest for the next flush. */
void sendq_on_complete(struct conn *c, int res);
/* Drops every queued frame the kernel has not started on (the connection is going away): the
 * frames in flight and a partly sent one stay, so a close frame queued next follows whole
 * frames. */
void sendq_discard(struct conn *c);
/* True when nothing is queued or in flight. */
bool sendq_empty(const struct conn *c);
/* Frees the worker's pool of idle blocks. */
void sendq_pool_free(struct worker *w);
/* Frees idle blocks beyond keep. */
void sendq_pool_trim(struct worker *w, unsigned keep);

#endif
