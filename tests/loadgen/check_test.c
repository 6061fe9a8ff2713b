/* check_test.c - per-(subscriber, room) tracking: duplicates, order by server seq and by room
 * sequence, the bounded window and what falls out of it. */
#include "check.h"
#include "unit.h"

static void test_in_order_and_duplicates(void)
{
    struct lg_track t;
    lg_track_init(&t);
    for (uint64_t q = 1; q <= 5000; q++)
        CHECK_EQ(lg_track_update(&t, q, q, true, true), LG_TRACK_NEW);
    CHECK_EQ(lg_track_update(&t, 5000, 5000, true, true), LG_TRACK_DUPLICATE);
    CHECK_EQ(lg_track_update(&t, 4990, 4990, true, true), LG_TRACK_DUPLICATE);
    /* A duplicate is not also reordered, and does not move last_srv. */
    CHECK_EQ(lg_track_update(&t, 5001, 5001, true, true), LG_TRACK_NEW);
}

static void test_reorder(void)
{
    struct lg_track t;
    lg_track_init(&t);
    CHECK_EQ(lg_track_update(&t, 1, 1, true, true), LG_TRACK_NEW);
    CHECK_EQ(lg_track_update(&t, 3, 3, true, true), LG_TRACK_NEW); /* 2 missing: not reorder */
    CHECK_EQ(lg_track_update(&t, 2, 2, true, true), LG_TRACK_REORDERED);
    CHECK_EQ(lg_track_update(&t, 4, 4, true, true), LG_TRACK_NEW);
    /* Several publishers: q order is not checked, the server's seq still is. */
    lg_track_init(&t);
    CHECK_EQ(lg_track_update(&t, 2, 1, true, false), LG_TRACK_NEW);
    CHECK_EQ(lg_track_update(&t, 1, 2, true, false), LG_TRACK_NEW);
    CHECK_EQ(lg_track_update(&t, 3, 2, true, false), LG_TRACK_REORDERED); /* seq repeated */
    /* No server seq: only q. */
    lg_track_init(&t);
    CHECK_EQ(lg_track_update(&t, 2, 0, false, true), LG_TRACK_NEW);
    CHECK_EQ(lg_track_update(&t, 1, 0, false, true), LG_TRACK_REORDERED);
}

static void test_window(void)
{
    struct lg_track t;
    lg_track_init(&t);
    CHECK_EQ(lg_track_update(&t, 10, 10, true, true), LG_TRACK_NEW);
    /* A jump of more than a window: the old slots must not read as duplicates. */
    uint64_t far = 10 + 3 * LG_TRACK_WINDOW + 7;
    CHECK_EQ(lg_track_update(&t, far, 11, true, true), LG_TRACK_NEW);
    CHECK_EQ(lg_track_update(&t, far - LG_TRACK_WINDOW + 1, 12, true, true), LG_TRACK_REORDERED);
    CHECK_EQ(lg_track_update(&t, far - LG_TRACK_WINDOW, 13, true, true), LG_TRACK_LATE);
    CHECK_EQ(lg_track_update(&t, 10, 14, true, true), LG_TRACK_LATE);
    /* Small steps reuse slots: q and q + WINDOW share one, and must not collide. */
    lg_track_init(&t);
    for (uint64_t q = 1; q <= 3 * LG_TRACK_WINDOW; q += 3)
        CHECK_EQ(lg_track_update(&t, q, q, true, true), LG_TRACK_NEW);
}

int main(void)
{
    RUN(test_in_order_and_duplicates);
    RUN(test_reorder);
    RUN(test_window);
    return unit_report("check");
}
