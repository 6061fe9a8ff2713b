/* span.h - a pointer and a length into someone else's buffer.
 *
 * Every parser in proto/ reports what it found as spans into the caller's input: nothing is
 * copied and nothing is allocated. A span is valid for as long as the buffer it points into.
 */
#ifndef RINGCAST_PROTO_SPAN_H
#define RINGCAST_PROTO_SPAN_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

struct span {
    const char *base;
    size_t len;
};

/* A span over a string literal (no terminating NUL). */
#define SPAN_LIT(s) ((struct span){(s), sizeof(s) - 1})
#define SPAN_NULL   ((struct span){NULL, 0})

/* A span over a NUL-terminated string. */
static inline struct span span_from_cstr(const char *s)
{
    return (struct span){s, s ? strlen(s) : 0};
}

/* True when both spans hold the same bytes. */
static inline bool span_eq(struct span a, struct span b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.base, b.base, a.len) == 0);
}

/* True when the span holds exactly the literal. */
#define span_eq_lit(sp, lit) span_eq((sp), SPAN_LIT(lit))

#endif
