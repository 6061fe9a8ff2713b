/* hist_test.c - the histogram against exact nearest-rank percentiles computed by sorting, for
 * random and adversarial distributions and after merging. */
#include <math.h>
#include <stdlib.h>

#include "hist.h"
#include "unit.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t exact(uint64_t *v, size_t n, double p)
{
    size_t rank = (size_t)ceil(p / 100.0 * (double)n - 1e-9);
    if (rank < 1)
        rank = 1;
    return v[rank - 1];
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const double ps[] = {1, 10, 50, 90, 99, 99.9, 99.99, 100};

/* Checks every percentile of v[0..n) (recorded into h) is within 1 % of the exact one. */
static void check_all(struct hist *h, uint64_t *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
        double want = (double)exact(v, n, ps[i]);
        double got = (double)hist_percentile(h, ps[i]);
        double err = want ? fabs(got - want) / want : got;
        if (err > 0.01)
            fprintf(stderr, "p%g: got %.0f want %.0f (err %.4f)\n", ps[i], got, want, err);
        CHECK(err <= 0.01);
    }
    CHECK_EQ(h->count, n);
    CHECK_EQ(h->min, v[0]);
    CHECK_EQ(h->max, v[n - 1]);
}

static void test_random_ranges(void)
{
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof(*v));
    static struct hist h;
    /* Log-uniform from 1 us to 60 s: every decade the tool promises. */
    hist_init(&h);
    for (size_t i = 0; i < N; i++) {
        double e = 3 + (double)(next() % 1000000) / 1000000.0 * (log10(60e9) - 3);
        v[i] = (uint64_t)pow(10, e);
        hist_record(&h, v[i]);
    }
    check_all(&h, v, N);
    free(v);
}

static void test_adversarial(void)
{
    enum { N = 10007 };
    static uint64_t v[N];
    static struct hist h;
    /* Values at bucket edges: 2^k - 1, 2^k, 2^k + 1, and the worst case just below a bucket's
     * top, where the midpoint is furthest away. */
    hist_init(&h);
    size_t n = 0;
    for (unsigned k = 10; k < 36 && n + 4 <= N; k++) {
        uint64_t b = 1ull << k;
        uint64_t vals[4] = {b - 1, b, b + 1, b + (b >> 7) - 1};
        for (int j = 0; j < 4; j++) {
            v[n++] = vals[j];
            hist_record(&h, vals[j]);
        }
    }
    check_all(&h, v, n);
    /* One huge outlier among identical values: p99.99 must not move, max must be exact. */
    hist_init(&h);
    for (n = 0; n < N - 1; n++) {
        v[n] = 1500000;
        hist_record(&h, v[n]);
    }
    v[n++] = 59000000000ull;
    hist_record(&h, v[n - 1]);
    check_all(&h, v, n);
    CHECK(hist_percentile(&h, 99.99) < 1515000); /* rank 10006 of 10007 is still 1.5 ms */
    /* Bimodal: half at 10 us, half at 10 s: p50 must be the low mode, p51 the high one. */
    hist_init(&h);
    for (n = 0; n < 10000; n++) {
        v[n] = n % 2 ? 10000000000ull : 10000;
        hist_record(&h, v[n]);
    }
    check_all(&h, v, n);
    CHECK(hist_percentile(&h, 50) < 20000);
    CHECK(hist_percentile(&h, 51) > 9000000000ull);
    /* Small exact values: below 256 ns every value has its own bucket. */
    hist_init(&h);
    for (n = 0; n < 256; n++) {
        v[n] = n;
        hist_record(&h, n);
    }
    check_all(&h, v, n);
    CHECK_EQ(hist_percentile(&h, 50), 127);
}

static void test_merge(void)
{
    enum { N = 100000, T = 4 };
    uint64_t *v = malloc(N * sizeof(*v));
    static struct hist parts[T], all, merged;
    for (int t = 0; t < T; t++)
        hist_init(&parts[t]);
    hist_init(&all);
    hist_init(&merged);
    for (size_t i = 0; i < N; i++) {
        /* Each "thread" sees a different distribution: merging must not average them. */
        int t = (int)(i % T);
        v[i] = (uint64_t)(t + 1) * 1000 * (1 + next() % 100000);
        hist_record(&parts[t], v[i]);
        hist_record(&all, v[i]);
    }
    for (int t = 0; t < T; t++)
        hist_merge(&merged, &parts[t]);
    check_all(&merged, v, N);
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
        CHECK_EQ(hist_percentile(&merged, ps[i]), hist_percentile(&all, ps[i]));
    CHECK(fabs(hist_mean(&merged) - hist_mean(&all)) < 1e-6 * hist_mean(&all));
    free(v);
}

/* Gates use the bucket's upper edge: never below the true percentile, at most one bucket
 * (0.78 %) above it; the midpoint can be 0.39 % below it, which would let a limit pass. */
static void test_upper_edge_for_gates(void)
{
    struct hist h;
    hist_init(&h);
    for (uint64_t v = 1000000; v < 1000000 + 100 * 4099; v += 4099)
        hist_record(&h, v);
    uint64_t truth = 1000000 + 98 * 4099; /* nearest rank 99 of 100 */
    uint64_t up = hist_percentile_upper(&h, 99), mid = hist_percentile(&h, 99);
    CHECK(up >= truth);
    CHECK((double)up <= (double)truth * 1.0079);
    CHECK(mid <= up);
    hist_init(&h);
    CHECK_EQ(hist_percentile_upper(&h, 99), 0);
}

static void test_index_ranges(void)
{
    /* Every bucket's range maps back to it, ranges tile the axis, widths stay under 1/128. */
    uint64_t prev_hi = 0;
    bool ok = true;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        uint64_t lo, hi;
        hist_bucket_range(i, &lo, &hi);
        if (hist_index(lo) != i || hist_index(hi) != i || (i && lo != prev_hi + 1))
            ok = false;
        if (lo >= 256 && (double)(hi - lo + 1) / (double)lo > 1.0 / 128 + 1e-12)
            ok = false;
        prev_hi = hi;
    }
    CHECK(ok);
    CHECK(prev_hi >= 60000000000ull);
    /* Clamping: values past the top are counted, and recorded as the top. */
    static struct hist h;
    hist_init(&h);
    hist_record(&h, UINT64_MAX);
    CHECK_EQ(h.clamped, 1);
    CHECK_EQ(h.max, HIST_MAX_NS);
    CHECK_EQ(hist_percentile(&h, 50), HIST_MAX_NS);
    hist_init(&h);
    CHECK_EQ(hist_percentile(&h, 99), 0);
}

int main(void)
{
    RUN(test_random_ranges);
    RUN(test_adversarial);
    RUN(test_merge);
    RUN(test_index_ranges);
    RUN(test_upper_edge_for_gates);
    return unit_report("hist");
}
