/* wsc.h - a small blocking WebSocket client for ringcast-cli, built on proto/.
 *
 * One connection, one thread, poll() for timeouts and for SIGINT: what a terminal tool needs, and
 * nothing the engine's or the load generator's rings would add. The framing and the handshake are
 * proto/'s (http_write_upgrade_request, http_response_parse, ws_frame_parse), so the CLI speaks
 * exactly what the load generator and the engine's tests speak.
 *
 * Errors: every function that can fail returns a negative enum wsc_status and leaves one line of
 * plain text in c->err saying what happened, in words a user can act on ("connect to
 * 127.0.0.1:8765: Connection refused", "upgrade refused: HTTP 404 Not Found: ..."). A CLI prints
 * that line; it has no use for -errno.
 */
#ifndef RINGCAST_CLI_WSC_H
#define RINGCAST_CLI_WSC_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loadgen/tls_client.h"
#include "proto/span.h"
#include "proto/ws_frame.h"

/* Largest message accepted from the server (sum of fragments); the engine's own limit is
 * max_message_bytes (64 KiB by default), so this only guards the client's memory. */
#define WSC_MAX_MESSAGE (16u << 20)
/* How long a close handshake may take before the socket is just closed, in ms. */
#define WSC_CLOSE_WAIT_MS 2000

enum wsc_status {
    WSC_OK = 0,
    WSC_ERR = -1,     /* c->err says why; the connection is unusable */
    WSC_CLOSED = -2,  /* the server sent a close frame: c->close_code, c->close_reason */
    WSC_TIMEOUT = -3, /* nothing arrived in time; the connection is still usable */
    WSC_INTR = -4,    /* a signal the caller unblocked in sigmask arrived */
};

/* A parsed ws:// or wss:// URL. host has no brackets (an IPv6 literal is bare); host_header is what
 * the Host header carries ("[::1]:8765"); target is path plus query, "/" when the URL has none. */
struct wsc_url {
    char host[256];
    char port[8];
    char host_header[272];
    char target[2048];
    bool tls; /* wss:// */
};

/* wss:// options: ca_file (PEM; NULL: the system's trusted CAs), insecure (no certificate or
 * name check). */
struct wsc_tls {
    const char *ca_file;
    bool insecure;
};

struct wsc {
    int fd;
    struct tlsc *tls; /* wss://: the session, driven over fd by this file's loop */
    bool tls_eof;     /* the server's close_notify came (after the plaintext in rbuf) */
    struct ws_parser wp;
    uint8_t *rbuf; /* bytes received, [roff, rlen) not parsed yet */
    size_t roff, rlen, rcap;
    uint8_t *msg; /* the message being reassembled from fragments */
    size_t mlen, mcap;
    bool close_sent;
    uint16_t close_code; /* after WSC_CLOSED: the server's code (1005: none given) */
    char close_reason[WS_MAX_CONTROL_PAYLOAD + 1];
    char err[768];
};

/* Parses url ("ws[s]://host[:port][/path][?query]", port 80, or 443 for wss, by default).
 * Returns 0, or -1 with a reason in *err (a static string). */
int wsc_url_parse(const char *url, struct wsc_url *u, const char **err);

/* Resolves u->host, connects to the first address that answers, does the TLS handshake for a
 * wss:// URL (tls: its options; NULL means the defaults) and the opening handshake (with
 * "Authorization: Bearer token" when token is not NULL), all within timeout_ms. Returns WSC_OK
 * with the connection open, or WSC_ERR: c->err names the refused connection, the failed lookup,
 * the failed TLS handshake (a certificate that does not verify, say), or the HTTP status and
 * body of a refused upgrade. c needs no setup before; call wsc_free after either result. */
int wsc_connect(struct wsc *c, const struct wsc_url *u, const char *token,
                const struct wsc_tls *tls, int timeout_ms);

/* Sends one text message (a single masked frame). Returns WSC_OK or WSC_ERR. */
int wsc_send_text(struct wsc *c, const char *s, size_t len);

/* Waits up to timeout_ms (-1: forever) for the next whole text message, answering pings on the
 * way. Returns WSC_OK with *msg pointing at the message (valid until the next call), WSC_CLOSED
 * when the server closed (its close frame is echoed), WSC_TIMEOUT, WSC_INTR when a signal
 * arrived while sigmask (NULL: the current mask) was in force, or WSC_ERR. */
int wsc_recv(struct wsc *c, int timeout_ms, const sigset_t *sigmask, struct span *msg);

/* Starts the close handshake with code and reason and waits up to WSC_CLOSE_WAIT_MS for the
 * server's close frame, dropping any messages still in flight. Returns WSC_OK when the server
 * answered, else WSC_ERR or WSC_TIMEOUT. The socket stays open until wsc_free. */
int wsc_close(struct wsc *c, uint16_t code, const char *reason);

/* Closes the socket and frees the buffers. Safe on a connection that never connected. */
void wsc_free(struct wsc *c);

#endif
