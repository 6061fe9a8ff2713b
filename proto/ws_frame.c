/* ws_frame.c - RFC 6455 §5 framing: the frame parser, its error table, and the encoders.
 *
 * The parser is a pure function of (parser state, bytes): it checks every rule that can be
 * checked as early as the bytes allow (first byte, then the length field, then the whole frame),
 * and it commits message state only when it returns a whole frame, so a caller that gets
 * WS_NEED_MORE simply calls again with a longer buffer.
 */
#include "ws_frame.h"

#include <limits.h>
#include <string.h>

/* Bits of the first two header bytes. */
#define B0_FIN    0x80
#define B0_RSV    0x70
#define B0_OPCODE 0x0F
#define B1_MASK   0x80
#define B1_LEN    0x7F

/* 7-bit length values that announce a 16-bit or 64-bit extended length. */
#define LEN7_16 126
#define LEN7_64 127

/* Longest close reason: a control payload is at most 125 bytes and the code takes 2. */
#define CLOSE_REASON_MAX (WS_MAX_CONTROL_PAYLOAD - 2)

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                     */
/* ------------------------------------------------------------------------------------------ */

uint16_t ws_err_close_code(enum ws_err err)
{
    switch (err) {
    case WS_OK: return WS_CLOSE_NORMAL;
    case WS_ERR_BINARY: return WS_CLOSE_UNSUPPORTED;
    case WS_ERR_UTF8: return WS_CLOSE_INVALID_PAYLOAD;
    case WS_ERR_TOO_BIG: return WS_CLOSE_TOO_BIG;
    case WS_ERR_RSV:
    case WS_ERR_OPCODE:
    case WS_ERR_MASK:
    case WS_ERR_LENGTH:
    case WS_ERR_CONTROL_TOO_LONG:
    case WS_ERR_CONTROL_FRAGMENTED:
    case WS_ERR_UNEXPECTED_CONT:
    case WS_ERR_EXPECTED_CONT:
    case WS_ERR_CLOSE_PAYLOAD:
    case WS_ERR_CLOSE_CODE: break;
    }
    /* Every framing violation, and any value outside the enum, is a protocol error. */
    return WS_CLOSE_PROTOCOL;
}

/* These go on the wire as close reasons, so they must stay ASCII and within 123 bytes. */
const char *ws_err_str(enum ws_err err)
{
    switch (err) {
    case WS_OK: return "ok";
    case WS_ERR_RSV: return "reserved bits set";
    case WS_ERR_OPCODE: return "reserved opcode";
    case WS_ERR_MASK: return "bad masking";
    case WS_ERR_LENGTH: return "bad payload length";
    case WS_ERR_CONTROL_TOO_LONG: return "control frame too long";
    case WS_ERR_CONTROL_FRAGMENTED: return "fragmented control frame";
    case WS_ERR_UNEXPECTED_CONT: return "unexpected continuation frame";
    case WS_ERR_EXPECTED_CONT: return "expected continuation frame";
    case WS_ERR_CLOSE_PAYLOAD: return "bad close payload";
    case WS_ERR_CLOSE_CODE: return "bad close code";
    case WS_ERR_BINARY: return "binary messages not accepted";
    case WS_ERR_UTF8: return "invalid utf-8";
    case WS_ERR_TOO_BIG: return "message too big";
    }
    return "unknown error";
}

bool ws_close_code_valid(uint16_t code)
{
    /* 1004 is reserved, 1005/1006/1015 are local-only markers, 1016-2999 are unassigned
     * protocol codes, 3000-4999 belong to registered and private use. */
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* ------------------------------------------------------------------------------------------ */
/* Masking                                                                                    */
/* ------------------------------------------------------------------------------------------ */

void ws_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset)
{
    /* The key rotated to this offset, repeated to a word: 8 is a multiple of 4, so the same
     * word stays in phase for the whole run. */
    uint8_t rot[8];
    for (size_t i = 0; i < 8; i++)
        rot[i] = key[(offset + i) & 3];
    uint64_t k;
    memcpy(&k, rot, 8);

    size_t i = 0;
    /* Four words per round gives the compiler room to use vector registers. */
    for (; len - i >= 32; i += 32) {
        uint64_t w[4];
        memcpy(w, data + i, 32);
        w[0] ^= k;
        w[1] ^= k;
        w[2] ^= k;
        w[3] ^= k;
        memcpy(data + i, w, 32);
    }
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, data + i, 8);
        w ^= k;
        memcpy(data + i, &w, 8);
    }
    for (; i < len; i++)
        data[i] ^= rot[i & 7];
}

/* ------------------------------------------------------------------------------------------ */
/* Parser                                                                                     */
/* ------------------------------------------------------------------------------------------ */

void ws_parser_init(struct ws_parser *p, enum ws_role role, uint64_t max_message, bool allow_binary)
{
    memset(p, 0, sizeof(*p));
    p->role = role;
    p->max_message = max_message;
    p->allow_binary = allow_binary;
    p->msg_opcode = 0;
    p->msg_len = 0;
    utf8_init(&p->utf8);
}

void ws_parser_caller_checks_utf8(struct ws_parser *p)
{
    p->caller_checks_utf8 = true;
}

static bool is_control(uint8_t opcode)
{
    return (opcode & 0x8) != 0;
}

/* Rules decided by the first byte alone, checked before anything else arrives. */
static enum ws_err check_b0(const struct ws_parser *p, uint8_t b0)
{
    uint8_t op = b0 & B0_OPCODE;

    if (b0 & B0_RSV)
        return WS_ERR_RSV;
    switch (op) {
    case WS_OP_CONT:
        if (p->msg_opcode == 0)
            return WS_ERR_UNEXPECTED_CONT;
        return WS_OK;
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (p->msg_opcode != 0)
            return WS_ERR_EXPECTED_CONT;
        if (op == WS_OP_BINARY && !p->allow_binary)
            return WS_ERR_BINARY;
        return WS_OK;
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!(b0 & B0_FIN))
            return WS_ERR_CONTROL_FRAGMENTED;
        return WS_OK;
    default: return WS_ERR_OPCODE;
    }
}

/* Rules decided by the second byte (mask bit, 7-bit length). */
static enum ws_err check_b1(const struct ws_parser *p, uint8_t b0, uint8_t b1)
{
    bool masked = (b1 & B1_MASK) != 0;

    if (masked != (p->role == WS_ROLE_SERVER))
        return WS_ERR_MASK;
    if (is_control(b0 & B0_OPCODE) && (b1 & B1_LEN) > WS_MAX_CONTROL_PAYLOAD)
        return WS_ERR_CONTROL_TOO_LONG;
    return WS_OK;
}

static uint64_t load_be(const uint8_t *b, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | b[i];
    return v;
}

/* Validates a whole, unmasked close payload and fills the close fields of *f. */
static enum ws_err parse_close(struct ws_frame *f)
{
    if (f->len == 0) {
        f->close_code = WS_CLOSE_NO_STATUS;
        f->close_reason = (struct span){(const char *)f->payload, 0};
        return WS_OK;
    }
    if (f->len == 1)
        return WS_ERR_CLOSE_PAYLOAD;
    uint16_t code = (uint16_t)load_be(f->payload, 2);
    if (!ws_close_code_valid(code))
        return WS_ERR_CLOSE_CODE;
    if (!utf8_valid(f->payload + 2, f->len - 2))
        return WS_ERR_UTF8;
    f->close_code = code;
    f->close_reason = (struct span){(const char *)f->payload + 2, f->len - 2};
    return WS_OK;
}

static int fail(enum ws_err *err, enum ws_err e)
{
    if (err)
        *err = e;
    return WS_ERROR;
}

static int need_more(size_t *need, size_t n)
{
    if (need)
        *need = n;
    return WS_NEED_MORE;
}

int ws_frame_parse(struct ws_parser *p, uint8_t *buf, size_t len, struct ws_frame *f,
                   enum ws_err *err, size_t *need)
{
    enum ws_err e;

    if (len == 0)
        return need_more(need, 2);
    uint8_t b0 = buf[0];
    if ((e = check_b0(p, b0)) != WS_OK)
        return fail(err, e);
    if (len < 2)
        return need_more(need, 2);
    uint8_t b1 = buf[1];
    if ((e = check_b1(p, b0, b1)) != WS_OK)
        return fail(err, e);

    uint8_t op = b0 & B0_OPCODE;
    bool fin = (b0 & B0_FIN) != 0;
    bool masked = (b1 & B1_MASK) != 0;
    uint8_t len7 = b1 & B1_LEN;
    size_t ext = len7 == LEN7_64 ? 8 : len7 == LEN7_16 ? 2 : 0;
    size_t hdr = 2 + ext + (masked ? 4 : 0);

    /* The length field is all that the remaining header checks need; the mask key is not. */
    if (len < 2 + ext)
        return need_more(need, hdr);
    uint64_t plen = len7;
    if (ext == 2) {
        plen = load_be(buf + 2, 2);
        if (plen < LEN7_16)
            return fail(err, WS_ERR_LENGTH);
    } else if (ext == 8) {
        plen = load_be(buf + 2, 8);
        if ((plen >> 63) != 0 || plen <= 0xFFFF)
            return fail(err, WS_ERR_LENGTH);
    }

    /* The message limit is enforced from the header, so a peer announcing a huge frame is
     * refused before anyone buffers a byte of it. msg_len never exceeds max_message, so the
     * subtraction cannot wrap. */
    uint64_t so_far = op == WS_OP_CONT ? p->msg_len : 0;
    if (!is_control(op) && plen > p->max_message - so_far)
        return fail(err, WS_ERR_TOO_BIG);
    /* The size is returned as an int; no sane max_message gets near this. */
    if (plen > (uint64_t)(INT_MAX - hdr))
        return fail(err, WS_ERR_TOO_BIG);

    size_t total = hdr + (size_t)plen;
    if (len < total)
        return need_more(need, total);

    /* The whole frame is here: unmask, then run the checks that need the payload. */
    uint8_t *payload = buf + hdr;
    if (masked)
        ws_mask(payload, (size_t)plen, buf + hdr - 4, 0);

    memset(f, 0, sizeof(*f));
    f->opcode = op;
    f->fin = fin;
    f->payload = payload;
    f->len = (size_t)plen;
    f->close_reason = SPAN_NULL;

    if (is_control(op)) {
        if (op == WS_OP_CLOSE && (e = parse_close(f)) != WS_OK)
            return fail(err, e);
        return (int)total;
    }

    uint8_t msg_op = op == WS_OP_CONT ? p->msg_opcode : op;
    struct utf8_state u = p->utf8;
    if (op != WS_OP_CONT)
        utf8_init(&u);
    if (msg_op == WS_OP_TEXT && !p->caller_checks_utf8) {
        enum utf8_result r = utf8_feed(&u, payload, f->len, NULL);
        /* A message may split a character across fragments, but not end inside one. */
        if (r == UTF8_INVALID || (fin && r != UTF8_OK))
            return fail(err, WS_ERR_UTF8);
    }

    f->msg_opcode = msg_op;
    f->msg_start = op != WS_OP_CONT;
    f->msg_end = fin;

    /* Commit: only now, with a whole valid frame, does the message state move. */
    if (fin) {
        p->msg_opcode = 0;
        p->msg_len = 0;
        utf8_init(&p->utf8);
    } else {
        p->msg_opcode = msg_op;
        p->msg_len = so_far + plen;
        p->utf8 = u;
    }
    return (int)total;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoders                                                                                   */
/* ------------------------------------------------------------------------------------------ */

size_t ws_frame_header_len(uint64_t len, bool masked)
{
    size_t n = len < LEN7_16 ? 2 : len <= 0xFFFF ? 4 : 10;
    return n + (masked ? 4 : 0);
}

size_t ws_frame_header_write(uint8_t *out, uint8_t opcode, bool fin, uint64_t len,
                             const uint8_t *mask)
{
    /* Writes exactly ws_frame_header_len() bytes: ws_frame_header_prepend relies on it. */
    size_t n = 2;
    out[0] = (uint8_t)((fin ? B0_FIN : 0) | (opcode & B0_OPCODE));
    uint8_t mbit = mask ? B1_MASK : 0;
    if (len < LEN7_16) {
        out[1] = (uint8_t)(mbit | len);
    } else if (len <= 0xFFFF) {
        out[1] = (uint8_t)(mbit | LEN7_16);
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        n = 4;
    } else {
        out[1] = (uint8_t)(mbit | LEN7_64);
        for (size_t i = 0; i < 8; i++)
            out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        n = 10;
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

uint8_t *ws_frame_header_prepend(uint8_t *payload, uint8_t opcode, uint64_t len)
{
    uint8_t *start = payload - ws_frame_header_len(len, false);
    ws_frame_header_write(start, opcode, true, len, NULL);
    return start;
}

size_t ws_close_payload_write(uint8_t *out, uint16_t code, const char *reason, size_t reason_len)
{
    /* 1005 means "no code": the only way to say that on the wire is an empty payload. */
    if (code == WS_CLOSE_NO_STATUS)
        return 0;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (!reason)
        return 2;

    /* Keep the longest prefix that fits and ends on a character boundary; stopping at an
     * invalid byte too means the peer never fails our close with 1007. */
    const uint8_t *r = (const uint8_t *)reason;
    size_t lim = reason_len < CLOSE_REASON_MAX ? reason_len : CLOSE_REASON_MAX;
    size_t keep = 0;
    struct utf8_state u;
    utf8_init(&u);
    for (size_t i = 0; i < lim; i++) {
        enum utf8_result res = utf8_feed(&u, r + i, 1, NULL);
        if (res == UTF8_INVALID)
            break;
        if (res == UTF8_OK)
            keep = i + 1;
    }
    memcpy(out + 2, r, keep);
    return 2 + keep;
}
