/* json_test.c - json_tokenize's strictness and token layout, the token helpers, unescaping,
 * timestamps and the bounded writer. */
#include "unit.h"
#include "proto/json.h"

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define NTOK 64

static int tok(const char *s)
{
    jsmntok_t t[NTOK];
    return json_tokenize(s, strlen(s), t, NTOK);
}

/* Tokenizes s with jsmn itself (strict, parent links, as the whole project is built). */
static int jsmn_tok(const char *s, size_t len, jsmntok_t *t, unsigned n)
{
    jsmn_parser p;
    jsmn_init(&p);
    return jsmn_parse(&p, s, len, t, n);
}

/* ------------------------------------------------------------------------------------------ */

static void test_valid_documents(void)
{
    static const char *ok[] = {
        "{}",
        "[]",
        "{\"a\":1}",
        "[1,2,3]",
        "{\"a\":{\"b\":{\"c\":[[],{}]}}}",
        "[true,false,null]",
        "{\"k\":\"v\",\"n\":-0.5e+10,\"t\":true,\"f\":false,\"z\":null,\"a\":[\"x\",{}]}",
        " \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" :{ } }\n\t ",
        "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\uD83D\\uDE00\"]",
        "[\"raw utf-8: \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 and DEL \x7f\"]",
        "[[[[[[[[[[1]]]]]]]]]]",
        "{\"\":\"\"}",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        jsmntok_t a[NTOK], b[NTOK];
        size_t len = strlen(ok[i]);
        int n = json_tokenize(ok[i], len, a, NTOK);
        CHECK(n > 0);
        if (n <= 0) {
            fprintf(stderr, "  rejected: %s (%d)\n", ok[i], n);
            continue;
        }
        /* Same token layout as jsmn on valid input, so code written against jsmn works. */
        int m = jsmn_tok(ok[i], len, b, NTOK);
        CHECK_EQ(m, n);
        for (int k = 0; k < n && k < m; k++) {
            CHECK_EQ(a[k].type, b[k].type);
            CHECK_EQ(a[k].start, b[k].start);
            CHECK_EQ(a[k].end, b[k].end);
            CHECK_EQ(a[k].size, b[k].size);
            CHECK_EQ(a[k].parent, b[k].parent);
        }
    }
}

static void test_token_layout(void)
{
    const char *s = "{\"a\":[1,\"x\"],\"b\":{}}";
    jsmntok_t t[NTOK];
    CHECK_EQ(json_tokenize(s, strlen(s), t, NTOK), 7);
    CHECK_EQ(t[0].type, JSMN_OBJECT);
    CHECK_EQ(t[0].start, 0);
    CHECK_EQ(t[0].end, (int)strlen(s));
    CHECK_EQ(t[0].size, 2);
    CHECK_EQ(t[0].parent, -1);
    CHECK_EQ(t[1].type, JSMN_STRING); /* key "a": contents only, owes one value */
    CHECK_EQ(t[1].start, 2);
    CHECK_EQ(t[1].end, 3);
    CHECK_EQ(t[1].size, 1);
    CHECK_EQ(t[1].parent, 0);
    CHECK_EQ(t[2].type, JSMN_ARRAY);
    CHECK_EQ(t[2].parent, 1);
    CHECK_EQ(t[2].size, 2);
    CHECK_EQ(t[3].type, JSMN_PRIMITIVE);
    CHECK_EQ(t[3].parent, 2);
    CHECK_EQ(t[4].type, JSMN_STRING);
    struct span x = json_tok_span(s, &t[4]);
    CHECK_MEM(x.base, x.len, "x");
    CHECK_EQ(t[6].type, JSMN_OBJECT);
    CHECK_EQ(t[6].parent, 5);
    CHECK_EQ(t[6].size, 0);
}

static void test_top_level_scalars(void)
{
    /* jsmn's strict mode calls a bare top-level number incomplete; a payload can be one. */
    jsmntok_t t[4];
    CHECK_EQ(json_tokenize("42", 2, t, 4), 1);
    CHECK_EQ(t[0].type, JSMN_PRIMITIVE);
    CHECK_EQ(t[0].start, 0);
    CHECK_EQ(t[0].end, 2);
    CHECK_EQ(t[0].parent, -1);
    CHECK_EQ(json_tokenize(" -1.5e3 ", 8, t, 4), 1);
    CHECK_EQ(t[0].start, 1);
    CHECK_EQ(t[0].end, 7);
    CHECK_EQ(tok("\"s\""), 1);
    CHECK_EQ(tok("true"), 1);
    CHECK_EQ(tok("false"), 1);
    CHECK_EQ(tok("null"), 1);
}

static void test_not_json(void)
{
    /* Each of these is accepted, at least in part, by jsmn in strict mode. */
    static const char *bad[] = {
        "[1,]",
        "{\"a\":1,}",
        "{,}",
        "{\"a\" 1}",
        "[1 2]",
        "[tx]",
        "[01]",
        "[1.]",
        "[-]",
        "[.5]",
        "[+1]",
        "[1e+]",
        "[1.e5]",
        "[--1]",
        "[1ee5]",
        "[0x1]",
        "[-01]",
        "[00]",
        "{\"a\"}",
        "{\"a\":}",
        "{:1}",
        "[}",
        "{]",
        "{\"a\"::1}",
        "{1:2}",
        "[\"a\":1]",
        "'a'",
        "[NaN]",
        "[Infinity]",
        "[True]",
        "[nul]",
        "[nulll]",
        "[,1]",
        "]",
        "}",
        ",",
        ":",
        "{\"a\":1 \"b\":2}",
        "[\"\\x\"]",
        "[\"\\u12G4\"]",
        "[\"\\U0041\"]",
        "[\"\\'\"]",
        "x",
        "[1,,2]",
        "{\"a\":1,,\"b\":2}",
        "{\"a\",1}",
        "[\v1]",
        "[\f1]",
        "[1}",
        "{\"a\":1]",
        "[truex]",
        "[\"a\"\"b\"]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = tok(bad[i]);
        CHECK_EQ(r, -JSON_ERR_SYNTAX);
        if (r != -JSON_ERR_SYNTAX)
            fprintf(stderr, "  input: %s\n", bad[i]);
    }
}

static void test_control_chars_in_strings(void)
{
    for (int c = 0; c < 0x20; c++) {
        char s[8] = {'[', '"', 'a', (char)c, 'b', '"', ']'};
        jsmntok_t t[4];
        CHECK_EQ(json_tokenize(s, 7, t, 4), -JSON_ERR_SYNTAX);
    }
    /* Not controls as far as JSON is concerned. */
    CHECK_EQ(tok("[\"\x7f\"]"), 2);
    CHECK_EQ(tok("[\"\x80\xff\"]"), 2);
}

static void test_string_bytes_at_every_offset(void)
{
    /* The string scan goes a word at a time: put every byte value at every offset of a long
     * string, across word boundaries, and check the scan stops exactly where it must. */
    char s[64];
    jsmntok_t t[4];
    for (int b = 0; b < 256; b++) {
        for (int off = 0; off < 40; off++) {
            memset(s, 'x', sizeof(s));
            s[0] = '[';
            s[1] = '"';
            s[2 + off] = (char)b;
            s[42] = '"';
            s[43] = ']';
            int r = json_tokenize(s, 44, t, 4);
            if (b == '\\' && off == 39) {
                CHECK_EQ(r, -JSON_ERR_TRUNCATED); /* \" escapes the closing quote */
            } else if (b < 0x20 || b == '\\') {
                CHECK_EQ(r, -JSON_ERR_SYNTAX); /* raw control, or the bad escape \x */
            } else if (b == '"') {
                CHECK_EQ(r, -JSON_ERR_SYNTAX); /* the string ends early: x follows */
            } else {
                CHECK_EQ(r, 2);
                CHECK_EQ(t[1].start, 2);
                CHECK_EQ(t[1].end, 42);
            }
            /* A valid escape at the same place is fine. */
            if (off < 39) {
                s[2 + off] = '\\';
                s[3 + off] = (char)b;
                r = json_tokenize(s, 44, t, 4);
                bool ok = strchr("\"\\/bfnrt", b) != NULL && b != 0;
                CHECK_EQ(r, ok ? 2 : -JSON_ERR_SYNTAX);
            }
        }
    }
    /* An unterminated long string is truncated wherever it stops. */
    memset(s, 'y', sizeof(s));
    s[0] = '"';
    for (size_t n = 1; n < sizeof(s); n++)
        CHECK_EQ(json_tokenize(s, n, t, 4), -JSON_ERR_TRUNCATED);
}

static void test_trailing(void)
{
    static const char *trail[] = {
        "{\"a\":1}{\"b\":2}", "1 2", "{} x", "[]]", "\"a\"x", "true false", "{}}", "[],",
    };
    for (size_t i = 0; i < sizeof(trail) / sizeof(trail[0]); i++)
        CHECK_EQ(tok(trail[i]), -JSON_ERR_TRAILING);
    /* jsmn stops at a NUL byte and reports success; the byte is not whitespace. */
    jsmntok_t t[4];
    CHECK_EQ(json_tokenize("{}\0", 3, t, 4), -JSON_ERR_TRAILING);
    CHECK_EQ(json_tokenize("[\"a\0b\"]", 7, t, 4), -JSON_ERR_SYNTAX);
    CHECK_EQ(json_tokenize("{} \n", 4, t, 4), 1);
}

static void test_truncated(void)
{
    const char *s = "{\"a\":[1,-2.5e+3,\"x\\u00e9\\n\",true,false,null,{\"b\":{}}],\"c\":\"d\"}";
    size_t len = strlen(s);
    jsmntok_t t[NTOK];
    CHECK(json_tokenize(s, len, t, NTOK) > 0);
    /* Every proper prefix of an object is truncated, never a syntax error or a crash; an exact
     * copy per cut lets ASan see any read past the end. */
    for (size_t cut = 0; cut < len; cut++) {
        char *p = malloc(cut ? cut : 1);
        memcpy(p, s, cut);
        int r = json_tokenize(p, cut, t, NTOK);
        CHECK_EQ(r, -JSON_ERR_TRUNCATED);
        if (r != -JSON_ERR_TRUNCATED)
            fprintf(stderr, "  cut at %zu: %d\n", cut, r);
        free(p);
    }
    static const char *part[] = {"",  "  ",   "-",     "1.",      "1e", "1e+",    "tru",    "f",
                                 "n", "\"ab", "\"a\\", "\"\\u00", "[",  "{\"a\"", "{\"a\":"};
    for (size_t i = 0; i < sizeof(part) / sizeof(part[0]); i++)
        CHECK_EQ(tok(part[i]), -JSON_ERR_TRUNCATED);
}

static void test_too_many(void)
{
    jsmntok_t t[4];
    CHECK_EQ(json_tokenize("[1,2,3]", 7, t, 3), -JSON_ERR_TOO_MANY);
    CHECK_EQ(json_tokenize("[1,2,3]", 7, t, 4), 4);
    CHECK_EQ(json_tokenize("{\"a\":1}", 7, t, 2), -JSON_ERR_TOO_MANY);
    CHECK_EQ(json_tokenize("{\"a\":1}", 7, t, 3), 3);
    CHECK_EQ(json_tokenize("1", 1, t, 0), -JSON_ERR_TOO_MANY);
}

static void test_numbers(void)
{
    static const char *ok[] = {
        "0",   "-0",   "1",    "-1",     "10",  "1.5", "-0.5",  "1e5",
        "1E5", "1e+5", "1e-5", "1.5e10", "0e0", "0.0", "1E-00", "123456789012345678901234567890"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int r = tok(ok[i]);
        CHECK_EQ(r, 1);
        if (r != 1)
            fprintf(stderr, "  input: %s\n", ok[i]);
    }
    /* At the top level a bad number is followed by junk (trailing) or is malformed itself. */
    CHECK_EQ(tok("01"), -JSON_ERR_TRAILING);
    CHECK_EQ(tok(".1"), -JSON_ERR_SYNTAX);
    CHECK_EQ(tok("+1"), -JSON_ERR_SYNTAX);
    CHECK_EQ(tok("-a"), -JSON_ERR_SYNTAX);
    CHECK_EQ(tok("1.a"), -JSON_ERR_SYNTAX);
    CHECK_EQ(tok("1e-a"), -JSON_ERR_SYNTAX);
}

/* ------------------------------------------------------------------------------------------ */

static void test_skip_and_get(void)
{
    const char *s = "{\"a\":{\"type\":1,\"x\":[1,[2,3]]},\"typ\":2,\"ty\\u0070e\":3,\"type\":4,"
                    "\"b\":[],\"type\":5}";
    jsmntok_t t[NTOK];
    int n = json_tokenize(s, strlen(s), t, NTOK);
    CHECK(n > 0);
    CHECK_EQ(json_skip(t, n, 0), n);
    /* A key owns its value (jsmn's layout: the value's parent is the key). */
    CHECK_EQ(json_skip(t, n, 1), 11);
    CHECK_EQ(json_skip(t, n, 2), 11); /* {"type":1,"x":[1,[2,3]]} is tokens 2..10 */
    CHECK_EQ(json_skip(t, n, 3), 5);
    CHECK_EQ(json_skip(t, n, 4), 5);
    CHECK_EQ(json_skip(t, n, 6), 11);
    CHECK_EQ(json_skip(t, n, 8), 11);
    CHECK_EQ(json_skip(t, n, n), n);

    /* Nested "type" is not the top-level one; "typ" and an escaped key do not match; the last
     * of the repeated keys wins. */
    int v = json_obj_get(s, t, n, 0, "type");
    CHECK(v > 0);
    struct span sv = json_tok_span(s, &t[v]);
    CHECK_MEM(sv.base, sv.len, "5");
    v = json_obj_get(s, t, n, 0, "typ");
    sv = json_tok_span(s, &t[v]);
    CHECK_MEM(sv.base, sv.len, "2");
    CHECK_EQ(json_obj_get(s, t, n, 0, "missing"), -1);
    CHECK_EQ(json_obj_get(s, t, n, 0, "x"), -1);
    CHECK_EQ(json_obj_get(s, t, n, 0, ""), -1);
    CHECK_EQ(t[json_obj_get(s, t, n, 0, "b")].type, JSMN_ARRAY);
    v = json_obj_get(s, t, n, 2, "x");
    CHECK_EQ(t[v].type, JSMN_ARRAY);
    v = json_obj_get(s, t, n, 2, "type");
    sv = json_tok_span(s, &t[v]);
    CHECK_MEM(sv.base, sv.len, "1");
    /* Not an object, or out of range. */
    CHECK_EQ(json_obj_get(s, t, n, 1, "a"), -1);
    CHECK_EQ(json_obj_get(s, t, n, n, "a"), -1);
    CHECK_EQ(json_obj_get(s, t, n, -1, "a"), -1);
}

static void test_tok_u64(void)
{
    const char *s = "[0,42,18446744073709551615,18446744073709551616,-1,1.5,1e3,\"5\",true,"
                    "99999999999999999999]";
    jsmntok_t t[NTOK];
    CHECK_EQ(json_tokenize(s, strlen(s), t, NTOK), 11);
    uint64_t v = 7;
    CHECK(json_tok_u64(s, &t[1], &v) && v == 0);
    CHECK(json_tok_u64(s, &t[2], &v) && v == 42);
    CHECK(json_tok_u64(s, &t[3], &v) && v == UINT64_MAX);
    v = 7;
    CHECK(!json_tok_u64(s, &t[4], &v));
    CHECK(!json_tok_u64(s, &t[5], &v));
    CHECK(!json_tok_u64(s, &t[6], &v));
    CHECK(!json_tok_u64(s, &t[7], &v));
    CHECK(!json_tok_u64(s, &t[8], &v));
    CHECK(!json_tok_u64(s, &t[9], &v));
    CHECK(!json_tok_u64(s, &t[10], &v));
    CHECK_EQ(v, 7); /* untouched on failure */
    jsmntok_t lz = {JSMN_PRIMITIVE, 0, 3, 0, -1};
    CHECK(!json_tok_u64("007", &lz, &v));
}

/* ------------------------------------------------------------------------------------------ */

static int unesc(const char *in, char *out, size_t cap)
{
    return json_unescape(in, strlen(in), out, cap);
}

static void test_unescape(void)
{
    char out[64];
    int n;
    n = unesc("plain", out, sizeof(out));
    CHECK_MEM(out, n, "plain");
    n = unesc("\\\"\\\\\\/\\b\\f\\n\\r\\t", out, sizeof(out));
    CHECK_MEM(out, n, "\"\\/\b\f\n\r\t");
    n = unesc("a\\u0041\\u00e9\\u00E9\\u20ac", out, sizeof(out));
    CHECK_MEM(out, n, "aA\xc3\xa9\xc3\xa9\xe2\x82\xac");
    n = unesc("\\ud83d\\ude00!", out, sizeof(out));
    CHECK_MEM(out, n, "\xf0\x9f\x98\x80!");
    n = unesc("\\uDBFF\\uDFFF", out, sizeof(out));
    CHECK_MEM(out, n, "\xf4\x8f\xbf\xbf");
    n = unesc("\\u07ff\\u0800\\uffff", out, sizeof(out));
    CHECK_MEM(out, n, "\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf");
    n = unesc("raw \xc3\xa9", out, sizeof(out));
    CHECK_MEM(out, n, "raw \xc3\xa9");
    /* U+0000 is produced; rejecting it is the caller's (channel_validate's) job. */
    n = unesc("a\\u0000b", out, sizeof(out));
    CHECK_EQ(n, 3);
    CHECK(memcmp(out, "a\0b", 3) == 0);

    CHECK_EQ(unesc("\\ud83d", out, sizeof(out)), -1);        /* lone high */
    CHECK_EQ(unesc("\\ud83dx", out, sizeof(out)), -1);       /* high, no escape after */
    CHECK_EQ(unesc("\\ud83d\\u0041", out, sizeof(out)), -1); /* high + not low */
    CHECK_EQ(unesc("\\ud83d\\ud83d", out, sizeof(out)), -1); /* high + high */
    CHECK_EQ(unesc("\\ud83d\\n", out, sizeof(out)), -1);
    CHECK_EQ(unesc("\\ude00", out, sizeof(out)), -1); /* lone low */
    CHECK_EQ(unesc("\\x", out, sizeof(out)), -1);
    CHECK_EQ(unesc("abc\\", out, sizeof(out)), -1);
    CHECK_EQ(unesc("\\u12", out, sizeof(out)), -1);
    CHECK_EQ(unesc("\\u12g4", out, sizeof(out)), -1);

    /* cap: exactly enough works, one less fails, and nothing is written past cap. */
    char small[8];
    memset(small, '#', sizeof(small));
    CHECK_EQ(json_unescape("abc\\u20ac", 9, small, 6), 6);
    CHECK_EQ(small[6], '#');
    CHECK_EQ(json_unescape("abc\\u20ac", 9, small, 5), -1);
    memset(small, '#', sizeof(small));
    CHECK_EQ(json_unescape("abcdef", 6, small, 5), -1);
    CHECK_EQ(small[5], '#');
    CHECK_EQ(json_unescape("", 0, small, 0), 0);
}

/* ------------------------------------------------------------------------------------------ */

static void test_timestamp(void)
{
    static const struct {
        int64_t ms;
        const char *want;
    } table[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {1, "1970-01-01T00:00:00.001Z"},
        {999, "1970-01-01T00:00:00.999Z"},
        {31535999999, "1970-12-31T23:59:59.999Z"},
        {68212800001, "1972-02-29T12:00:00.001Z"},
        {951782400000, "2000-02-29T00:00:00.000Z"},
        {951868800000, "2000-03-01T00:00:00.000Z"},
        {1709251199999, "2024-02-29T23:59:59.999Z"},
        {1795322100123, "2026-11-22T04:35:00.123Z"},
        {2147483648000, "2038-01-19T03:14:08.000Z"},
        {4107542399999, "2100-02-28T23:59:59.999Z"},
        {4107542400000, "2100-03-01T00:00:00.000Z"},
        {253402300799999, "9999-12-31T23:59:59.999Z"},
        /* clamped */
        {-1, "1970-01-01T00:00:00.000Z"},
        {INT64_MIN, "1970-01-01T00:00:00.000Z"},
        {253402300800000, "9999-12-31T23:59:59.999Z"},
        {INT64_MAX, "9999-12-31T23:59:59.999Z"},
    };
    char out[JSON_TIMESTAMP_LEN];
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        json_timestamp(out, table[i].ms);
        CHECK_MEM(out, JSON_TIMESTAMP_LEN, table[i].want);
    }

    /* Against the C library over a spread of days, from 1970 to past 2400. */
    for (int64_t ms = 0; ms < 14000000000000LL; ms += 86400000LL * 37 + 3723004) {
        time_t sec = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        char want[96];
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
        json_timestamp(out, ms);
        CHECK_MEM(out, JSON_TIMESTAMP_LEN, want);
        if (memcmp(out, want, JSON_TIMESTAMP_LEN) != 0)
            break;
    }
}

/* ------------------------------------------------------------------------------------------ */

static void test_writer_bounds(void)
{
    char buf[8];
    struct jw w;
    memset(buf, '#', sizeof(buf));
    jw_init(&w, buf, 6);
    jw_lit(&w, "abcd");
    jw_lit(&w, "ef"); /* exactly full */
    CHECK(!w.overflow);
    CHECK_MEM(buf, w.len, "abcdef");
    jw_raw(&w, "", 0);
    CHECK(!w.overflow);
    jw_lit(&w, "g");
    CHECK(w.overflow);
    CHECK_EQ(w.len, 6);
    CHECK_EQ(buf[6], '#');

    /* Sticky: after a write that did not fit, a smaller one that would fit is dropped too. */
    jw_init(&w, buf, 6);
    jw_lit(&w, "abc");
    jw_lit(&w, "defg");
    CHECK(w.overflow);
    jw_lit(&w, "d");
    CHECK(w.overflow);
    CHECK_EQ(w.len, 3);

    memset(buf, '#', sizeof(buf));
    jw_init(&w, buf, 4);
    jw_str(&w, "ab\ncd", 5);
    CHECK(w.overflow);
    jw_init(&w, buf, 4);
    jw_u64(&w, 123456);
    CHECK(w.overflow);
    jw_init(&w, buf, 4);
    jw_timestamp(&w, 0);
    CHECK(w.overflow);
    CHECK_EQ(buf[4], '#');
}

static void check_str(const char *in, size_t n, const char *want)
{
    char buf[256];
    struct jw w;
    jw_init(&w, buf, sizeof(buf));
    jw_str(&w, in, n);
    CHECK(!w.overflow);
    CHECK_MEM(buf, w.len, want);
}

static void test_writer_escaping(void)
{
    check_str("", 0, "\"\"");
    check_str("plain", 5, "\"plain\"");
    check_str("q\"b\\s/", 6, "\"q\\\"b\\\\s/\"");
    check_str("\b\f\n\r\t", 5, "\"\\b\\f\\n\\r\\t\"");
    check_str("\x00\x01\x1f\x7f", 4, "\"\\u0000\\u0001\\u001f\x7f\"");
    check_str("\x0b\x1b[31m", 6, "\"\\u000b\\u001b[31m\"");
    check_str("\xc3\xa9\xf0\x9f\x98\x80", 6, "\"\xc3\xa9\xf0\x9f\x98\x80\"");
    check_str("a\xe2\x80\xa8"
              "b\xe2\x80\xa9"
              "c\xe2\x80\xaa",
              12, "\"a\\u2028b\\u2029c\xe2\x80\xaa\"");
    check_str("\xe2\x80", 2, "\"\xe2\x80\"");

    /* Every byte value: the output is one valid JSON string that unescapes to the input. */
    char in[256], buf[2048], back[256];
    for (int i = 0; i < 256; i++)
        in[i] = (char)i;
    struct jw w;
    jw_init(&w, buf, sizeof(buf));
    jw_str(&w, in, sizeof(in));
    CHECK(!w.overflow);
    jsmntok_t t[2];
    CHECK_EQ(json_tokenize(buf, w.len, t, 2), 1);
    CHECK_EQ(t[0].type, JSMN_STRING);
    CHECK_EQ(t[0].end, (int)w.len - 1);
    int n = json_unescape(buf + 1, w.len - 2, back, sizeof(back));
    CHECK_EQ(n, 256);
    CHECK(n == 256 && memcmp(back, in, 256) == 0);
}

static void test_writer_numbers(void)
{
    char buf[64];
    struct jw w;
    jw_init(&w, buf, sizeof(buf));
    jw_u64(&w, 0);
    jw_lit(&w, " ");
    jw_u64(&w, 7);
    jw_lit(&w, " ");
    jw_u64(&w, 1000);
    jw_lit(&w, " ");
    jw_u64(&w, UINT64_MAX);
    CHECK_MEM(buf, w.len, "0 7 1000 18446744073709551615");
    jw_init(&w, buf, sizeof(buf));
    jw_i64(&w, 0);
    jw_lit(&w, " ");
    jw_i64(&w, -1);
    jw_lit(&w, " ");
    jw_i64(&w, INT64_MAX);
    jw_lit(&w, " ");
    jw_i64(&w, INT64_MIN);
    CHECK_MEM(buf, w.len, "0 -1 9223372036854775807 -9223372036854775808");
    jw_init(&w, buf, sizeof(buf));
    jw_timestamp(&w, 1795322100123);
    CHECK_MEM(buf, w.len, "\"2026-11-22T04:35:00.123Z\"");
}

int main(void)
{
    RUN(test_valid_documents);
    RUN(test_token_layout);
    RUN(test_top_level_scalars);
    RUN(test_not_json);
    RUN(test_control_chars_in_strings);
    RUN(test_string_bytes_at_every_offset);
    RUN(test_trailing);
    RUN(test_truncated);
    RUN(test_too_many);
    RUN(test_numbers);
    RUN(test_skip_and_get);
    RUN(test_tok_u64);
    RUN(test_unescape);
    RUN(test_timestamp);
    RUN(test_writer_bounds);
    RUN(test_writer_escaping);
    RUN(test_writer_numbers);
    return unit_report("json");
}
