/* tls.h - TLS for the listening port (wss://, https://): OpenSSL 3 over memory BIOs.
 *
 * The io_uring loop stays the only thing that touches the socket. Ciphertext a recv brings is
 * fed into the session's read BIO (tls_feed) and plaintext comes out of tls_read into the same
 * parsing path a cleartext connection uses (conn.c). On the way out, the send path (sendq.c)
 * takes the connection's queued plaintext frames, hands them to tls_write in order and lets go
 * of them; what the session produced (records, handshake messages, alerts) is written by our
 * own write BIO straight into a per-session ciphertext buffer that the loop sends like any other
 * bytes (a second buffer collects what the session writes while a send is in flight). No blocking
 * SSL call, no extra thread; kTLS is not used (not every kernel offers it).
 *
 * Broadcast frames stay encoded once and shared (frame.h): only the encryption is per
 * connection, and a cleartext connection (tls == NULL) pays one branch for TLS existing.
 *
 * Contexts: the main thread builds the SSL_CTX at startup (tls_init) and again on SIGHUP
 * (tls_reload); workers take the current one for each new connection (tls_session_new). A
 * session holds a reference to the context it started with, so a reload never touches an
 * existing connection; a context replaced by a reload is freed at exit (tls_shutdown), because
 * a worker may be between reading the pointer and taking its reference when the swap happens.
 *
 * Policy: TLS 1.2 and 1.3 only; for 1.2 only ECDHE key exchange with AEAD ciphers
 * (AES-GCM, ChaCha20-Poly1305); TLS 1.3's default suites; no renegotiation, no compression;
 * ALPN "http/1.1" (a client offering ALPN without it is refused); session tickets on.
 */
#ifndef RINGCAST_ENGINE_TLS_H
#define RINGCAST_ENGINE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rc_config;
struct tls_session;
typedef struct ssl_ctx_st SSL_CTX;

/* Plaintext encrypted per send at most: a bounded batch, so one busy connection cannot grow
 * its ciphertext buffer past about this (plus record overhead). */
#define TLS_SEND_BATCH (64 * 1024)

/* tls_read results other than a plaintext length. */
#define TLS_AGAIN 0  /* needs more ciphertext */
#define TLS_EOF   -1 /* the peer's close_notify */
#define TLS_FAIL  -2 /* handshake failure or a broken record: tls_error says why */

/* Builds the context from cfg's tls-cert and tls-key (nothing when they are unset). Returns 0,
 * or -1 after printing why to stderr. Main thread, at startup. */
int tls_init(const struct rc_config *cfg);
/* True when the port speaks TLS. */
bool tls_enabled(void);
/* SIGHUP: builds a new context from the same files; on success new connections use it, on
 * failure the current one stays and the log says why. Main thread. */
void tls_reload(const struct rc_config *cfg);
/* Frees every context (exit, after the workers are gone). */
void tls_shutdown(void);

/* A server context from PEM files with the policy above, or NULL with why in err. The caller
 * owns the one reference (SSL_CTX_free). */
SSL_CTX *tls_ctx_new(const char *cert, const char *key, char *err, size_t cap);

/* A server session on ctx (NULL: the current context), or NULL when memory is short. The
 * caller owns it (tls_session_free). */
struct tls_session *tls_session_new(SSL_CTX *ctx);
void tls_session_free(struct tls_session *s);

/* Takes ciphertext received from the peer (copied into the read BIO). False when memory is
 * short. */
bool tls_feed(struct tls_session *s, const uint8_t *in, size_t len);
/* Advances the handshake and decrypts: returns plaintext bytes written to out (> 0),
 * TLS_AGAIN, TLS_EOF or TLS_FAIL. Output the session produced (handshake replies, alerts,
 * tickets) waits in it: tls_out_pending says so. */
int tls_read(struct tls_session *s, uint8_t *out, size_t cap);
/* Why the session failed (an OpenSSL reason, or ours), for a log line; never NULL. */
const char *tls_error(const struct tls_session *s);
/* True once the handshake is done. */
bool tls_established(const struct tls_session *s);
/* The negotiated protocol version ("TLSv1.3"), for a log line. */
const char *tls_version(const struct tls_session *s);

/* Starts a batch of about plain bytes: the ciphertext buffer is sized for it at once. False
 * when the session is broken or memory is short. */
bool tls_write_begin(struct tls_session *s, size_t plain);
/* Encrypts len plaintext bytes (coalesced: small writes share records until tls_write_end).
 * Returns false when the session is broken. Only after tls_established. */
bool tls_write(struct tls_session *s, const uint8_t *p, size_t len);
/* Ends a batch of tls_write: the last partial record is sealed. False when broken. */
bool tls_write_end(struct tls_session *s);
/* Queues our close_notify (once); a no-op before the handshake is done. */
void tls_close_notify(struct tls_session *s);
/* True once tls_close_notify has queued the alert. */
bool tls_close_notify_sent(const struct tls_session *s);

/* Ciphertext not yet handed to the kernel, in the buffer and still in the session. */
size_t tls_out_pending(const struct tls_session *s);
/* The ciphertext to send next (*len bytes; NULL when none): the unsent rest of the last send,
 * else everything the session wrote since. Only while no send from it is in flight. */
const uint8_t *tls_out_take(struct tls_session *s, size_t *len);
/* n bytes of what tls_out_take gave went out; a buffer sent whole is kept for the next batch. */
void tls_out_sent(struct tls_session *s, size_t n);
/* The connection has nothing queued or pending: frees the buffers kept for reuse, so an idle
 * session holds no ciphertext buffer. */
void tls_out_idle(struct tls_session *s);

#endif
