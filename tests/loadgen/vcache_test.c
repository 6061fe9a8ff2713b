/* vcache_test.c - the verified-message cache: a hit only for byte-identical messages, the
 * prediction path and the hash path, replacement within a set, and the size bound. */
#include <stdlib.h>

#include "unit.h"
#include "vcache.h"

static size_t msg(char *out, uint64_t q, uint64_t t)
{
    return (size_t)snprintf(out, 512,
                            "{\"type\":\"event\",\"event\":\"bench\",\"room\":\"r0\",\"data\":"
                            "{\"q\":%llu,\"t\":%llu,\"x\":\"padpadpadpadpadpad\"},\"seq\":%llu}",
                            (unsigned long long)q, (unsigned long long)t, (unsigned long long)q);
}

static struct lg_verified ver(uint64_t q)
{
    struct lg_verified v = {.pl = {.q = q, .p = 0, .k = q, .t = 1000 + q, .i = 1000 + q},
                            .seq = q,
                            .has_seq = true,
                            .room = 7};
    return v;
}

static void test_exact_bytes_only(void)
{
    struct lg_vcache vc;
    CHECK_EQ(lg_vcache_init(&vc), 0);
    char a[512];
    size_t n = msg(a, 1, 123456789);
    uint32_t first = LG_VCACHE_NONE, other = LG_VCACHE_NONE;
    CHECK(lg_vcache_find(&vc, (uint8_t *)a, n, &other) == NULL);
    struct lg_verified v = ver(1);
    lg_vcache_put(&vc, (uint8_t *)a, n, &v, &first);
    CHECK(first != LG_VCACHE_NONE);

    const struct lg_verified *got = lg_vcache_find(&vc, (uint8_t *)a, n, &other);
    CHECK(got != NULL);
    if (got) {
        CHECK_EQ(got->pl.q, 1);
        CHECK_EQ(got->pl.t, 1001);
        CHECK_EQ(got->room, 7);
        CHECK(got->has_seq);
    }
    CHECK_EQ(other, first);

    /* Any one byte changed anywhere, or one byte more or less: never a hit. */
    for (size_t i = 0; i < n; i++) {
        char b[512];
        memcpy(b, a, n);
        b[i] ^= 0x01;
        uint32_t last = LG_VCACHE_NONE;
        CHECK(lg_vcache_find(&vc, (uint8_t *)b, n, &last) == NULL);
        CHECK_EQ(last, LG_VCACHE_NONE);
    }
    uint32_t last = LG_VCACHE_NONE;
    CHECK(lg_vcache_find(&vc, (uint8_t *)a, n - 1, &last) == NULL);
    char longer[513];
    memcpy(longer, a, n);
    longer[n] = ' ';
    CHECK(lg_vcache_find(&vc, (uint8_t *)longer, n + 1, &last) == NULL);
    CHECK(lg_vcache_find(&vc, (uint8_t *)a, 0, &last) == NULL);
    lg_vcache_free(&vc);
}

/* One recipient verifies a sequence; the next finds each message through the previous one's
 * next, without the hash; a recipient that skips one falls back to the hash and goes on. */
static void test_prediction(void)
{
    struct lg_vcache vc;
    CHECK_EQ(lg_vcache_init(&vc), 0);
    char m[64][512];
    size_t len[64];
    uint32_t first = LG_VCACHE_NONE;
    for (int i = 0; i < 64; i++) {
        len[i] = msg(m[i], (uint64_t)i + 1, 5000000 + (uint64_t)i * 977);
        struct lg_verified v = ver((uint64_t)i + 1);
        lg_vcache_put(&vc, (uint8_t *)m[i], len[i], &v, &first);
    }
    uint32_t second = LG_VCACHE_NONE;
    for (int i = 0; i < 64; i++) {
        const struct lg_verified *v = lg_vcache_find(&vc, (uint8_t *)m[i], len[i], &second);
        CHECK(v != NULL);
        if (v)
            CHECK_EQ(v->pl.q, (uint64_t)i + 1);
    }
    CHECK_EQ(vc.hits, 64);
    CHECK_EQ(vc.predicted, 63); /* all but the first, which has no predecessor */
    uint32_t third = LG_VCACHE_NONE;
    for (int i = 0; i < 64; i += 2)
        CHECK(lg_vcache_find(&vc, (uint8_t *)m[i], len[i], &third) != NULL);
    CHECK_EQ(vc.hits, 96);
    CHECK_EQ(vc.misses, 0);
    lg_vcache_free(&vc);
}

/* Far more messages than slots: the cache stays bounded and whatever it answers is right. */
static void test_replacement(void)
{
    struct lg_vcache vc;
    CHECK_EQ(lg_vcache_init(&vc), 0);
    enum { N = LG_VCACHE_SETS * LG_VCACHE_WAYS * 3 };
    uint32_t last = LG_VCACHE_NONE;
    char a[512];
    for (uint64_t q = 1; q <= N; q++) {
        size_t n = msg(a, q, q * 31337);
        struct lg_verified v = ver(q);
        lg_vcache_put(&vc, (uint8_t *)a, n, &v, &last);
    }
    int found = 0, wrong = 0;
    for (uint64_t q = 1; q <= N; q++) {
        size_t n = msg(a, q, q * 31337);
        uint32_t l = LG_VCACHE_NONE;
        const struct lg_verified *v = lg_vcache_find(&vc, (uint8_t *)a, n, &l);
        if (v) {
            found++;
            wrong += v->pl.q != q;
        }
    }
    CHECK_EQ(wrong, 0);
    CHECK(found <= LG_VCACHE_SETS * LG_VCACHE_WAYS);
    /* The most recent ones are all still there. */
    for (uint64_t q = N - 64; q <= N; q++) {
        size_t n = msg(a, q, q * 31337);
        uint32_t l = LG_VCACHE_NONE;
        CHECK(lg_vcache_find(&vc, (uint8_t *)a, n, &l) != NULL);
    }
    lg_vcache_free(&vc);
}

static void test_size_bound(void)
{
    struct lg_vcache vc;
    CHECK_EQ(lg_vcache_init(&vc), 0);
    size_t n = LG_VCACHE_MAX_MSG + 1;
    uint8_t *big = malloc(n);
    CHECK(big != NULL);
    if (!big)
        return;
    memset(big, 'a', n);
    struct lg_verified v = ver(1);
    uint32_t last = LG_VCACHE_NONE;
    lg_vcache_put(&vc, big, n, &v, &last);
    CHECK_EQ(last, LG_VCACHE_NONE);
    CHECK(lg_vcache_find(&vc, big, n, &last) == NULL);
    lg_vcache_put(&vc, big, n - 1, &v, &last); /* exactly the bound is kept */
    uint32_t l = LG_VCACHE_NONE;
    CHECK(lg_vcache_find(&vc, big, n - 1, &l) != NULL);
    free(big);
    lg_vcache_free(&vc);
}

int main(void)
{
    RUN(test_exact_bytes_only);
    RUN(test_prediction);
    RUN(test_replacement);
    RUN(test_size_bound);
    return unit_report("vcache");
}
