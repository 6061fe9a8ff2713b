/* timer_wheel.c - a hashed timer wheel of intrusive lists (see timer_wheel.h). */
#include "timer_wheel.h"

#include <stddef.h>

static inline struct tw_entry *slot_of(struct timer_wheel *tw, uint64_t tick)
{
    return &tw->slots[tick & (TW_SLOTS - 1)];
}

static void unlink_entry(struct tw_entry *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->next = e->prev = NULL;
}

void tw_init(struct timer_wheel *tw, uint64_t now)
{
    for (unsigned i = 0; i < TW_SLOTS; i++)
        tw->slots[i].next = tw->slots[i].prev = &tw->slots[i];
    tw->now = now;
    tw->count = 0;
}

void tw_schedule(struct timer_wheel *tw, struct tw_entry *e, uint64_t expires)
{
    if (tw_pending(e)) {
        unlink_entry(e);
        tw->count--;
    }
    /* A deadline already past fires at the next advance: it goes in the next tick's slot. */
    if (expires <= tw->now)
        expires = tw->now + 1;
    e->expires = expires;
    struct tw_entry *head = slot_of(tw, expires);
    e->next = head;
    e->prev = head->prev;
    head->prev->next = e;
    head->prev = e;
    tw->count++;
}

void tw_cancel(struct timer_wheel *tw, struct tw_entry *e)
{
    if (!tw_pending(e))
        return;
    unlink_entry(e);
    tw->count--;
}

void tw_advance(struct timer_wheel *tw, uint64_t now, tw_fire_fn fire, void *arg)
{
    /* After a long stall there is no point visiting a slot twice: one lap covers every slot. */
    uint64_t from = tw->now + 1;
    if (now >= from + TW_SLOTS)
        from = now - TW_SLOTS + 1;
    if (now < from)
        return;
    /* Set first: anything fire() schedules at or before now lands in the next tick's slot,
     * never in a slot this loop has already passed. */
    tw->now = now;
    for (uint64_t t = from; t <= now; t++) {
        struct tw_entry *head = slot_of(tw, t);
        /* Entries due later (a lap or more ahead) share the slot; a fired entry may be
         * rescheduled into this very slot for a later lap, so walk a detached list. */
        struct tw_entry pending = {head->next, head->prev, 0};
        if (head->next == head)
            continue;
        pending.next->prev = &pending;
        pending.prev->next = &pending;
        head->next = head->prev = head;
        while (pending.next != &pending) {
            struct tw_entry *e = pending.next;
            unlink_entry(e);
            if (e->expires <= now) {
                tw->count--;
                fire(e, arg);
            } else {
                /* Not yet: back into its slot. */
                e->next = head;
                e->prev = head->prev;
                head->prev->next = e;
                head->prev = e;
            }
        }
    }
}
