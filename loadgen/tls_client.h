/* tls_client.h - the client side of TLS for ringcast-load and ringcast-cli (wss://).
 *
 * OpenSSL 3 through two memory BIOs: the caller owns the socket and moves the bytes. Ciphertext
 * that arrived goes in with tlsc_feed; tlsc_handshake and tlsc_read turn it into progress and
 * plaintext; tlsc_write turns plaintext into ciphertext; what OpenSSL wants sent (handshake
 * messages, records, alerts) is taken with tlsc_out_take after any call. No call ever touches a
 * socket or blocks, so the load generator's io_uring loop drives a thousand handshakes at once
 * and the CLI's blocking loop drives one, through the same code.
 *
 * Verification: the server's chain against --ca FILE (or the system's trust store when no file
 * is given), and its name against the URL's host (a DNS name, or an IP literal against the
 * certificate's IP addresses); SNI carries a host name, never an IP literal (RFC 6066 3).
 * insecure skips both checks (the handshake still fails on anything but a certificate problem).
 * TLS 1.2 at least, ALPN "http/1.1".
 *
 * Errors: functions that can fail leave one line a user can act on in err ("certificate verify
 * failed: unable to get local issuer certificate", "the server closed the connection during the
 * TLS handshake"); the caller prefixes where it happened.
 */
#ifndef RINGCAST_LOADGEN_TLS_CLIENT_H
#define RINGCAST_LOADGEN_TLS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

/* tlsc_read's "the server ended the TLS session" (close_notify). */
#define TLSC_EOF (-2)

struct tlsc {
    SSL *ssl;
    BIO *rbio; /* ciphertext in (tlsc_feed) */
    BIO *wbio; /* ciphertext out (tlsc_out_take) */
};

/* A client context: ca_file (PEM, NULL: the system's trust store) and insecure (no chain or
 * name check). NULL with err filled when the file cannot be loaded. Shared by any number of
 * connections and threads; SSL_CTX_free when done (connections hold their own reference). */
SSL_CTX *tlsc_ctx_new(const char *ca_file, bool insecure, char *err, size_t errlen);

/* Sets t up for a handshake with host (the URL's host: SNI and the name checked). 0, or -1
 * with err filled. tlsc_free after either result. */
int tlsc_start(struct tlsc *t, SSL_CTX *ctx, const char *host, char *err, size_t errlen);

/* Hands len bytes of ciphertext received from the socket to OpenSSL. 0, or -1 (out of
 * memory). */
int tlsc_feed(struct tlsc *t, const void *data, size_t len);

/* Advances the handshake with what was fed: 1 done, 0 needs more bytes from the server (send
 * tlsc_out_take's bytes first), -1 failed (err says why; send what tlsc_out_take still has: the
 * alert, then close). */
int tlsc_handshake(struct tlsc *t, char *err, size_t errlen);

static inline bool tlsc_done(const struct tlsc *t)
{
    return SSL_is_init_finished(t->ssl);
}

/* Plaintext from what was fed, up to cap bytes: >0 bytes, 0 when it needs more ciphertext,
 * TLSC_EOF when the server sent close_notify, -1 on an error (err says why). Call until it
 * returns 0: nothing stays buffered inside OpenSSL beyond what a further call would return. */
ssize_t tlsc_read(struct tlsc *t, void *buf, size_t cap, char *err, size_t errlen);

/* Encrypts all len bytes (after the handshake). 0, or -1 with err filled. */
int tlsc_write(struct tlsc *t, const void *data, size_t len, char *err, size_t errlen);

/* Ciphertext waiting to be sent, and taking up to cap bytes of it (returns how many). */
size_t tlsc_out_pending(const struct tlsc *t);
size_t tlsc_out_take(struct tlsc *t, void *buf, size_t cap);

/* Frees the session; safe on a zeroed or already freed t. */
void tlsc_free(struct tlsc *t);

/* For a session the caller allocated (calloc): tlsc_free, free it and set *tp to NULL. Safe on a
 * NULL *tp. */
void tlsc_release(struct tlsc **tp);

#endif
