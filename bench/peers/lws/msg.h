/* msg.h - lws-broadcast's outgoing messages: one buffer per message, serialized once, with
 * LWS_PRE bytes of headroom for the frame header lws_write() puts in front, and a reference
 * count so that every subscriber's queue can hold the same buffer.
 *
 * Single-threaded: the count is a plain integer, and lws_write() rewriting the headroom of a
 * shared buffer is harmless because every subscriber gets the same unmasked header for it.
 */
#ifndef LWS_BROADCAST_MSG_H
#define LWS_BROADCAST_MSG_H

#include <stddef.h>
#include <stdint.h>

struct msg {
    uint32_t refs;       /* one per session queue holding it, plus its creator's until released */
    size_t len;          /* JSON bytes written after the headroom */
    size_t cap;          /* JSON bytes the buffer holds */
    unsigned char buf[]; /* LWS_PRE headroom, then the JSON */
};

/* A message with room for cap bytes of JSON and one reference, the caller's. Aborts when out
 * of memory. */
struct msg *msg_new(size_t cap);
/* Drops one reference; the last one frees the message. */
void msg_unref(struct msg *m);
/* The JSON, just after the LWS_PRE headroom: what lws_write() is given. */
unsigned char *msg_data(struct msg *m);

/* Appenders. The caller sizes the message for the worst case first (msg_put_str: 6 bytes per
 * input byte plus 2), so running past cap is a bug: it aborts with a message. */
void msg_put(struct msg *m, const void *p, size_t n);
#define msg_put_lit(m, s) msg_put((m), (s), sizeof(s) - 1)
void msg_put_u64(struct msg *m, uint64_t v);
/* s (UTF-8) as a quoted JSON string: '"', '\\' and control characters escaped. */
void msg_put_str(struct msg *m, const char *s, size_t n);
/* The current time as a quoted ISO-8601 UTC timestamp with milliseconds. */
void msg_put_timestamp(struct msg *m);

#endif
