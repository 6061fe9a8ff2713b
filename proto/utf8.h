/* utf8.h - incremental UTF-8 validation (RFC 3629) for text frames and close reasons.
 *
 * The validator carries its state across calls, so a message split over fragments (or a
 * fragment split over reads) is checked as one stream. It stops at the first byte that cannot
 * start or continue a valid sequence: overlong forms, UTF-16 surrogates (U+D800..U+DFFF),
 * code points above U+10FFFF, stray continuation bytes. ASCII runs take a word-at-a-time path.
 */
#ifndef RINGCAST_PROTO_UTF8_H
#define RINGCAST_PROTO_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct utf8_state {
    uint32_t state; /* 0 = at a character boundary; otherwise inside a sequence */
};

enum utf8_result {
    UTF8_OK = 0,      /* everything so far is valid and ends on a character boundary */
    UTF8_PARTIAL = 1, /* valid so far, but ends inside a multi-byte sequence */
    UTF8_INVALID = 2, /* an invalid byte was seen; the state stays invalid */
};

static inline void utf8_init(struct utf8_state *s)
{
    s->state = 0;
}

/* Feeds buf[0..len) to the validator. On UTF8_INVALID, *bad (when not NULL) gets the offset in
 * buf of the first byte that made the input invalid. */
enum utf8_result utf8_feed(struct utf8_state *s, const uint8_t *buf, size_t len, size_t *bad);

/* True when buf[0..len) is complete, valid UTF-8 on its own. */
bool utf8_valid(const uint8_t *buf, size_t len);

#endif
