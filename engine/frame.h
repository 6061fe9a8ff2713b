/* frame.h - refcounted, immutable WebSocket frames: the unit every send queue holds.
 *
 * A frame is one allocation: this header, then the wire bytes (WebSocket header + payload,
 * contiguous, so one iovec sends it), then for broadcast frames a copy of the room name that
 * lets a worker other than the home find its local subscribers.
 *
 * Ownership: whoever creates a frame holds the one reference frame_alloc returns. Every send
 * queue that holds the frame holds a reference of its own (taken when the frame is queued,
 * dropped when the last byte of it has been sent or the queue is discarded), and so does every
 * cross-worker message in flight that carries it (dropped by the receiving worker once it has
 * queued the frame on its subscribers). frame_release is the one release function: the frame
 * is freed when the count reaches zero, by whichever thread drops the last reference.
 * The bytes never change after frame_finish, so sharing across threads needs no lock; the
 * count is atomic.
 */
#ifndef RINGCAST_ENGINE_FRAME_H
#define RINGCAST_ENGINE_FRAME_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/json.h"
#include "proto/span.h"
#include "proto/ws_frame.h"

struct frame {
    _Atomic uint32_t refs;
    uint32_t len;       /* wire bytes at data */
    uint8_t *data;      /* start of the wire frame (inside buf) */
    uint32_t cap;       /* payload bytes reserved after WS_MAX_HEADER_UNMASKED */
    uint32_t room_hash; /* broadcast frames: hash of the room name (room.h) */
    struct span room;   /* broadcast frames: unescaped room name, stored after the payload */
    int64_t t0_ns;      /* broadcast frames: when the publish was received (metrics.h) */
    uint64_t seq;       /* broadcast frames: the event's seq in its room */
    uint8_t buf[];
};

/* Allocates a frame with room for a payload of up to cap bytes (and, after it, room_len bytes
 * for a room name). Returns it with one reference held by the caller, or NULL when memory is
 * short (every builder below too). */
struct frame *frame_alloc(size_t cap, size_t room_len);

/* A JSON writer over the frame's payload area (after the reserved header bytes). */
void frame_writer(struct frame *f, struct jw *w);

/* Prepends the unmasked header for a payload of len bytes with opcode: the frame is ready to
 * send and must not change afterwards. */
void frame_finish(struct frame *f, uint8_t opcode, size_t len);

/* Builds a complete frame from a finished JSON writer's bytes (copied). One reference. */
struct frame *frame_from_bytes(uint8_t opcode, const void *payload, size_t len);

/* Builds a frame of raw bytes (not WebSocket-framed: the HTTP response of the handshake).
 * One reference. */
struct frame *frame_raw(const void *bytes, size_t len);

/* Builds a close frame with code and reason. One reference. */
struct frame *frame_close(uint16_t code, const char *reason);

static inline void frame_ref(struct frame *f, uint32_t n)
{
    atomic_fetch_add_explicit(&f->refs, n, memory_order_relaxed);
}

/* Drops one reference; frees the frame when it was the last. */
void frame_release(struct frame *f);

/* Drops n references the caller took too many (deliver_local's upper bound); the caller still
 * holds one of its own, so this never frees. */
static inline void frame_unref(struct frame *f, uint32_t n)
{
    atomic_fetch_sub_explicit(&f->refs, n, memory_order_relaxed);
}

/* Frames up to this many bytes (header, reserved payload and room name) come from size classes
 * of FRAME_CLASS bytes that a worker recycles (frame.c); larger ones are plain malloc blocks. */
#define FRAME_CACHE_BLOCK_MAX 1024
#define FRAME_CLASS           64

/* The bytes the block of a frame with cap and room_len takes: its size class when small. */
static inline size_t frame_size_class(size_t cap, size_t room_len)
{
    size_t n = sizeof(struct frame) + WS_MAX_HEADER_UNMASKED + cap + room_len;
    return n <= FRAME_CACHE_BLOCK_MAX ? (n + FRAME_CLASS - 1) / FRAME_CLASS * FRAME_CLASS : n;
}

/* The bytes f's block really takes, for the send queues' memory charge (cap and room.len do not
 * change after frame_alloc). */
static inline size_t frame_block_size(const struct frame *f)
{
    return frame_size_class(f->cap, f->room.len);
}

/* The calling thread keeps the small frame blocks it frees for its next frame_alloc (workers,
 * from start to teardown); frame_cache_off frees what it kept and stops. Threads that never
 * call frame_cache_on allocate and free directly. */
void frame_cache_on(void);
void frame_cache_off(void);

#endif
