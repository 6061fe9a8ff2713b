/* utf8_test.c - the UTF-8 validator against RFC 3629, Markus Kuhn's stress cases, and an
 * independent decoder written the slow, obvious way, compared exhaustively over short inputs. */
#include <stdint.h>
#include <stdlib.h>

#include "unit.h"
#include "proto/utf8.h"

/* Feeds a string literal in one call; returns the result and the bad offset (or -1). */
static enum utf8_result feed_str(const char *s, size_t n, long *bad_out)
{
    struct utf8_state st;
    size_t bad = (size_t)-1;
    utf8_init(&st);
    enum utf8_result r = utf8_feed(&st, (const uint8_t *)s, n, &bad);
    *bad_out = r == UTF8_INVALID ? (long)bad : -1;
    return r;
}

#define FEED(lit, want, want_bad)                                                                  \
    do {                                                                                           \
        long bad_;                                                                                 \
        CHECK_EQ(feed_str((lit), sizeof(lit) - 1, &bad_), (want));                                 \
        CHECK_EQ(bad_, (want_bad));                                                                \
    } while (0)

/* The reference: decodes one character at a time by the book (RFC 3629 §3/§4) and returns the
 * offset of the first byte that cannot be part of a valid sequence; -1 valid, -2 truncated. */
static long ref_check(const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = b[i];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return (long)i;
        }
        /* Lead bytes that can never start a valid sequence fail on themselves. */
        if (c == 0xC0 || c == 0xC1 || c >= 0xF5)
            return (long)i;
        for (size_t k = 1; k <= need; k++) {
            if (i + k >= n)
                return -2;
            if ((b[i + k] & 0xC0) != 0x80)
                return (long)(i + k);
            cp = (cp << 6) | (b[i + k] & 0x3F);
            /* The second byte alone decides overlong / surrogate / range errors. */
            if (k == 1) {
                uint32_t lo = cp << (6 * (need - 1)), hi = lo | ((1u << (6 * (need - 1))) - 1);
                if (hi < min || (lo >= 0xD800 && hi <= 0xDFFF) || lo > 0x10FFFF)
                    return (long)(i + k);
            }
        }
        i += need + 1;
    }
    return -1;
}

static void check_against_ref(const uint8_t *b, size_t n)
{
    struct utf8_state st;
    size_t bad = 0;
    utf8_init(&st);
    enum utf8_result r = utf8_feed(&st, b, n, &bad);
    long want = ref_check(b, n);
    long got = r == UTF8_OK ? -1 : r == UTF8_PARTIAL ? -2 : (long)bad;
    if (got != want) {
        CHECK_EQ(got, want);
        fprintf(stderr, "  input:");
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, " %02X", b[i]);
        fprintf(stderr, "\n");
    }
}

static void test_boundaries_valid(void)
{
    FEED("", UTF8_OK, -1);
    FEED("\x00", UTF8_OK, -1);
    FEED("\x7F", UTF8_OK, -1);             /* U+007F */
    FEED("\xC2\x80", UTF8_OK, -1);         /* U+0080 */
    FEED("\xDF\xBF", UTF8_OK, -1);         /* U+07FF */
    FEED("\xE0\xA0\x80", UTF8_OK, -1);     /* U+0800 */
    FEED("\xED\x9F\xBF", UTF8_OK, -1);     /* U+D7FF, last before the surrogates */
    FEED("\xEE\x80\x80", UTF8_OK, -1);     /* U+E000, first after them */
    FEED("\xEF\xBF\xBD", UTF8_OK, -1);     /* U+FFFD */
    FEED("\xEF\xBF\xBE", UTF8_OK, -1);     /* U+FFFE: a noncharacter, but valid UTF-8 */
    FEED("\xEF\xBF\xBF", UTF8_OK, -1);     /* U+FFFF */
    FEED("\xF0\x90\x80\x80", UTF8_OK, -1); /* U+10000 */
    FEED("\xF3\xBF\xBF\xBF", UTF8_OK, -1); /* U+FFFFF */
    FEED("\xF4\x80\x80\x80", UTF8_OK, -1); /* U+100000 */
    FEED("\xF4\x8F\xBF\xBF", UTF8_OK, -1); /* U+10FFFF */
    FEED("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5", UTF8_OK, -1); /* "kosme" in Greek */
    FEED("Hello-\xC2\xB5@\xC3\x9F\xC3\xB6\xC3\xA4\xC3\xBC\xC3\xA0\xC3\xA1-UTF-8!!", UTF8_OK, -1);
    CHECK(utf8_valid((const uint8_t *)"\xF0\x9F\x98\x80 ok", 7));
}

static void test_invalid_classes(void)
{
    /* Overlong 2-byte leads can never be valid: fail on the lead itself. */
    FEED("\xC0\x80", UTF8_INVALID, 0);
    FEED("\xC0\xAF", UTF8_INVALID, 0);
    FEED("\xC1\xBF", UTF8_INVALID, 0);
    /* Overlong 3-byte (E0 80..9F) and 4-byte (F0 80..8F): fail on the second byte. */
    FEED("\xE0\x80\xAF", UTF8_INVALID, 1);
    FEED("\xE0\x9F\xBF", UTF8_INVALID, 1);
    FEED("\xF0\x80\x80\xAF", UTF8_INVALID, 1);
    FEED("\xF0\x8F\xBF\xBF", UTF8_INVALID, 1);
    /* Surrogates, single and paired. */
    FEED("\xED\xA0\x80", UTF8_INVALID, 1);
    FEED("\xED\xAD\xBF", UTF8_INVALID, 1);
    FEED("\xED\xBF\xBF", UTF8_INVALID, 1);
    FEED("\xED\xA0\x80\xED\xB0\x80", UTF8_INVALID, 1);
    /* Above U+10FFFF. */
    FEED("\xF4\x90\x80\x80", UTF8_INVALID, 1);
    FEED("\xF4\xBF\xBF\xBF", UTF8_INVALID, 1);
    FEED("\xF5\x80\x80\x80", UTF8_INVALID, 0);
    FEED("\xF7\xBF\xBF\xBF", UTF8_INVALID, 0);
    FEED("\xF8\x88\x80\x80\x80", UTF8_INVALID, 0); /* 5-byte form */
    FEED("\xFC\x84\x80\x80\x80\x80", UTF8_INVALID, 0);
    FEED("\xFE", UTF8_INVALID, 0);
    FEED("\xFF", UTF8_INVALID, 0);
    FEED("ab\xFE\xFE\xFF\xFF", UTF8_INVALID, 2);
    /* Stray continuation bytes. */
    FEED("\x80", UTF8_INVALID, 0);
    FEED("\xBF", UTF8_INVALID, 0);
    FEED("a\x80\xBF", UTF8_INVALID, 1);
    FEED("\xC2\x80\x80", UTF8_INVALID, 2); /* one continuation too many */
    /* Truncated: partial at the end, invalid when something else follows. */
    FEED("\xC2", UTF8_PARTIAL, -1);
    FEED("\xE0\xA0", UTF8_PARTIAL, -1);
    FEED("\xF0\x90\x80", UTF8_PARTIAL, -1);
    FEED("\xF4\x8F\xBF", UTF8_PARTIAL, -1);
    FEED("\xC2 ", UTF8_INVALID, 1);
    FEED("\xE0\xA0 ", UTF8_INVALID, 2);
    FEED("\xF0\x90\x80 ", UTF8_INVALID, 3);
    FEED("\xE2\x82\xC2\xA2", UTF8_INVALID, 2); /* a new lead where a continuation belongs */
    /* Kuhn 3.2: lonely start characters each followed by a space. */
    FEED("\xC2 \xC3 ", UTF8_INVALID, 1);
    FEED("\xE1 \xE2 ", UTF8_INVALID, 1);
    FEED("\xF1 \xF2 ", UTF8_INVALID, 1);
    /* Kuhn 3.4: all sequences with their last byte missing, concatenated. */
    FEED("\xC0\xE0\x80\xF0\x80\x80\xDF\xEF\xBF\xF7\xBF\xBF", UTF8_INVALID, 0);
    FEED("\xDF\xEF\xBF\xF4\x8F\xBF", UTF8_INVALID, 1);
    /* A valid prefix of the Autobahn 6.x kind: the error is at the byte, not the start. */
    FEED("\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80"
         "edited",
         UTF8_INVALID, 12);
    CHECK(!utf8_valid((const uint8_t *)"\xC2", 1));
    CHECK(!utf8_valid((const uint8_t *)"\xC0\x80", 2));
}

/* The ASCII word path must not skip an error hidden in a word, or ASCII inside a sequence. */
static void test_ascii_fast_path(void)
{
    uint8_t buf[200];
    for (size_t pos = 0; pos < 150; pos++) {
        memset(buf, 'a', sizeof(buf));
        buf[pos] = 0x80;
        struct utf8_state st;
        size_t bad = 999;
        utf8_init(&st);
        CHECK_EQ(utf8_feed(&st, buf, sizeof(buf), &bad), UTF8_INVALID);
        CHECK_EQ(bad, pos);
        /* A valid 3-byte character at any alignment inside a long ASCII run. */
        memset(buf, 'b', sizeof(buf));
        memcpy(buf + pos, "\xE2\x82\xAC", 3);
        CHECK(utf8_valid(buf, sizeof(buf)));
        /* A truncated character followed by ASCII: fails at the first ASCII byte. */
        memset(buf, 'c', sizeof(buf));
        memcpy(buf + pos, "\xE2\x82", 2);
        utf8_init(&st);
        CHECK_EQ(utf8_feed(&st, buf, sizeof(buf), &bad), UTF8_INVALID);
        CHECK_EQ(bad, pos + 2);
    }
    /* Partial sequence left by an earlier feed, then a long ASCII buffer. */
    struct utf8_state st;
    size_t bad = 999;
    utf8_init(&st);
    CHECK_EQ(utf8_feed(&st, (const uint8_t *)"\xF0\x9F", 2, NULL), UTF8_PARTIAL);
    memset(buf, 'd', sizeof(buf));
    CHECK_EQ(utf8_feed(&st, buf, sizeof(buf), &bad), UTF8_INVALID);
    CHECK_EQ(bad, 0);
}

/* Splitting the input anywhere, into two feeds or byte by byte, gives the same verdict, with
 * the bad offset relative to the buffer that held the bad byte. */
static void test_split_feeds(void)
{
    static const char valid[] = "a\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF\xF0\x90\x80\x80"
                                "\xF4\x8F\xBF\xBFz0123456789\xE2\x82\xAC";
    size_t n = sizeof(valid) - 1;
    for (size_t k = 0; k <= n; k++) {
        struct utf8_state st;
        utf8_init(&st);
        enum utf8_result r1 = utf8_feed(&st, (const uint8_t *)valid, k, NULL);
        enum utf8_result r2 = utf8_feed(&st, (const uint8_t *)valid + k, n - k, NULL);
        CHECK(r1 == UTF8_OK || r1 == UTF8_PARTIAL);
        /* The first part is partial exactly when k falls inside a character. */
        CHECK_EQ(r1 == UTF8_PARTIAL, k < n && (valid[k] & 0xC0) == 0x80);
        CHECK_EQ(r2, UTF8_OK);
    }
    struct utf8_state st;
    utf8_init(&st);
    for (size_t i = 0; i < n; i++)
        CHECK(utf8_feed(&st, (const uint8_t *)valid + i, 1, NULL) != UTF8_INVALID);
    CHECK_EQ(st.state, 0);

    static const char invalid[] = "ok \xF0\x9F\x98\x80 \xED\xA0\x80 rest";
    size_t m = sizeof(invalid) - 1, badpos = 9; /* the A0 after ED */
    for (size_t k = 0; k <= m; k++) {
        size_t bad = 999;
        utf8_init(&st);
        enum utf8_result r1 = utf8_feed(&st, (const uint8_t *)invalid, k, &bad);
        if (k > badpos) {
            CHECK_EQ(r1, UTF8_INVALID);
            CHECK_EQ(bad, badpos);
            continue;
        }
        CHECK(r1 != UTF8_INVALID);
        CHECK_EQ(utf8_feed(&st, (const uint8_t *)invalid + k, m - k, &bad), UTF8_INVALID);
        CHECK_EQ(bad, badpos - k);
    }
}

static void test_invalid_is_sticky(void)
{
    struct utf8_state st;
    size_t bad = 999;
    utf8_init(&st);
    CHECK_EQ(utf8_feed(&st, (const uint8_t *)"x\xFFy", 3, &bad), UTF8_INVALID);
    CHECK_EQ(bad, 1);
    CHECK(st.state != 0);
    bad = 999;
    CHECK_EQ(utf8_feed(&st, (const uint8_t *)"abc", 3, &bad), UTF8_INVALID);
    CHECK_EQ(bad, 0);
    CHECK_EQ(utf8_feed(&st, NULL, 0, NULL), UTF8_INVALID);
    /* Empty input leaves a partial state partial. */
    utf8_init(&st);
    CHECK_EQ(utf8_feed(&st, (const uint8_t *)"\xE2", 1, NULL), UTF8_PARTIAL);
    CHECK_EQ(utf8_feed(&st, NULL, 0, NULL), UTF8_PARTIAL);
    CHECK_EQ(utf8_feed(&st, (const uint8_t *)"\x82\xAC", 2, NULL), UTF8_OK);
}

/* Every 1- and 2-byte input, every 3-byte input, and a large slice of 4-byte inputs, against the
 * reference decoder: no rule can be broken without this noticing. */
static void test_exhaustive_vs_reference(void)
{
    int before = unit_failed;
    uint8_t b[4];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        check_against_ref(b, 1);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            check_against_ref(b, 2);
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (uint8_t)z;
                check_against_ref(b, 3);
                if (unit_failed - before > 10)
                    return;
            }
        }
    }
    static const uint8_t tails[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0,
                                    0xBF, 0xC0, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0xFF};
    for (unsigned x = 0xC0; x < 256; x++)
        for (unsigned y = 0; y < 256; y++)
            for (size_t z = 0; z < sizeof(tails); z++)
                for (size_t w = 0; w < sizeof(tails); w++) {
                    b[0] = (uint8_t)x, b[1] = (uint8_t)y, b[2] = tails[z], b[3] = tails[w];
                    check_against_ref(b, 4);
                    if (unit_failed - before > 10)
                        return;
                }
    unit_checks++;
}

/* Random mixed text with an error planted at a random spot, fed in random pieces. */
static void test_random_pieces(void)
{
    static const char *chars[] = {"a",
                                  "~",
                                  "\xC2\xA9",
                                  "\xD0\xAF",
                                  "\xE2\x82\xAC",
                                  "\xE6\x97\xA5",
                                  "\xF0\x9F\x98\x80",
                                  "\xF4\x8F\xBF\xBF"};
    static const char *bads[] = {"\x80", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\xFF"};
    srand(12345);
    uint8_t buf[600];
    for (int round = 0; round < 2000; round++) {
        size_t n = 0, bad_at = (size_t)-1;
        int plant = rand() % 3 == 0;
        while (n < 500) {
            if (plant && bad_at == (size_t)-1 && rand() % 50 == 0) {
                const char *bs = bads[rand() % 5];
                bad_at = n + (bs[0] == '\xC0' || bs[0] == '\x80' || bs[0] == '\xFF' ? 0 : 1);
                memcpy(buf + n, bs, strlen(bs));
                n += strlen(bs);
                continue;
            }
            const char *c = chars[rand() % 8];
            memcpy(buf + n, c, strlen(c));
            n += strlen(c);
        }
        struct utf8_state st;
        utf8_init(&st);
        size_t off = 0, bad = 0;
        enum utf8_result r = UTF8_OK;
        while (off < n && r != UTF8_INVALID) {
            size_t piece = 1 + (size_t)rand() % 40;
            if (piece > n - off)
                piece = n - off;
            r = utf8_feed(&st, buf + off, piece, &bad);
            if (r != UTF8_INVALID)
                off += piece;
        }
        if (bad_at == (size_t)-1) {
            CHECK_EQ(r, UTF8_OK);
        } else {
            CHECK_EQ(r, UTF8_INVALID);
            CHECK_EQ(off + bad, bad_at);
        }
    }
}

int main(void)
{
    RUN(test_boundaries_valid);
    RUN(test_invalid_classes);
    RUN(test_ascii_fast_path);
    RUN(test_split_feeds);
    RUN(test_invalid_is_sticky);
    RUN(test_exhaustive_vs_reference);
    RUN(test_random_pieces);
    return unit_report("utf8");
}
