/* fuzz_ws_frame.c - libFuzzer target for the frame parser, the encoders and the UTF-8 validator.
 *
 * Input: one configuration byte (role, allow_binary, max_message), then a byte stream parsed as
 * back-to-back frames. Every returned frame is checked against what the rules promise: spans
 * inside the input, a canonical header that the encoder reproduces byte for byte, correct
 * unmasking, control frame limits, reassembled text that is valid UTF-8, the message limit; and
 * every prefix of it must be NEED_MORE (or the same error) without touching parser or buffer.
 * The same bytes also drive the UTF-8 validator (split feeds against a reference decoder), ws_mask
 * in pieces, and ws_close_payload_write. Any broken promise aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/ws_frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MSG_CAP 65536

static void die(const char *what)
{
    fprintf(stderr, "fuzz_ws_frame: invariant broken: %s\n", what);
    abort();
}

#define ASSERT(c)                                                                                  \
    do {                                                                                           \
        if (!(c))                                                                                  \
            die(#c);                                                                               \
    } while (0)

/* Slow reference: offset of the first invalid byte, -2 when truncated at the end, -1 valid. */
static long ref_utf8(const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n;) {
        uint8_t c = b[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF)
            need = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4)
            need = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else
            return (long)i;
        for (size_t k = 1; k <= need; k++) {
            if (i + k >= n)
                return -2;
            uint8_t x = b[i + k];
            if (x < (k == 1 ? lo : 0x80) || x > (k == 1 ? hi : 0xBF))
                return (long)(i + k);
        }
        i += need + 1;
    }
    return -1;
}

static void fuzz_utf8(const uint8_t *d, size_t n, size_t split)
{
    long want = ref_utf8(d, n);
    struct utf8_state s;
    size_t bad = 0;
    utf8_init(&s);
    enum utf8_result r = utf8_feed(&s, d, n, &bad);
    long got = r == UTF8_OK ? -1 : r == UTF8_PARTIAL ? -2 : (long)bad;
    ASSERT(got == want);
    ASSERT(utf8_valid(d, n) == (want == -1));

    /* In two pieces: same verdict, bad offset relative to the piece that held it. */
    if (split > n)
        split = n;
    utf8_init(&s);
    bad = 0;
    r = utf8_feed(&s, d, split, &bad);
    if (r == UTF8_INVALID) {
        ASSERT(want >= 0 && (size_t)want == bad);
    } else {
        r = utf8_feed(&s, d + split, n - split, &bad);
        long got2 = r == UTF8_OK ? -1 : r == UTF8_PARTIAL ? -2 : (long)(bad + split);
        ASSERT(got2 == want);
    }
}

static void fuzz_mask(const uint8_t *d, size_t n, size_t split)
{
    uint8_t key[4] = {0x12, 0x34, 0x56, 0x78};
    if (n >= 4)
        memcpy(key, d, 4);
    uint8_t *a = malloc(n ? n : 1), *b = malloc(n ? n : 1);
    if (!a || !b)
        abort();
    memcpy(a, d, n);
    memcpy(b, d, n);
    if (split > n)
        split = n;
    ws_mask(a, n, key, 0);
    ws_mask(b, split, key, 0);
    ws_mask(b + split, n - split, key, split);
    for (size_t i = 0; i < n; i++)
        ASSERT(a[i] == (uint8_t)(d[i] ^ key[i & 3]) && b[i] == a[i]);
    free(a);
    free(b);
}

static void fuzz_close_write(const uint8_t *d, size_t n)
{
    uint8_t out[WS_MAX_CONTROL_PAYLOAD];
    uint16_t code = n >= 2 ? (uint16_t)(d[0] << 8 | d[1]) : 1000;
    size_t w = ws_close_payload_write(out, code, (const char *)d, n);
    if (code == WS_CLOSE_NO_STATUS) {
        ASSERT(w == 0);
        return;
    }
    ASSERT(w >= 2 && w <= WS_MAX_CONTROL_PAYLOAD && w - 2 <= n);
    ASSERT(out[0] == code >> 8 && out[1] == (code & 0xFF));
    ASSERT(memcmp(out + 2, d, w - 2) == 0);
    ASSERT(utf8_valid(out + 2, w - 2));
}

/* Checks every short prefix of buf[0..avail) against the full result (rc, e). */
static void check_prefixes(struct ws_parser *p, uint8_t *buf, size_t avail, int rc,
                           enum ws_err full_err)
{
    struct ws_parser before = *p;
    size_t upto = avail < 24 ? avail : 24;
    for (size_t k = 0; k <= upto; k++) {
        size_t len = k < upto ? k : avail - 1; /* the last round tries one byte short */
        if (len >= avail || (rc > 0 && len >= (size_t)rc))
            continue;
        struct ws_frame f;
        enum ws_err e = WS_OK;
        size_t need = 0;
        /* An exact-size copy: ASan catches any read past len, and a prefix that holds a whole
         * frame may be unmasked in place before a payload error is found. */
        uint8_t *cp = malloc(len ? len : 1);
        if (!cp)
            abort();
        memcpy(cp, buf, len);
        int r = ws_frame_parse(p, cp, len, &f, &e, &need);
        if (r == WS_NEED_MORE)
            ASSERT(memcmp(cp, buf, len) == 0);
        free(cp);
        ASSERT(memcmp(p, &before, sizeof(before)) == 0);
        if (r == WS_NEED_MORE) {
            ASSERT(need > len);
            if (rc > 0)
                ASSERT(need <= (size_t)rc);
        } else {
            /* Errors seen early are header errors, so the full frame must report the same. */
            ASSERT(r == WS_ERROR);
            ASSERT(rc == WS_ERROR && e == full_err);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint64_t limits[8] = {0, 1, 10, 125, 126, 1000, 65536, UINT64_MAX};
    static uint8_t msg[MSG_CAP];

    if (size == 0)
        return 0;
    uint8_t cfg = data[0];
    const uint8_t *in = data + 1;
    size_t n = size - 1;

    fuzz_utf8(in, n, cfg);
    fuzz_mask(in, n, cfg);
    fuzz_close_write(in, n);

    struct ws_parser p;
    enum ws_role role = (cfg & 1) ? WS_ROLE_CLIENT : WS_ROLE_SERVER;
    bool allow_binary = (cfg & 2) != 0;
    uint64_t max_message = limits[(cfg >> 2) & 7];
    ws_parser_init(&p, role, max_message, allow_binary);

    /* A private, exact-size copy: the parser unmasks in place. */
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        abort();
    memcpy(buf, in, n);

    size_t pos = 0, msg_len = 0;
    bool msg_open = false, msg_text = false;
    while (pos < n) {
        size_t avail = n - pos;
        uint8_t *at = buf + pos;
        struct ws_parser before = p;
        struct ws_frame f;
        enum ws_err e = WS_OK;
        size_t need = 0;

        /* Full parse on a scratch copy first, so prefixes can be tried on pristine bytes. */
        struct ws_parser scratch = p;
        uint8_t *tmp = malloc(avail);
        if (!tmp)
            abort();
        memcpy(tmp, at, avail);
        int rc = ws_frame_parse(&scratch, tmp, avail, &f, &e, &need);
        free(tmp);
        check_prefixes(&p, at, avail, rc, e);
        ASSERT(memcmp(at, in + pos, avail) == 0);

        rc = ws_frame_parse(&p, at, avail, &f, &e, &need);
        if (rc == WS_NEED_MORE) {
            ASSERT(need > avail);
            ASSERT(memcmp(&p, &before, sizeof(p)) == 0);
            break;
        }
        if (rc == WS_ERROR) {
            ASSERT(e > WS_OK && e <= WS_ERR_TOO_BIG);
            uint16_t cc = ws_err_close_code(e);
            ASSERT(cc == 1002 || cc == 1003 || cc == 1007 || cc == 1009);
            ASSERT(strlen(ws_err_str(e)) <= 123);
            if (e == WS_ERR_BINARY)
                ASSERT(!allow_binary);
            break;
        }
        ASSERT(rc > 0 && (size_t)rc <= avail);
        ASSERT(f.payload >= at && f.payload + f.len == at + rc);

        /* The header is canonical, so the encoder must reproduce it exactly. */
        size_t hdr = (size_t)rc - f.len;
        bool masked = role == WS_ROLE_SERVER;
        ASSERT(hdr == ws_frame_header_len(f.len, masked));
        uint8_t enc[WS_MAX_HEADER];
        const uint8_t *key = masked ? in + pos + hdr - 4 : NULL;
        ASSERT(ws_frame_header_write(enc, f.opcode, f.fin, f.len, key) == hdr);
        ASSERT(memcmp(enc, in + pos, hdr) == 0);
        /* Unmasked correctly. */
        for (size_t i = 0; i < f.len; i++)
            ASSERT(f.payload[i] == (uint8_t)(in[pos + hdr + i] ^ (key ? key[i & 3] : 0)));

        if (f.opcode & 0x8) {
            ASSERT(f.fin && f.len <= WS_MAX_CONTROL_PAYLOAD);
            ASSERT(memcmp(&p, &before, sizeof(p)) == 0);
            if (f.opcode == WS_OP_CLOSE) {
                if (f.len == 0) {
                    ASSERT(f.close_code == WS_CLOSE_NO_STATUS);
                } else {
                    ASSERT(f.len >= 2 && ws_close_code_valid(f.close_code));
                    ASSERT(f.close_reason.len == f.len - 2);
                    ASSERT((const uint8_t *)f.close_reason.base == f.payload + 2);
                    ASSERT(utf8_valid(f.payload + 2, f.len - 2));
                }
            }
        } else {
            ASSERT(f.msg_start == (f.opcode != WS_OP_CONT));
            ASSERT(f.msg_start != msg_open);
            ASSERT(f.msg_end == f.fin);
            if (f.msg_start) {
                msg_open = true;
                msg_len = 0;
                msg_text = f.opcode == WS_OP_TEXT;
                ASSERT(f.msg_opcode == f.opcode);
            }
            ASSERT(f.msg_opcode == (msg_text ? WS_OP_TEXT : WS_OP_BINARY));
            ASSERT(msg_text || allow_binary);
            if (msg_len + f.len <= MSG_CAP)
                memcpy(msg + msg_len, f.payload, f.len);
            msg_len += f.len;
            ASSERT(msg_len <= max_message);
            if (f.fin) {
                if (msg_text && msg_len <= MSG_CAP)
                    ASSERT(utf8_valid(msg, msg_len));
                msg_open = false;
                ASSERT(p.msg_opcode == 0 && p.msg_len == 0 && p.utf8.state == 0);
            } else {
                ASSERT(p.msg_opcode == f.msg_opcode && p.msg_len == msg_len);
            }
        }
        pos += (size_t)rc;
    }
    free(buf);
    return 0;
}
