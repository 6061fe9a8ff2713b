/* timer_wheel.h - one hashed timer wheel per worker instead of a timer per connection.
 *
 * Time is counted in ticks (the worker chooses the tick, e.g. 100 ms). An entry lives in slot
 * (expires % TW_SLOTS) of a circular array of intrusive doubly linked lists, so scheduling and
 * cancelling are O(1) and a tick costs the entries of one slot. Entries are embedded in their
 * owner (the connection), so the wheel allocates nothing.
 *
 * Idle timeouts are lazy: a connection does not reschedule its timer on every message; it
 * records its last activity, and when the timer fires the owner checks whether it really is
 * idle and, if not, schedules the entry again for the remaining time. That keeps the hot path
 * free of list operations.
 */
#ifndef RINGCAST_ENGINE_TIMER_WHEEL_H
#define RINGCAST_ENGINE_TIMER_WHEEL_H

#include <stdbool.h>
#include <stdint.h>

#define TW_SLOTS 512 /* a power of two; timeouts longer than this many ticks wrap harmlessly */

struct tw_entry {
    struct tw_entry *next, *prev; /* NULL when not scheduled */
    uint64_t expires;             /* tick at which it fires */
};

struct timer_wheel {
    struct tw_entry slots[TW_SLOTS]; /* list heads (sentinels) */
    uint64_t now;                    /* last tick processed */
    unsigned count;                  /* entries scheduled */
};

typedef void (*tw_fire_fn)(struct tw_entry *e, void *arg);

/* Initializes an empty wheel at tick now. */
void tw_init(struct timer_wheel *tw, uint64_t now);
/* Initializes an entry as not scheduled (call once when its owner is created). */
static inline void tw_entry_init(struct tw_entry *e)
{
    e->next = e->prev = 0;
    e->expires = 0;
}
static inline bool tw_pending(const struct tw_entry *e)
{
    return e->next != 0;
}
/* Schedules e to fire at tick expires (at the next advance if already past), moving it if it
 * was scheduled. */
void tw_schedule(struct timer_wheel *tw, struct tw_entry *e, uint64_t expires);
/* Unschedules e; harmless when it is not scheduled. */
void tw_cancel(struct timer_wheel *tw, struct tw_entry *e);
/* Advances to tick now and calls fire for every entry whose time has come, each once, after
 * unscheduling it (fire may schedule it again, or free its owner). */
void tw_advance(struct timer_wheel *tw, uint64_t now, tw_fire_fn fire, void *arg);

#endif
