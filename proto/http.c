/* http.c - HTTP/1.1 request/response heads and the WebSocket opening handshake.
 *
 * The parsers are stateless and picohttpparser-style: every call re-reads the head from byte 0
 * and validates byte by byte as it goes, so a malformed head is refused as soon as the bad byte
 * arrives instead of after max_head bytes, and any prefix of a valid head says "need more".
 * Only the first max_head bytes are ever looked at: a head that has not ended inside them is
 * answered 431 whatever follows.
 *
 * Line endings: CRLF, or a bare LF (RFC 9112 §2.2 lets a recipient accept one; curl, browsers
 * and our own writers all send CRLF, but hand-typed test traffic often does not). A CR that is
 * not followed by LF is refused (bare CR is a request-smuggling vector).
 */
#include "http.h"

#include <limits.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#define WS_GUID     "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_GUID_LEN (sizeof(WS_GUID) - 1)
/* Longest key ws_accept_compute hashes: it needs key + GUID contiguous on the stack, and any
 * real key is WS_KEY_LEN bytes. */
#define WS_KEY_HASH_MAX 256

/* ---- character classes ---------------------------------------------------------------- */

enum {
    C_TCHAR = 1,  /* token character (RFC 9110 §5.6.2) */
    C_VCHAR = 2,  /* field-vchar: VCHAR or obs-text */
    C_WS = 4,     /* SP or HTAB */
    C_EOL = 8,    /* CR or LF */
    C_TARGET = 16 /* request-target: visible ASCII */
};

/* One byte per character; a table so the hot loops are a load and a test, and const so the
 * per-core threads share it without any initialisation race. */
#define TK (C_TCHAR | C_VCHAR | C_TARGET) /* token character */
#define PU (C_VCHAR | C_TARGET)           /* other visible ASCII: separators */
#define OB C_VCHAR                        /* obs-text: allowed in values only */
#define SP C_WS
#define NL C_EOL
#define NO 0 /* controls, DEL: refused everywhere */
/* clang-format off */
static const unsigned char cls[256] = {
    NO, NO, NO, NO, NO, NO, NO, NO, NO, SP, NL, NO, NO, NL, NO, NO, /* 0x00 */
    NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, NO, /* 0x10 */
    SP, TK, PU, TK, TK, TK, TK, TK, PU, PU, TK, TK, PU, TK, TK, PU, /* 0x20 */
    TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, PU, PU, PU, PU, PU, PU, /* 0x30 */
    PU, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, /* 0x40 */
    TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, PU, PU, PU, TK, TK, /* 0x50 */
    TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, /* 0x60 */
    TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, TK, PU, TK, PU, TK, NO, /* 0x70 */
    OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, /* 0x80 */
    OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, /* 0x90 */
    OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, /* 0xa0 */
    OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, /* 0xb0 */
    OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, /* 0xc0 */
    OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, /* 0xd0 */
    OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, /* 0xe0 */
    OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, OB, /* 0xf0 */
};
/* clang-format on */
#undef TK
#undef PU
#undef OB
#undef SP
#undef NL
#undef NO

#define IS(c, k) (cls[(unsigned char)(c)] & (k))

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* ASCII case-insensitive equality with a lowercase literal (no locale: header names are
 * ASCII tokens and tolower() would depend on the process locale). */
static bool eq_nocase(const char *p, size_t n, const char *lit, size_t litlen)
{
    if (n != litlen)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != lit[i])
            return false;
    return true;
}

#define NAME_IS(sp, lit) eq_nocase((sp).base, (sp).len, lit, sizeof(lit) - 1)

/* Steps through a comma-separated list (RFC 9110 §5.6.1): sets *elem to the next element
 * trimmed of OWS, which may be empty, and returns false when the list is exhausted. */
static bool list_next(const char **pp, const char *end, struct span *elem)
{
    const char *p = *pp;
    if (p >= end)
        return false;
    const char *e = memchr(p, ',', (size_t)(end - p));
    if (!e)
        e = end;
    const char *t = e;
    while (p < t && IS(*p, C_WS))
        p++;
    while (t > p && IS(t[-1], C_WS))
        t--;
    *elem = (struct span){p, (size_t)(t - p)};
    *pp = e < end ? e + 1 : end;
    return true;
}

/* True when the list v holds tok (lowercase), ignoring case and empty elements. */
static bool list_has(struct span v, const char *tok, size_t toklen)
{
    const char *p = v.base;
    struct span e;
    while (list_next(&p, v.base + v.len, &e))
        if (eq_nocase(e.base, e.len, tok, toklen))
            return true;
    return false;
}

#define LIST_HAS(v, lit) list_has((v), lit, sizeof(lit) - 1)

/* ---- head grammar --------------------------------------------------------------------- */

/* Consumes one line ending at *pp: 0, HTTP_NEED_MORE, or HTTP_ERROR for a bare CR. */
static int eat_eol(const char **pp, const char *end)
{
    const char *p = *pp;
    if (p == end)
        return HTTP_NEED_MORE;
    if (*p == '\n') {
        *pp = p + 1;
        return 0;
    }
    if (*p != '\r')
        return HTTP_ERROR;
    if (p + 1 == end)
        return HTTP_NEED_MORE;
    if (p[1] != '\n')
        return HTTP_ERROR;
    *pp = p + 2;
    return 0;
}

/* Reads one header line at *pp. Returns 1 with name and value (value trimmed of OWS), 0 at the
 * blank line that ends the head, HTTP_NEED_MORE, or HTTP_ERROR. A line that starts with
 * whitespace is refused: it is either obs-fold (RFC 9112 §5.2) or whitespace between the start
 * line and the first header (§2.2), and both must be rejected by a server. */
static int next_header(const char **pp, const char *end, struct span *name, struct span *value)
{
    const char *p = *pp;
    if (p == end)
        return HTTP_NEED_MORE;
    if (IS(*p, C_EOL)) {
        int r = eat_eol(&p, end);
        if (r < 0)
            return r;
        *pp = p;
        return 0;
    }
    const char *ns = p;
    while (p < end && IS(*p, C_TCHAR))
        p++;
    if (p == end)
        return HTTP_NEED_MORE;
    /* No whitespace before the colon (RFC 9112 §5.1: a server MUST reject it). */
    if (*p != ':' || p == ns)
        return HTTP_ERROR;
    *name = (struct span){ns, (size_t)(p - ns)};
    p++;
    while (p < end && IS(*p, C_WS))
        p++;
    const char *vs = p, *ve = p;
    for (;; p++) {
        if (p == end)
            return HTTP_NEED_MORE;
        unsigned char k = cls[(unsigned char)*p];
        if (k & C_VCHAR)
            ve = p + 1;
        else if (k & C_EOL)
            break;
        else if (!(k & C_WS))
            return HTTP_ERROR; /* NUL, other controls, DEL */
    }
    int r = eat_eol(&p, end);
    if (r < 0)
        return r;
    *value = (struct span){vs, (size_t)(ve - vs)};
    *pp = p;
    return 1;
}

/* Matches "HTTP/1.x" at *pp; x must be 0 or 1. */
static int eat_version(const char **pp, const char *end, int *minor)
{
    static const char v[] = "HTTP/1.";
    const char *p = *pp;
    for (size_t i = 0; i < sizeof(v) - 1; i++, p++) {
        if (p == end)
            return HTTP_NEED_MORE;
        if (*p != v[i])
            return HTTP_ERROR;
    }
    if (p == end)
        return HTTP_NEED_MORE;
    if (*p != '0' && *p != '1')
        return HTTP_ERROR;
    *minor = *p - '0';
    *pp = p + 1;
    return 0;
}

/* Strict Content-Length: 1*DIGIT, no sign, no list, no overflow of int64. */
static int64_t parse_length(struct span v)
{
    if (v.len == 0)
        return -1;
    int64_t n = 0;
    for (size_t i = 0; i < v.len; i++) {
        int d = v.base[i] - '0';
        if (d < 0 || d > 9)
            return -1;
        if (n > (INT64_MAX - d) / 10)
            return -1;
        n = n * 10 + d;
    }
    return n;
}

/* Records a Content-Length; repeats must agree (RFC 9112 §6.3: differing ones are an error). */
static bool set_length(int64_t *cl, struct span v)
{
    int64_t n = parse_length(v);
    if (n < 0 || (*cl >= 0 && *cl != n))
        return false;
    *cl = n;
    return true;
}

/* A header this module allows once; a repeat of it is refused rather than resolved, because
 * which copy a proxy in front of us honoured is unknowable (Host and Origin decide routing and
 * authorization). */
static bool set_once(struct span *field, struct span v)
{
    if (field->base)
        return false;
    *field = v;
    return true;
}

static int clamp_max(size_t len, size_t max_head, const char **end, const char *buf)
{
    if (max_head > INT_MAX)
        max_head = INT_MAX;
    *end = buf + (len < max_head ? len : max_head);
    return (int)max_head;
}

/* ---- request -------------------------------------------------------------------------- */

/* Transfer-Encoding bookkeeping across repeated headers: chunked must appear once, last. */
struct te_state {
    bool present;
    bool last_chunked;
    unsigned chunked_count;
};

static void te_add(struct te_state *te, struct span v)
{
    const char *p = v.base;
    struct span e;
    te->present = true;
    while (list_next(&p, v.base + v.len, &e)) {
        if (e.len) {
            te->last_chunked = eq_nocase(e.base, e.len, "chunked", 7);
            te->chunked_count += te->last_chunked;
        }
    }
}

/* Applies one request header; NULL, or why it makes the request malformed. */
#define ONCE(field, v, why) (set_once(&(field), (v)) ? NULL : (why))
static const char *req_header(struct http_request *req, struct te_state *te, struct span n,
                              struct span v)
{
    switch (n.len) {
    case 4:
        if (NAME_IS(n, "host"))
            return ONCE(req->host, v, "repeated Host header");
        break;
    case 6:
        if (NAME_IS(n, "origin"))
            return ONCE(req->origin, v, "repeated Origin header");
        break;
    case 7:
        if (NAME_IS(n, "upgrade"))
            req->upgrade_websocket |= LIST_HAS(v, "websocket");
        break;
    case 9:
        if (NAME_IS(n, "x-api-key"))
            return ONCE(req->api_key, v, "repeated X-API-Key header");
        break;
    case 10:
        if (NAME_IS(n, "connection")) {
            req->conn_upgrade |= LIST_HAS(v, "upgrade");
            req->conn_close |= LIST_HAS(v, "close");
        }
        break;
    case 12:
        if (NAME_IS(n, "content-type"))
            return ONCE(req->content_type, v, "repeated Content-Type header");
        break;
    case 13:
        if (NAME_IS(n, "authorization"))
            return ONCE(req->authorization, v, "repeated Authorization header");
        break;
    case 14:
        if (NAME_IS(n, "content-length"))
            return set_length(&req->content_length, v)
                       ? NULL
                       : "Content-Length is not plain digits or disagrees with an earlier one";
        break;
    case 17:
        if (NAME_IS(n, "sec-websocket-key"))
            return ONCE(req->ws_key, v, "repeated Sec-WebSocket-Key header");
        if (NAME_IS(n, "transfer-encoding"))
            te_add(te, v);
        break;
    case 21:
        if (NAME_IS(n, "sec-websocket-version"))
            return ONCE(req->ws_version, v, "repeated Sec-WebSocket-Version header");
        break;
    case 22:
        /* RFC 6455 lets the list be split over several headers; one span cannot hold that
         * without copying, so the first is kept and the rest are ignored: whatever we pick
         * from it was still offered by the client. */
        if (NAME_IS(n, "sec-websocket-protocol") && !req->ws_protocol.base)
            req->ws_protocol = v;
        break;
    default: break;
    }
    return NULL;
}

static int req_fail(struct http_request *req, int status, const char *reason)
{
    req->status = status;
    req->reason = reason;
    return HTTP_ERROR;
}

int http_request_parse(const char *buf, size_t len, size_t max_head, struct http_request *req)
{
    const char *end;
    int max = clamp_max(len, max_head, &end, buf);
    const char *p = buf;
    struct te_state te = {0};
    int r;
    const char *why = "malformed blank line before the request line (a bare CR)";

    memset(req, 0, sizeof(*req));
    req->content_length = -1;

    /* RFC 9112 §2.2: a server SHOULD ignore empty lines before the request line. */
    while (p < end && IS(*p, C_EOL))
        if ((r = eat_eol(&p, end)) < 0)
            goto incomplete_or_bad;

    const char *ms = p;
    while (p < end && IS(*p, C_TCHAR))
        p++;
    if (p == end)
        goto need_more;
    if (*p != ' ' || p == ms)
        return req_fail(req, 400, "malformed request line: bad method");
    req->method = (struct span){ms, (size_t)(p - ms)};
    p++;

    const char *ts = p, *q = NULL;
    while (p < end && IS(*p, C_TARGET)) {
        if (*p == '?' && !q)
            q = p;
        p++;
    }
    if (p == end)
        goto need_more;
    if (*p != ' ' || p == ts)
        return req_fail(req, 400, "malformed request line: bad request target");
    req->target = (struct span){ts, (size_t)(p - ts)};
    req->path = (struct span){ts, (size_t)((q ? q : p) - ts)};
    req->query = q ? (struct span){q + 1, (size_t)(p - q - 1)} : (struct span){p, 0};
    p++;

    why = "malformed request line: the version must be HTTP/1.0 or HTTP/1.1";
    if ((r = eat_version(&p, end, &req->minor_version)) < 0 || (r = eat_eol(&p, end)) < 0)
        goto incomplete_or_bad;
    why = "malformed header line (a control character, whitespace before the colon, obs-fold "
          "or a bare CR)";

    for (;;) {
        struct span n, v;
        r = next_header(&p, end, &n, &v);
        if (r == 0)
            break;
        if (r < 0)
            goto incomplete_or_bad;
        req->num_headers++;
        const char *bad = req_header(req, &te, n, v);
        if (bad)
            return req_fail(req, 400, bad);
    }

    /* RFC 9112 §3.2: an HTTP/1.1 request without Host MUST get 400. */
    if (req->minor_version == 1 && !req->host.base)
        return req_fail(req, 400, "HTTP/1.1 request without a Host header");
    /* Transfer-Encoding: refused in HTTP/1.0 (§6.1), beside Content-Length (§6.3: the
     * smuggling case), or when chunked is not the single, final coding (§6.3). */
    if (te.present && (req->minor_version == 0 || req->content_length >= 0 || !te.last_chunked ||
                       te.chunked_count != 1))
        return req_fail(req, 400,
                        "Transfer-Encoding refused (HTTP/1.0, beside Content-Length, or chunked "
                        "is not its one final coding)");
    req->chunked = te.present;
    return (int)(p - buf);

incomplete_or_bad:
    if (r == HTTP_ERROR)
        return req_fail(req, 400, why);
need_more:
    if (len >= (size_t)max)
        return req_fail(req, 431, "request head too large");
    return HTTP_NEED_MORE;
}

/* ---- handshake checks ----------------------------------------------------------------- */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* A key is base64 of 16 bytes: 22 alphabet characters and "==". The unused low bits of the
 * last character are not required to be zero: common decoders (Python's, OpenSSL's) ignore
 * them, and refusing would only break clients, not protect anything. */
static bool ws_key_valid(struct span k)
{
    if (k.len != WS_KEY_LEN || k.base[22] != '=' || k.base[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (b64_value((unsigned char)k.base[i]) < 0)
            return false;
    return true;
}

static int upgrade_check(const struct http_request *req, const char **why)
{
    if (!span_eq_lit(req->method, "GET")) {
        *why = "a WebSocket upgrade must use GET";
        return 405;
    }
    /* RFC 6455 §4.1: the handshake is an HTTP/1.1 (or later) request. */
    if (req->minor_version < 1) {
        *why = "a WebSocket upgrade must be an HTTP/1.1 request";
        return 400;
    }
    if (!req->upgrade_websocket) {
        *why = "not a WebSocket upgrade: the Upgrade header must list websocket";
        return 400;
    }
    if (!req->conn_upgrade) {
        *why = "not a WebSocket upgrade: the Connection header must list upgrade";
        return 400;
    }
    if (!ws_key_valid(req->ws_key)) {
        *why = req->ws_key.base ? "Sec-WebSocket-Key is not base64 of 16 bytes"
                                : "Sec-WebSocket-Key header missing";
        return 400;
    }
    /* Missing version gets 426 too: the answer then tells the client which version to use. */
    if (!span_eq_lit(req->ws_version, "13")) {
        *why = "unsupported WebSocket version: use Sec-WebSocket-Version: 13";
        return 426;
    }
    *why = NULL;
    return 0;
}

int http_upgrade_check(const struct http_request *req)
{
    const char *why;
    return upgrade_check(req, &why);
}

const char *http_upgrade_reason(const struct http_request *req)
{
    const char *why;
    upgrade_check(req, &why);
    return why;
}

static bool session_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '~' || c == '-';
}

int http_route_ws(struct span path, struct span *session_id)
{
    if (session_id)
        *session_id = SPAN_NULL;
    if (span_eq_lit(path, "/") || span_eq_lit(path, "/ws"))
        return 0;
    if (path.len < 5 || memcmp(path.base, "/ws/", 4) != 0 || path.len - 4 > 128)
        return 404;
    for (size_t i = 4; i < path.len; i++)
        if (!session_char((unsigned char)path.base[i]))
            return 404;
    if (session_id)
        *session_id = (struct span){path.base + 4, path.len - 4};
    return 0;
}

void ws_accept_compute(struct span key, char out[WS_ACCEPT_LEN + 1])
{
    unsigned char cat[WS_KEY_HASH_MAX + WS_GUID_LEN];
    unsigned char md[SHA_DIGEST_LENGTH];

    if (key.len > WS_KEY_HASH_MAX) {
        out[0] = '\0';
        return;
    }
    if (key.len)
        memcpy(cat, key.base, key.len);
    memcpy(cat + key.len, WS_GUID, WS_GUID_LEN);
    SHA1(cat, key.len + WS_GUID_LEN, md);
    /* 20 bytes -> 28 characters and a NUL, which is exactly out's size. */
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
}

bool ws_accept_matches(struct span key, struct span accept)
{
    char want[WS_ACCEPT_LEN + 1];
    if (accept.len != WS_ACCEPT_LEN || key.len > WS_KEY_HASH_MAX)
        return false;
    ws_accept_compute(key, want);
    return memcmp(want, accept.base, WS_ACCEPT_LEN) == 0;
}

/* ---- writers -------------------------------------------------------------------------- */

/* Bounded appender: once something does not fit, every later append is a no-op and the
 * writer returns 0, so writers need no check after each piece. */
struct out {
    char *p;
    size_t cap, len;
    bool overflow;
};

static void put(struct out *o, const void *s, size_t n)
{
    if (o->overflow || n > o->cap - o->len) {
        o->overflow = true;
        return;
    }
    if (n)
        memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_uint(struct out *o, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, tmp + i, sizeof(tmp) - i);
}

static size_t finish(struct out *o)
{
    return o->overflow ? 0 : o->len;
}

/* True when every byte of s is in class k: what the writers demand of caller strings, so
 * that none can split the head (header injection). */
static bool all_in(struct span s, unsigned char k)
{
    for (size_t i = 0; i < s.len; i++)
        if (!(cls[(unsigned char)s.base[i]] & k))
            return false;
    return true;
}

static void put_status_line(struct out *o, int status)
{
    puts_(o, "HTTP/1.1 ");
    put_uint(o, (uint64_t)status);
    put(o, " ", 1);
    puts_(o, http_status_reason(status));
    put(o, "\r\n", 2);
}

const char *http_status_reason(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large"; /* RFC 9110 name; "Payload Too Large" before it */
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

size_t http_write_101(char *out, size_t cap, struct span key, struct span protocol)
{
    struct out o = {out, cap, 0, false};
    char accept[WS_ACCEPT_LEN + 1];

    if (!all_in(protocol, C_VCHAR | C_WS) || key.len > WS_KEY_HASH_MAX)
        return 0;
    ws_accept_compute(key, accept);
    puts_(&o, "HTTP/1.1 101 Switching Protocols\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Accept: ");
    put(&o, accept, WS_ACCEPT_LEN);
    put(&o, "\r\n", 2);
    if (protocol.len) {
        puts_(&o, "Sec-WebSocket-Protocol: ");
        put(&o, protocol.base, protocol.len);
        put(&o, "\r\n", 2);
    }
    put(&o, "\r\n", 2);
    return finish(&o);
}

size_t http_write_error(char *out, size_t cap, int status, const char *body)
{
    struct out o = {out, cap, 0, false};
    const char *reason = http_status_reason(status);
    size_t blen = body ? strlen(body) : strlen(reason) + 1;

    if (status < 100 || status > 999)
        return 0;
    put_status_line(&o, status);
    puts_(&o, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    put_uint(&o, blen);
    puts_(&o, "\r\nConnection: close\r\n");
    /* RFC 9110 §15.5.6: a 405 MUST list the allowed methods. */
    if (status == 405)
        puts_(&o, "Allow: GET\r\n");
    /* RFC 6455 §4.2.2 names the version we speak; RFC 9110 §15.5.22 requires Upgrade. */
    if (status == 426)
        puts_(&o, "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    put(&o, "\r\n", 2);
    if (body) {
        put(&o, body, blen);
    } else {
        puts_(&o, reason);
        put(&o, "\n", 1);
    }
    return finish(&o);
}

size_t http_write_response(char *out, size_t cap, int status, const char *content_type,
                           const char *body, size_t body_len, bool keep_alive)
{
    struct out o = {out, cap, 0, false};
    /* RFC 9110 §8.6: no Content-Length (and no body) on 1xx and 204. */
    bool bodyless = status < 200 || status == 204;

    if (status < 100 || status > 999)
        return 0;
    if (content_type && !all_in(span_from_cstr(content_type), C_VCHAR | C_WS))
        return 0;
    put_status_line(&o, status);
    if (content_type && !bodyless) {
        puts_(&o, "Content-Type: ");
        puts_(&o, content_type);
        put(&o, "\r\n", 2);
    }
    if (!bodyless) {
        puts_(&o, "Content-Length: ");
        put_uint(&o, body_len);
        put(&o, "\r\n", 2);
    }
    puts_(&o, keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
    if (!bodyless)
        put(&o, body, body_len);
    return finish(&o);
}

size_t http_write_head(char *out, size_t cap, int status, const char *content_type, size_t body_len,
                       bool keep_alive, const char *hname, const char *hvalue)
{
    struct out o = {out, cap, 0, false};

    if (status < 100 || status > 999)
        return 0;
    if (content_type && !all_in(span_from_cstr(content_type), C_VCHAR | C_WS))
        return 0;
    if (hname && (!*hname || !all_in(span_from_cstr(hname), C_TCHAR) || !hvalue ||
                  !all_in(span_from_cstr(hvalue), C_VCHAR | C_WS)))
        return 0;
    put_status_line(&o, status);
    if (content_type) {
        puts_(&o, "Content-Type: ");
        puts_(&o, content_type);
        put(&o, "\r\n", 2);
    }
    puts_(&o, "Content-Length: ");
    put_uint(&o, body_len);
    put(&o, "\r\n", 2);
    if (hname) {
        puts_(&o, hname);
        put(&o, ": ", 2);
        puts_(&o, hvalue);
        put(&o, "\r\n", 2);
    }
    puts_(&o, keep_alive ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
    return finish(&o);
}

bool http_query_get(struct span query, const char *key, struct span *value)
{
    size_t klen = strlen(key);
    const char *p = query.base, *end = query.base + query.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *pe = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq ? eq : pe;
        if ((size_t)(ke - p) == klen && memcmp(p, key, klen) == 0) {
            *value = eq ? (struct span){eq + 1, (size_t)(pe - eq - 1)} : (struct span){pe, 0};
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (unsigned char)lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int http_pct_decode(struct span in, char *out, size_t cap, bool plus_is_space)
{
    size_t n = 0;
    for (size_t i = 0; i < in.len; i++) {
        unsigned char c = (unsigned char)in.base[i];
        if (c == '%') {
            int hi = i + 2 < in.len ? hex_value((unsigned char)in.base[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value((unsigned char)in.base[i + 2]) : -1;
            if (lo < 0 || (hi == 0 && lo == 0))
                return -1;
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (n >= cap)
            return -1;
        out[n++] = (char)c;
    }
    return (int)n;
}

/* ---- client side ---------------------------------------------------------------------- */

static int res_fail(struct http_response *res, int status)
{
    res->status = status;
    return HTTP_ERROR;
}

int http_response_parse(const char *buf, size_t len, size_t max_head, struct http_response *res)
{
    const char *end;
    int max = clamp_max(len, max_head, &end, buf);
    const char *p = buf;
    int r, status = 0;

    memset(res, 0, sizeof(*res));
    res->content_length = -1;

    if ((r = eat_version(&p, end, &res->minor_version)) < 0)
        goto incomplete_or_bad;
    for (int i = 0; i < 4; i++, p++) {
        if (p == end)
            goto need_more;
        if (i == 0 ? *p != ' ' : (*p < '0' || *p > '9'))
            return res_fail(res, 400);
        if (i)
            status = status * 10 + (*p - '0');
    }
    if (status < 100)
        return res_fail(res, 400);
    /* "SP reason-phrase" may be absent altogether: RFC 9112 §4 asks a client to accept a
     * status line that ends right after the code. */
    if (p == end)
        goto need_more;
    if (*p == ' ') {
        const char *rs = ++p;
        while (p < end && (IS(*p, C_VCHAR) || IS(*p, C_WS)))
            p++;
        res->reason = (struct span){rs, (size_t)(p - rs)};
    } else {
        res->reason = (struct span){p, 0};
    }
    if ((r = eat_eol(&p, end)) < 0)
        goto incomplete_or_bad;

    for (;;) {
        struct span n, v;
        r = next_header(&p, end, &n, &v);
        if (r == 0)
            break;
        if (r < 0)
            goto incomplete_or_bad;
        if (NAME_IS(n, "sec-websocket-accept")) {
            if (!set_once(&res->ws_accept, v))
                return res_fail(res, 400);
        } else if (NAME_IS(n, "sec-websocket-protocol")) {
            if (!set_once(&res->ws_protocol, v))
                return res_fail(res, 400);
        } else if (NAME_IS(n, "connection")) {
            res->conn_upgrade |= LIST_HAS(v, "upgrade");
        } else if (NAME_IS(n, "upgrade")) {
            res->upgrade_websocket |= LIST_HAS(v, "websocket");
        } else if (NAME_IS(n, "content-length")) {
            if (!set_length(&res->content_length, v))
                return res_fail(res, 400);
        }
    }
    res->status = status;
    return (int)(p - buf);

incomplete_or_bad:
    if (r == HTTP_ERROR)
        return res_fail(res, 400);
need_more:
    if (len >= (size_t)max)
        return res_fail(res, 431);
    return HTTP_NEED_MORE;
}

size_t http_write_upgrade_request(char *out, size_t cap, struct span host, struct span path,
                                  struct span key)
{
    struct out o = {out, cap, 0, false};

    /* The path goes into the request line, where only visible ASCII is allowed. */
    if (key.len != WS_KEY_LEN || !all_in(key, C_VCHAR) || !all_in(host, C_VCHAR) ||
        !all_in(path, C_TARGET))
        return 0;
    puts_(&o, "GET ");
    if (path.len)
        put(&o, path.base, path.len);
    else
        put(&o, "/", 1);
    puts_(&o, " HTTP/1.1\r\nHost: ");
    put(&o, host.base, host.len);
    puts_(&o, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    put(&o, key.base, key.len);
    puts_(&o, "\r\nSec-WebSocket-Version: 13\r\n\r\n");
    return finish(&o);
}
