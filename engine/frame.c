/* frame.c - refcounted wire frames (see frame.h). */
#include "frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ws_frame.h"

struct frame *frame_alloc(size_t cap, size_t room_len)
{
    struct frame *f = malloc(sizeof(*f) + WS_MAX_HEADER_UNMASKED + cap + room_len);
    if (!f)
        return NULL;
    atomic_init(&f->refs, 1);
    f->len = 0;
    f->data = f->buf + WS_MAX_HEADER_UNMASKED;
    f->cap = (uint32_t)cap;
    f->room_hash = 0;
    f->room = SPAN_NULL;
    f->t0_ns = 0;
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
        free(f);
}
