/* http.h - HTTP/1.1 request/response heads and the WebSocket opening handshake (RFC 6455 §4).
 *
 * Pure, picohttpparser-style: the parsers read the caller's buffer and return the number of
 * bytes the head used, HTTP_NEED_MORE, or HTTP_ERROR; every string they report is a span into
 * that buffer. No allocation, no I/O. The writers fill a caller buffer and return the length
 * written, or 0 when it does not fit.
 */
#ifndef RINGCAST_PROTO_HTTP_H
#define RINGCAST_PROTO_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"

#define HTTP_NEED_MORE (-2)
#define HTTP_ERROR     (-1)

/* Largest request head accepted by default: bigger heads get 431. */
#define HTTP_MAX_HEAD_DEFAULT 8192
/* Length of a Sec-WebSocket-Accept value: base64 of a 20-byte SHA-1. */
#define WS_ACCEPT_LEN 28
/* Length of a Sec-WebSocket-Key value: base64 of 16 random bytes. */
#define WS_KEY_LEN 24

struct http_request {
    struct span method;
    struct span target; /* request-target as sent: path plus optional ?query */
    struct span path;   /* target up to '?' */
    struct span query;  /* after '?', without it; empty when absent */
    int minor_version;  /* HTTP/1.x */
    struct span host;
    struct span origin;
    struct span ws_key;      /* Sec-WebSocket-Key */
    struct span ws_version;  /* Sec-WebSocket-Version */
    struct span ws_protocol; /* Sec-WebSocket-Protocol (raw list) */
    struct span authorization;
    struct span api_key; /* X-API-Key */
    struct span content_type;
    int64_t content_length; /* -1 when absent */
    bool conn_upgrade;      /* Connection token list holds "upgrade" (any case) */
    bool conn_close;        /* Connection token list holds "close" */
    bool upgrade_websocket; /* Upgrade token list holds "websocket" (any case) */
    bool chunked;           /* Transfer-Encoding holds "chunked" */
    unsigned num_headers;
    int status;         /* on HTTP_ERROR: the status to answer with (400 or 431) */
    const char *reason; /* on HTTP_ERROR: which rule the request broke, one line of plain
                         * text (a static string) for the response body and the log */
};

/* Parses a request head from buf[0..len). Returns the bytes the head used (through the blank
 * line), HTTP_NEED_MORE when the head is incomplete and still under max_head bytes, or
 * HTTP_ERROR with req->status set: 400 malformed, 431 head over max_head bytes. Header names
 * are case-insensitive; spans in req point into buf. Stateless: call again from byte 0 with
 * more data; a malformed byte is refused as soon as it arrives.
 * Lines end in CRLF or a bare LF (RFC 9112 §2.2 allows it); a bare CR is 400. Empty lines
 * before the request line are skipped. Also 400: obs-fold, whitespace before a colon,
 * controls in a value, a version other than HTTP/1.0 or 1.1, HTTP/1.1 without Host, a
 * repeated Host, Origin, Authorization, Content-Type, Sec-WebSocket-Key or
 * Sec-WebSocket-Version, a Content-Length that is not plain digits or disagrees with an
 * earlier one, and Transfer-Encoding unless chunked is its one final coding in an HTTP/1.1
 * request with no Content-Length. A repeated Sec-WebSocket-Protocol keeps the first. */
int http_request_parse(const char *buf, size_t len, size_t max_head, struct http_request *req);

/* Checks that a parsed request is a WebSocket upgrade this server accepts. Returns 0 when it
 * is, else the HTTP status to answer: 405 not GET, 400 missing Upgrade/Connection tokens or a
 * missing or malformed Sec-WebSocket-Key, 426 Sec-WebSocket-Version other than 13. Checked in
 * that order (method first); HTTP/1.0 is a 400, and a missing version is a 426 (the answer
 * then names version 13). */
int http_upgrade_check(const struct http_request *req);
/* Why http_upgrade_check refuses req, one line of plain text (a static string), or NULL when
 * it accepts it. */
const char *http_upgrade_reason(const struct http_request *req);

/* Routes a WebSocket path: "/", "/ws" and "/ws/{session_id}" are accepted (returns 0 and sets
 * *session_id, empty unless given); anything else returns 404. A session id is 1-128 of
 * [A-Za-z0-9._~-], taken as is (no percent-decoding). session_id may be NULL. */
int http_route_ws(struct span path, struct span *session_id);

/* Computes Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)). out gets WS_ACCEPT_LEN
 * characters and a NUL; for a key over 256 bytes (never a valid one) out is "". */
void ws_accept_compute(struct span key, char out[WS_ACCEPT_LEN + 1]);

/* Writes "101 Switching Protocols" for key; protocol, when non-empty, is echoed as
 * Sec-WebSocket-Protocol. Returns bytes written, 0 if cap is too small or protocol holds a
 * control character. Nothing is written past cap; no NUL is added. */
size_t http_write_101(char *out, size_t cap, struct span key, struct span protocol);

/* Writes a complete error response with a text/plain body (body may be NULL: the reason phrase
 * and a newline are used) and Connection: close. A 426 carries Upgrade: websocket and
 * Sec-WebSocket-Version: 13, a 405 Allow: GET. Returns bytes written, 0 if cap is too small
 * or status is outside 100-999. */
size_t http_write_error(char *out, size_t cap, int status, const char *body);

/* Writes a complete response with the given status, content type (NULL: none) and body,
 * Connection: keep-alive or close. 1xx and 204 get neither Content-Length nor body. Returns
 * bytes written, 0 if cap is too small, status is outside 100-999 or content_type holds a
 * control character. */
size_t http_write_response(char *out, size_t cap, int status, const char *content_type,
                           const char *body, size_t body_len, bool keep_alive);

/* Writes a response head: status line, Content-Type (NULL: none), Content-Length body_len,
 * Connection keep-alive or close, and one optional extra header (hname NULL: none; 405's Allow,
 * 401's WWW-Authenticate, 429's Retry-After), then the blank line; the caller appends the body.
 * Returns bytes written, 0 if cap is too small, status is outside 100-999, or content_type,
 * hname or hvalue hold a control character (or hname a non-token character). */
size_t http_write_head(char *out, size_t cap, int status, const char *content_type, size_t body_len,
                       bool keep_alive, const char *hname, const char *hvalue);

/* Finds key in an application/x-www-form-urlencoded query ("a=1&b=2"): sets *value (raw, still
 * percent-encoded; empty for "key" or "key=") and returns true for the first match. */
bool http_query_get(struct span query, const char *key, struct span *value);

/* Percent-decodes in (a path segment or query value; '+' is a space in a query value when
 * plus_is_space) into out. Returns the decoded length, or -1 on a bad escape, a decoded NUL,
 * or when it does not fit cap. */
int http_pct_decode(struct span in, char *out, size_t cap, bool plus_is_space);

/* The reason phrase for a status ("Bad Request"); "Unknown" for others. */
const char *http_status_reason(int status);

/* ---- client side (load generator, tests) ---- */

struct http_response {
    int status;
    int minor_version;
    struct span reason;
    struct span ws_accept;   /* Sec-WebSocket-Accept */
    struct span ws_protocol; /* Sec-WebSocket-Protocol */
    bool conn_upgrade;
    bool upgrade_websocket;
    int64_t content_length; /* -1 when absent */
};

/* Parses a response head; same return convention as http_request_parse (status 400 on error
 * means "malformed response", 431 "head over max_head"); on success res->status is the
 * response's status code. A repeated Sec-WebSocket-Accept or -Protocol is malformed. */
int http_response_parse(const char *buf, size_t len, size_t max_head, struct http_response *res);

/* Writes a WebSocket upgrade request for host and path (empty: "/") with key (WS_KEY_LEN
 * characters). Returns bytes written, 0 if cap is too small, key has another length, or host,
 * path or key hold a space or control character. */
size_t http_write_upgrade_request(char *out, size_t cap, struct span host, struct span path,
                                  struct span key);

/* True when accept is the right Sec-WebSocket-Accept for key. */
bool ws_accept_matches(struct span key, struct span accept);

#endif
