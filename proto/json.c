/* json.c - strict JSON tokenizing into jsmn's token layout, string unescaping, timestamps, and
 * the bounded writer.
 *
 * This is the one translation unit that compiles jsmn's implementation (everyone else includes
 * it with JSMN_HEADER through json.h), so jsmn_parse exists for whoever wants it. json_tokenize
 * does not call it, though: in strict mode jsmn still accepts "[1 2]", "[1,]", "{,}", "[tx]",
 * "[01]", two top-level values in a row, and stops silently at a NUL byte, while it rejects a
 * bare top-level number as incomplete. Patching that up after the fact needs a second pass that
 * re-derives the grammar anyway, so json_tokenize is a one-pass strict tokenizer that fills the
 * same jsmntok_t layout jsmn would (type, start, end, size, parent) for every valid document;
 * the fuzz target checks that equivalence against jsmn itself.
 */
#include <jsmn.h> /* first and without JSMN_HEADER: the implementation */

#include "json.h"

#include <limits.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Tokenizer                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* What the grammar expects next. The stack of open containers is not stored here: it is the
 * chain of parent links in the tokens already written, as in jsmn, so no depth limit and no
 * memory beyond the caller's array. */
enum expect {
    EX_VALUE,          /* a value: top level, after ':' or after ',' in an array */
    EX_VALUE_OR_CLOSE, /* just after '[' */
    EX_KEY_OR_CLOSE,   /* just after '{' */
    EX_KEY,            /* after ',' in an object */
    EX_COLON,          /* after a key */
    EX_COMMA_OR_CLOSE, /* after a member or element */
    EX_DONE,           /* the top-level value is complete: only whitespace may follow */
};

static inline bool is_ws(char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* For the 8 bytes in x (first byte lowest), the high bit of each byte that is '"', '\\' or
 * below 0x20: the bytes a string scan must stop at. Each test is the classic "has a zero/smaller
 * byte" trick; a borrow can only flag a byte above one that really matched, so the lowest flag
 * is exact, which is all the scan uses. */
static inline uint64_t word_special(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL;
    uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
    return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & high;
}

static inline bool byte_special(unsigned char c)
{
    return c == '"' || c == '\\' || c < 0x20;
}

/* Scans a string whose opening quote is at s[p]. Returns the offset of the closing quote, or
 * -JSON_ERR_* . Raw bytes >= 0x80 pass: the frame layer already checked UTF-8. Plain runs go
 * 8 bytes at a time: payload text is most of what a broadcast engine tokenizes. */
static long scan_string(const char *s, size_t len, size_t p)
{
    for (p++;;) {
        /* Find the next byte that needs a look. */
        for (;;) {
            if (len - p < 8) {
                while (p < len && !byte_special((unsigned char)s[p]))
                    p++;
                break;
            }
            uint64_t x;
            memcpy(&x, s + p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            x = __builtin_bswap64(x);
#endif
            uint64_t m = word_special(x);
            if (m) {
                p += (size_t)__builtin_ctzll(m) >> 3;
                break;
            }
            p += 8;
        }
        if (p >= len)
            return -JSON_ERR_TRUNCATED;
        unsigned char c = (unsigned char)s[p];
        if (c == '"')
            return (long)p;
        if (c < 0x20)
            return -JSON_ERR_SYNTAX;
        if (++p == len)
            return -JSON_ERR_TRUNCATED;
        switch (s[p]) {
        case '"':
        case '\\':
        case '/':
        case 'b':
        case 'f':
        case 'n':
        case 'r':
        case 't': break;
        case 'u':
            for (int i = 0; i < 4; i++) {
                if (++p == len)
                    return -JSON_ERR_TRUNCATED;
                if (hex_val(s[p]) < 0)
                    return -JSON_ERR_SYNTAX;
            }
            break;
        default: return -JSON_ERR_SYNTAX;
        }
        p++;
    }
}

/* Scans a number starting at s[p] per RFC 8259:
 *   -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?
 * Returns the offset just past it, or -JSON_ERR_*. What follows is the caller's business, which
 * is how "01" and "1x" fail: the number ends at "0"/"1" and the next byte is not a separator. */
static long scan_number(const char *s, size_t len, size_t p)
{
    if (s[p] == '-' && ++p == len)
        return -JSON_ERR_TRUNCATED;
    if (s[p] == '0') {
        p++;
    } else if (is_digit(s[p])) {
        while (++p < len && is_digit(s[p]))
            ;
    } else {
        return -JSON_ERR_SYNTAX;
    }
    if (p < len && s[p] == '.') {
        if (++p == len)
            return -JSON_ERR_TRUNCATED;
        if (!is_digit(s[p]))
            return -JSON_ERR_SYNTAX;
        while (++p < len && is_digit(s[p]))
            ;
    }
    if (p < len && (s[p] == 'e' || s[p] == 'E')) {
        if (++p == len)
            return -JSON_ERR_TRUNCATED;
        if (s[p] == '+' || s[p] == '-') {
            if (++p == len)
                return -JSON_ERR_TRUNCATED;
        }
        if (!is_digit(s[p]))
            return -JSON_ERR_SYNTAX;
        while (++p < len && is_digit(s[p]))
            ;
    }
    return (long)p;
}

/* Matches the literal lit (true/false/null) at s[p]; a proper prefix at the end of the input is
 * truncation, anything else a syntax error. Returns the offset past it or -JSON_ERR_*. */
static long scan_literal(const char *s, size_t len, size_t p, const char *lit, size_t n)
{
    size_t avail = len - p < n ? len - p : n;
    if (memcmp(s + p, lit, avail) != 0)
        return -JSON_ERR_SYNTAX;
    if (avail < n)
        return -JSON_ERR_TRUNCATED;
    return (long)(p + n);
}

static inline void tok_set(jsmntok_t *t, jsmntype_t type, long start, long end, int parent)
{
    t->type = type;
    t->start = (int)start;
    t->end = (int)end;
    t->size = 0;
    t->parent = parent;
}

int json_tokenize(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks)
{
    /* Token offsets are ints; messages are capped far below this anyway. */
    if (len > (size_t)INT_MAX)
        return -JSON_ERR_TOO_MANY;
    if (ntoks > (unsigned)INT_MAX)
        ntoks = (unsigned)INT_MAX;

    enum expect ex = EX_VALUE;
    int n = 0;    /* tokens written */
    int sup = -1; /* innermost open container, or the key whose value comes next */
    size_t p = 0;

    for (;;) {
        while (p < len && is_ws(json[p]))
            p++;
        if (p == len)
            break;
        char c = json[p];

        switch (ex) {
        case EX_DONE: return -JSON_ERR_TRAILING;
        case EX_COLON:
            if (c != ':')
                return -JSON_ERR_SYNTAX;
            p++;
            ex = EX_VALUE;
            continue;
        case EX_KEY_OR_CLOSE:
        case EX_KEY:
            if (c == '}' && ex == EX_KEY_OR_CLOSE)
                goto close;
            if (c != '"')
                return -JSON_ERR_SYNTAX;
            {
                long q = scan_string(json, len, p);
                if (q < 0)
                    return (int)q;
                if ((unsigned)n >= ntoks)
                    return -JSON_ERR_TOO_MANY;
                tok_set(&toks[n], JSMN_STRING, (long)p + 1, q, sup);
                toks[sup].size++;
                sup = n++;
                p = (size_t)q + 1;
                ex = EX_COLON;
            }
            continue;
        case EX_COMMA_OR_CLOSE:
            if (c == ',') {
                p++;
                ex = toks[sup].type == JSMN_OBJECT ? EX_KEY : EX_VALUE;
                continue;
            }
            if (c == '}' || c == ']')
                goto close;
            return -JSON_ERR_SYNTAX;
        case EX_VALUE_OR_CLOSE:
            if (c == ']')
                goto close;
            /* fall through */
        case EX_VALUE: break;
        }

        /* A value starts at p. */
        if ((unsigned)n >= ntoks)
            return -JSON_ERR_TOO_MANY;
        long q;
        if (c == '{' || c == '[') {
            tok_set(&toks[n], c == '{' ? JSMN_OBJECT : JSMN_ARRAY, (long)p, -1, sup);
            if (sup >= 0)
                toks[sup].size++;
            sup = n++;
            p++;
            ex = c == '{' ? EX_KEY_OR_CLOSE : EX_VALUE_OR_CLOSE;
            continue;
        }
        if (c == '"') {
            q = scan_string(json, len, p);
            if (q < 0)
                return (int)q;
            tok_set(&toks[n], JSMN_STRING, (long)p + 1, q, sup);
            q++;
        } else {
            if (c == 't')
                q = scan_literal(json, len, p, "true", 4);
            else if (c == 'f')
                q = scan_literal(json, len, p, "false", 5);
            else if (c == 'n')
                q = scan_literal(json, len, p, "null", 4);
            else if (c == '-' || is_digit(c))
                q = scan_number(json, len, p);
            else
                q = -JSON_ERR_SYNTAX;
            if (q < 0)
                return (int)q;
            tok_set(&toks[n], JSMN_PRIMITIVE, (long)p, q, sup);
        }
        if (sup >= 0)
            toks[sup].size++;
        n++;
        p = (size_t)q;
        goto value_done;

    close:
        /* c closes sup, which must be an open container of the same kind. */
        if (toks[sup].type != (c == '}' ? JSMN_OBJECT : JSMN_ARRAY))
            return -JSON_ERR_SYNTAX;
        toks[sup].end = (int)p + 1;
        p++;
        sup = toks[sup].parent;

    value_done:
        /* A value just ended inside sup: pop the key it belonged to, if any. */
        if (sup < 0) {
            ex = EX_DONE;
            continue;
        }
        if (toks[sup].type == JSMN_STRING)
            sup = toks[sup].parent;
        ex = EX_COMMA_OR_CLOSE;
    }

    if (ex != EX_DONE)
        return -JSON_ERR_TRUNCATED;
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Token helpers                                                                              */
/* ------------------------------------------------------------------------------------------ */

int json_skip(const jsmntok_t *toks, int ntoks, int i)
{
    /* Each token owes `size` children (an object's keys each owe their value), so the subtree
     * ends when the count of owed tokens reaches zero. */
    long pending = 1;
    while (pending > 0 && i < ntoks) {
        pending += toks[i].size - 1;
        i++;
    }
    return i;
}

int json_obj_get(const char *json, const jsmntok_t *toks, int ntoks, int obj, const char *key)
{
    if (obj < 0 || obj >= ntoks || toks[obj].type != JSMN_OBJECT)
        return -1;
    size_t klen = strlen(key);
    int found = -1;
    int i = obj + 1;
    /* The last duplicate wins, as with JSON.parse and Python's json: the value we act on is the
     * one a client library or a proxy in front of us would have seen. */
    for (int k = 0; k < toks[obj].size && i + 1 < ntoks; k++) {
        const jsmntok_t *kt = &toks[i];
        if ((size_t)(kt->end - kt->start) == klen && memcmp(json + kt->start, key, klen) == 0)
            found = i + 1;
        i = json_skip(toks, ntoks, i + 1);
    }
    return found;
}

bool json_tok_u64(const char *json, const jsmntok_t *t, uint64_t *out)
{
    if (t->type != JSMN_PRIMITIVE || t->end <= t->start)
        return false;
    const char *s = json + t->start;
    size_t n = (size_t)(t->end - t->start);
    /* A leading zero is only "0" itself: json_tokenize guarantees that, but this function also
     * gets tokens from elsewhere. */
    if (n > 1 && s[0] == '0')
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Unescaping                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* Reads the 4 hex digits at in[0..4) (the caller checked they are there). */
static long hex4(const char *in)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_val(in[i]);
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

int json_unescape(const char *in, size_t len, char *out, size_t cap)
{
    if (len > (size_t)INT_MAX)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        /* Copy the run up to the next backslash in one go: most strings have none. */
        const char *bs = memchr(in + i, '\\', len - i);
        size_t run = bs ? (size_t)(bs - (in + i)) : len - i;
        if (run > cap - o)
            return -1;
        memcpy(out + o, in + i, run);
        o += run;
        i += run;
        if (i == len)
            break;

        if (++i == len)
            return -1;
        char e = in[i++];
        uint32_t cp;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u': {
            if (len - i < 4)
                return -1;
            long u = hex4(in + i);
            if (u < 0)
                return -1;
            i += 4;
            if (u >= 0xDC00 && u <= 0xDFFF)
                return -1; /* a low surrogate with no high one before it */
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (len - i < 6 || in[i] != '\\' || in[i + 1] != 'u')
                    return -1;
                long lo = hex4(in + i + 2);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                i += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            cp = (uint32_t)u;
            break;
        }
        default: return -1;
        }

        /* U+0000 comes out as a NUL byte: whether that is acceptable is the caller's call
         * (channel_validate rejects it). */
        unsigned char enc[4];
        size_t k;
        if (cp < 0x80) {
            enc[0] = (unsigned char)cp;
            k = 1;
        } else if (cp < 0x800) {
            enc[0] = (unsigned char)(0xC0 | cp >> 6);
            enc[1] = (unsigned char)(0x80 | (cp & 0x3F));
            k = 2;
        } else if (cp < 0x10000) {
            enc[0] = (unsigned char)(0xE0 | cp >> 12);
            enc[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
            enc[2] = (unsigned char)(0x80 | (cp & 0x3F));
            k = 3;
        } else {
            enc[0] = (unsigned char)(0xF0 | cp >> 18);
            enc[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
            enc[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
            enc[3] = (unsigned char)(0x80 | (cp & 0x3F));
            k = 4;
        }
        if (k > cap - o)
            return -1;
        memcpy(out + o, enc, k);
        o += k;
    }
    return (int)o;
}

/* ------------------------------------------------------------------------------------------ */
/* Timestamps                                                                                 */
/* ------------------------------------------------------------------------------------------ */

/* 9999-12-31T23:59:59.999Z: the last instant with a four-digit year. */
#define TS_MAX_MS 253402300799999LL

static void put2(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
}

void json_timestamp(char out[JSON_TIMESTAMP_LEN], int64_t unix_ms)
{
    /* Clamped rather than failing: the clock is ours, and a pre-1970 or post-9999 clock is a
     * misconfiguration that should not make us emit malformed JSON. */
    if (unix_ms < 0)
        unix_ms = 0;
    if (unix_ms > TS_MAX_MS)
        unix_ms = TS_MAX_MS;
    int64_t days = unix_ms / 86400000;
    int64_t ms_of_day = unix_ms % 86400000;

    /* Civil date from days since 1970-01-01 (Howard Hinnant's days_from_civil inverse): eras
     * of 400 years, years starting in March so the leap day is the era's last day. Pure
     * arithmetic: no gmtime, no TZ, no locale. days >= 0 here, so no negative-era fixup. */
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    unsigned d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    unsigned m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    if (m <= 2)
        y++;

    unsigned sec = (unsigned)(ms_of_day / 1000), msec = (unsigned)(ms_of_day % 1000);
    unsigned yy = (unsigned)y;
    out[0] = (char)('0' + yy / 1000);
    out[1] = (char)('0' + yy / 100 % 10);
    put2(out + 2, yy % 100);
    out[4] = '-';
    put2(out + 5, m);
    out[7] = '-';
    put2(out + 8, d);
    out[10] = 'T';
    put2(out + 11, sec / 3600);
    out[13] = ':';
    put2(out + 14, sec / 60 % 60);
    out[16] = ':';
    put2(out + 17, sec % 60);
    out[19] = '.';
    out[20] = (char)('0' + msec / 100);
    put2(out + 21, msec % 100);
    out[23] = 'Z';
}

/* ------------------------------------------------------------------------------------------ */
/* Writer                                                                                     */
/* ------------------------------------------------------------------------------------------ */

void jw_init(struct jw *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->overflow = false;
}

void jw_raw(struct jw *w, const char *s, size_t n)
{
    /* All or nothing, and sticky: a message with a hole in it must never look complete. */
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    if (n)
        memcpy(w->buf + w->len, s, n);
    w->len += n;
}

/* Escape for each byte below 0x20 and for '"' and '\\': 0 means the byte passes unchanged, a
 * letter means "\<letter>", 'u' means "\u00XX". */
static const char esc_table[256] = {
    ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r',  ['\t'] = 't', [0x00] = 'u',
    [0x01] = 'u', [0x02] = 'u', [0x03] = 'u', [0x04] = 'u',  [0x05] = 'u', [0x06] = 'u',
    [0x07] = 'u', [0x0B] = 'u', [0x0E] = 'u', [0x0F] = 'u',  [0x10] = 'u', [0x11] = 'u',
    [0x12] = 'u', [0x13] = 'u', [0x14] = 'u', [0x15] = 'u',  [0x16] = 'u', [0x17] = 'u',
    [0x18] = 'u', [0x19] = 'u', [0x1A] = 'u', [0x1B] = 'u',  [0x1C] = 'u', [0x1D] = 'u',
    [0x1E] = 'u', [0x1F] = 'u', ['"'] = '"',  ['\\'] = '\\',
};

void jw_str(struct jw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    jw_lit(w, "\"");
    size_t run = 0; /* start of the pending run of bytes that pass unchanged */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char e = esc_table[c];
        char buf[6];
        size_t k;
        if (e == 0) {
            /* U+2028/U+2029 are valid in JSON but end a line in JavaScript source; escaping
             * them costs nothing and keeps JSONP-style or eval-based consumers safe. */
            if (c != 0xE2 || n - i < 3 || (unsigned char)s[i + 1] != 0x80 ||
                ((unsigned char)s[i + 2] & 0xFE) != 0xA8)
                continue;
            memcpy(buf, s[i + 2] == (char)0xA8 ? "\\u2028" : "\\u2029", 6);
            k = 6;
            jw_raw(w, s + run, i - run);
            jw_raw(w, buf, k);
            i += 2;
            run = i + 1;
            continue;
        }
        if (e == 'u') {
            memcpy(buf, "\\u00", 4);
            buf[4] = hex[c >> 4];
            buf[5] = hex[c & 15];
            k = 6;
        } else {
            buf[0] = '\\';
            buf[1] = e;
            k = 2;
        }
        jw_raw(w, s + run, i - run);
        jw_raw(w, buf, k);
        run = i + 1;
    }
    jw_raw(w, s + run, n - run);
    jw_lit(w, "\"");
}

void jw_u64(struct jw *w, uint64_t v)
{
    char buf[20];
    size_t i = sizeof(buf);
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    jw_raw(w, buf + i, sizeof(buf) - i);
}

void jw_i64(struct jw *w, int64_t v)
{
    if (v < 0) {
        jw_lit(w, "-");
        /* Negate in unsigned arithmetic so INT64_MIN does not overflow. */
        jw_u64(w, (uint64_t)0 - (uint64_t)v);
        return;
    }
    jw_u64(w, (uint64_t)v);
}

void jw_timestamp(struct jw *w, int64_t unix_ms)
{
    /* Formatted once per millisecond and thread: a worker writes every event and reply of one
     * loop iteration with the same clock reading. */
    static _Thread_local int64_t last_ms = -1;
    static _Thread_local char buf[JSON_TIMESTAMP_LEN + 2];
    if (unix_ms != last_ms) {
        buf[0] = '"';
        json_timestamp(buf + 1, unix_ms);
        buf[JSON_TIMESTAMP_LEN + 1] = '"';
        last_ms = unix_ms;
    }
    jw_raw(w, buf, sizeof(buf));
}
