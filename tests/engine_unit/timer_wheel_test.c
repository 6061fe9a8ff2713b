/* timer_wheel_test.c - the wheel fires each entry once, at its tick, never early, including
 * across laps, after long stalls, and when callbacks reschedule or cancel. */
#include "unit.h"
#include "engine/timer_wheel.h"

#include <stdlib.h>

struct item {
    struct tw_entry e; /* first member: the callback casts back */
    int fired;
    uint64_t fired_at;
    uint64_t reschedule_to; /* 0 = no */
};

static uint64_t now_tick;
static struct timer_wheel tw;

static void on_fire(struct tw_entry *e, void *arg)
{
    (void)arg;
    struct item *it = (struct item *)e;
    it->fired++;
    it->fired_at = now_tick;
    if (it->reschedule_to) {
        uint64_t to = it->reschedule_to;
        it->reschedule_to = 0;
        tw_schedule(&tw, e, to);
    }
}

static void advance_to(uint64_t t)
{
    now_tick = t;
    tw_advance(&tw, t, on_fire, NULL);
}

static void test_fires_at_deadline(void)
{
    tw_init(&tw, 0);
    struct item a = {0}, b = {0};
    tw_entry_init(&a.e);
    tw_entry_init(&b.e);
    tw_schedule(&tw, &a.e, 5);
    tw_schedule(&tw, &b.e, 5 + TW_SLOTS); /* same slot, one lap later */
    CHECK_EQ(tw.count, 2);
    for (uint64_t t = 1; t <= 4; t++)
        advance_to(t);
    CHECK_EQ(a.fired, 0);
    advance_to(5);
    CHECK_EQ(a.fired, 1);
    CHECK_EQ(a.fired_at, 5);
    CHECK_EQ(b.fired, 0);
    CHECK(!tw_pending(&a.e));
    CHECK(tw_pending(&b.e));
    for (uint64_t t = 6; t < 5 + TW_SLOTS; t++)
        advance_to(t);
    CHECK_EQ(b.fired, 0);
    advance_to(5 + TW_SLOTS);
    CHECK_EQ(b.fired, 1);
    CHECK_EQ(tw.count, 0);
}

static void test_cancel_and_move(void)
{
    tw_init(&tw, 100);
    struct item a = {0}, b = {0};
    tw_entry_init(&a.e);
    tw_entry_init(&b.e);
    tw_schedule(&tw, &a.e, 110);
    tw_schedule(&tw, &b.e, 110);
    tw_cancel(&tw, &a.e);
    tw_cancel(&tw, &a.e);        /* twice is harmless */
    tw_schedule(&tw, &b.e, 120); /* moving a pending entry */
    CHECK_EQ(tw.count, 1);
    advance_to(115);
    CHECK_EQ(a.fired, 0);
    CHECK_EQ(b.fired, 0);
    advance_to(120);
    CHECK_EQ(b.fired, 1);
}

static void test_past_deadline_and_stall(void)
{
    tw_init(&tw, 50);
    struct item a = {0}, b = {0};
    tw_entry_init(&a.e);
    tw_entry_init(&b.e);
    tw_schedule(&tw, &a.e, 10); /* already past: fires at the next advance */
    tw_schedule(&tw, &b.e, 60);
    advance_to(51);
    CHECK_EQ(a.fired, 1);
    /* A stall of several laps: the advance fires b exactly once. */
    advance_to(51 + 5 * TW_SLOTS);
    CHECK_EQ(b.fired, 1);
    CHECK_EQ(tw.count, 0);
}

static void test_reschedule_from_callback(void)
{
    tw_init(&tw, 0);
    struct item a = {0};
    tw_entry_init(&a.e);
    a.reschedule_to = 3; /* in the past when it fires at 7: must fire at the next tick */
    tw_schedule(&tw, &a.e, 7);
    advance_to(7);
    CHECK_EQ(a.fired, 1);
    CHECK(tw_pending(&a.e));
    advance_to(8);
    CHECK_EQ(a.fired, 2);
    CHECK_EQ(a.fired_at, 8);
    /* Rescheduled into the same slot a lap later: not fired again in this advance. */
    a.reschedule_to = 9 + TW_SLOTS;
    tw_schedule(&tw, &a.e, 9);
    advance_to(9);
    CHECK_EQ(a.fired, 3);
    advance_to(10);
    CHECK_EQ(a.fired, 3);
}

static void test_random_against_model(void)
{
    enum { N = 2000 };
    static struct item items[N];
    tw_init(&tw, 0);
    srand(7);
    for (int i = 0; i < N; i++) {
        tw_entry_init(&items[i].e);
        items[i].fired = 0;
        tw_schedule(&tw, &items[i].e, 1 + (uint64_t)(rand() % (3 * TW_SLOTS)));
    }
    uint64_t t = 0;
    while (t < 4 * TW_SLOTS) {
        t += 1 + (uint64_t)(rand() % 7); /* uneven advances */
        advance_to(t);
    }
    int early = 0, once = 0;
    for (int i = 0; i < N; i++) {
        once += items[i].fired == 1;
        early += items[i].fired_at < items[i].e.expires;
    }
    CHECK_EQ(once, N);
    CHECK_EQ(early, 0);
    CHECK_EQ(tw.count, 0);
}

int main(void)
{
    RUN(test_fires_at_deadline);
    RUN(test_cancel_and_move);
    RUN(test_past_deadline_and_stall);
    RUN(test_reschedule_from_callback);
    RUN(test_random_against_model);
    return unit_report("timer_wheel");
}
