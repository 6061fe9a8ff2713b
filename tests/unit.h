/* unit.h - the smallest useful unit-test harness: CHECK macros that count and report, one
 * executable per module, exit status 1 when anything failed (meson test reads it). */
#ifndef RINGCAST_TESTS_UNIT_H
#define RINGCAST_TESTS_UNIT_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

__attribute__((unused)) static int unit_checks;
__attribute__((unused)) static int unit_failed;
__attribute__((unused)) static const char *unit_current = "";

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        unit_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            unit_failed++;                                                                         \
            fprintf(stderr, "%s:%d: [%s] CHECK failed: %s\n", __FILE__, __LINE__, unit_current,    \
                    #cond);                                                                        \
        }                                                                                          \
    } while (0)

#define CHECK_EQ(a, b)                                                                             \
    do {                                                                                           \
        long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);                              \
        unit_checks++;                                                                             \
        if (unit_a_ != unit_b_) {                                                                  \
            unit_failed++;                                                                         \
            fprintf(stderr, "%s:%d: [%s] CHECK_EQ failed: %s == %s (%lld != %lld)\n", __FILE__,    \
                    __LINE__, unit_current, #a, #b, unit_a_, unit_b_);                             \
        }                                                                                          \
    } while (0)

/* Compares n bytes at a with the NUL-terminated string b, which must have length n. */
#define CHECK_MEM(a, n, b)                                                                         \
    do {                                                                                           \
        size_t unit_n_ = (size_t)(n);                                                              \
        unit_checks++;                                                                             \
        if (unit_n_ != strlen(b) || memcmp((a), (b), unit_n_) != 0) {                              \
            unit_failed++;                                                                         \
            fprintf(stderr, "%s:%d: [%s] CHECK_MEM failed: got \"%.*s\", want \"%s\"\n", __FILE__, \
                    __LINE__, unit_current, (int)unit_n_, (const char *)(a), (b));                 \
        }                                                                                          \
    } while (0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        unit_current = #fn;                                                                        \
        fn();                                                                                      \
    } while (0)

/* Prints the summary and returns the process exit status. */
static inline int unit_report(const char *suite)
{
    printf("%s: %d checks, %d failed\n", suite, unit_checks, unit_failed);
    return unit_failed ? 1 : 0;
}

#endif
