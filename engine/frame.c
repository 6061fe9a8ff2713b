/* frame.c - refcounted wire frames (see frame.h). */
#include "frame.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ws_frame.h"

/* ---- the per-thread cache of small frame blocks ----
 *
 * Every publish allocates an event frame and a reply frame and frees both a few microseconds
 * later, often on another worker: a worker that opted in (frame_cache_on) keeps the blocks it
 * frees, in size classes of FRAME_CLASS bytes up to FRAME_CACHE_BLOCK_MAX, and serves its next
 * allocations from them. A block is a plain malloc block of its class's size, so any thread can
 * free() it; a thread without a cache, or a class whose list is full, just frees. The class is
 * recomputed from the frame (cap and room.len are fixed at allocation), so frames carry no tag.
 * Under AddressSanitizer the cache is off, so a use after free is still caught (build with
 * -DRINGCAST_FRAME_CACHE_FORCE to check the cache itself there, leaks included). */
#if defined(RINGCAST_FRAME_CACHE_FORCE) /* to test the cache itself under the sanitizers */
#define FRAME_CACHE_ENABLED 1
#elif defined(__SANITIZE_ADDRESS__)
#define FRAME_CACHE_ENABLED 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FRAME_CACHE_ENABLED 0
#endif
#endif
#ifndef FRAME_CACHE_ENABLED
#define FRAME_CACHE_ENABLED 1
#endif

#define FRAME_NCLASSES        (FRAME_CACHE_BLOCK_MAX / FRAME_CLASS)
#define FRAME_CACHE_PER_CLASS 128 /* at most 128 x 1 KiB per class and thread */

struct fblock {
    struct fblock *next;
};

static _Thread_local struct {
    bool on;
    uint32_t n[FRAME_NCLASSES];
    struct fblock *head[FRAME_NCLASSES];
} fcache;

void frame_cache_on(void)
{
    fcache.on = FRAME_CACHE_ENABLED;
}

void frame_cache_off(void)
{
    fcache.on = false;
    for (unsigned i = 0; i < FRAME_NCLASSES; i++) {
        while (fcache.head[i]) {
            struct fblock *b = fcache.head[i];
            fcache.head[i] = b->next;
            free(b);
        }
        fcache.n[i] = 0;
    }
}

static void *block_get(size_t size)
{
    if (size <= FRAME_CACHE_BLOCK_MAX) {
        unsigned k = (unsigned)(size / FRAME_CLASS) - 1;
        struct fblock *b = fcache.head[k];
        if (b) {
            fcache.head[k] = b->next;
            fcache.n[k]--;
            return b;
        }
    }
    return malloc(size);
}

static void block_put(void *p, size_t size)
{
    if (fcache.on && size <= FRAME_CACHE_BLOCK_MAX) {
        unsigned k = (unsigned)(size / FRAME_CLASS) - 1;
        if (fcache.n[k] < FRAME_CACHE_PER_CLASS) {
            struct fblock *b = p;
            b->next = fcache.head[k];
            fcache.head[k] = b;
            fcache.n[k]++;
            return;
        }
    }
    free(p);
}

struct frame *frame_alloc(size_t cap, size_t room_len)
{
    struct frame *f = block_get(frame_size_class(cap, room_len));
    if (!f)
        return NULL;
    atomic_init(&f->refs, 1);
    f->len = 0;
    f->data = f->buf + WS_MAX_HEADER_UNMASKED;
    f->cap = (uint32_t)cap;
    f->room_hash = 0;
    f->room = SPAN_NULL;
    f->t0_ns = 0;
    f->seq = 0;
    return f;
}

void frame_writer(struct frame *f, struct jw *w)
{
    jw_init(w, (char *)f->buf + WS_MAX_HEADER_UNMASKED, f->cap);
}

void frame_finish(struct frame *f, uint8_t opcode, size_t len)
{
    f->data = ws_frame_header_prepend(f->buf + WS_MAX_HEADER_UNMASKED, opcode, len);
    f->len = (uint32_t)(f->buf + WS_MAX_HEADER_UNMASKED + len - f->data);
}

struct frame *frame_from_bytes(uint8_t opcode, const void *payload, size_t len)
{
    struct frame *f = frame_alloc(len, 0);
    if (!f)
        return NULL;
    memcpy(f->buf + WS_MAX_HEADER_UNMASKED, payload, len);
    frame_finish(f, opcode, len);
    return f;
}

struct frame *frame_raw(const void *bytes, size_t len)
{
    struct frame *f = frame_alloc(len, 0);
    if (!f)
        return NULL;
    memcpy(f->data, bytes, len);
    f->len = (uint32_t)len;
    return f;
}

struct frame *frame_close(uint16_t code, const char *reason)
{
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t n = ws_close_payload_write(payload, code, reason, reason ? strlen(reason) : 0);
    return frame_from_bytes(WS_OP_CLOSE, payload, n);
}

void frame_release(struct frame *f)
{
    /* acq_rel: the thread that frees must see every other thread's use of the frame as done. */
    if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1)
        block_put(f, frame_block_size(f));
}
