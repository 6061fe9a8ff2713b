/* series_test.c - the per-second series (loadgen/series.h): bounded bucket count however long
 * the run, bucket index clamped, and each bucket's p50/p99 within the coarse histogram's 1/16
 * (midpoint of a 1/8-wide sub-bucket) of the exact nearest-rank value. */
#include <math.h>
#include <stdlib.h>

#include "series.h"
#include "unit.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void test_bounded(void)
{
    struct lg_series *s = lg_series_new(10ull * 1000000000u);
    CHECK(s != NULL);
    CHECK_EQ(s->width_ns, 1000000000ull);
    CHECK(s->n >= 11 && s->n <= 13);
    /* Past the end: the last bucket, never out of bounds. */
    CHECK_EQ(lg_series_idx(s, 1000, 1000 + 3600ull * 1000000000u), s->n - 1);
    CHECK_EQ(lg_series_idx(s, 1000, 10), 0);
    free(s);
    /* A day-long run: wider buckets, never more than LG_SERIES_MAX. */
    s = lg_series_new(86400ull * 1000000000u);
    CHECK(s != NULL);
    CHECK(s->n <= LG_SERIES_MAX);
    CHECK(s->width_ns * s->n >= 86400ull * 1000000000u);
    free(s);
}

static void test_percentiles(void)
{
    enum { N = 20000 };
    static uint64_t v[N];
    struct lg_series *s = lg_series_new(5ull * 1000000000u);
    CHECK(s != NULL);
    for (int i = 0; i < N; i++) {
        v[i] = 1000 + next() % 50000000; /* 1 us .. 50 ms */
        lg_series_delivery(s, 0, 1500000000ull, v[i]);
    }
    lg_series_delivery(s, 0, 1500000000ull, UINT64_MAX); /* counted, no latency */
    CHECK_EQ(s->b[1].deliveries, N + 1);
    qsort(v, N, sizeof(v[0]), cmp_u64);
    double ps[] = {50, 99};
    for (int k = 0; k < 2; k++) {
        size_t rank = (size_t)ceil(ps[k] / 100.0 * N - 1e-9);
        double exact = (double)v[rank - 1];
        double got = lg_series_pct(&s->b[1], ps[k]);
        CHECK(fabs(got - exact) <= exact / 16 + 1);
    }
    CHECK(lg_series_pct(&s->b[0], 50) < 0); /* no samples */
    CHECK_EQ(lg_series_used(s), 2);
    /* Merge adds counts. */
    struct lg_series *t = lg_series_new(5ull * 1000000000u);
    CHECK(t != NULL);
    lg_series_merge(t, s);
    lg_series_merge(t, s);
    CHECK_EQ(t->b[1].deliveries, 2 * (N + 1));
    free(s);
    free(t);
}

static void test_lat_index_monotonic(void)
{
    unsigned prev = 0;
    for (uint64_t x = 1; x < (UINT64_C(1) << 40); x += x / 7 + 1) {
        unsigned i = lg_series_lat_idx(x);
        CHECK(i >= prev && i < LG_SERIES_LAT);
        prev = i;
    }
    CHECK_EQ(lg_series_lat_idx(UINT64_MAX), LG_SERIES_LAT - 1);
}

int main(void)
{
    RUN(test_bounded);
    RUN(test_percentiles);
    RUN(test_lat_index_monotonic);
    return unit_report("series");
}
