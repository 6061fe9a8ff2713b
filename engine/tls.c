/* tls.c - OpenSSL 3 sessions over memory BIOs for the io_uring loop (see tls.h). */
#include "tls.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "config.h"
#include "log.h"

/* TLS 1.2 suites: ECDHE (forward secrecy) with an AEAD only, as Mozilla's "intermediate"
 * profile without finite-field DHE. TLS 1.3 keeps OpenSSL's default suites (all AEAD). */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
/* Free heap kept per arena before glibc trims it (see tls_init). */
#define TLS_TRIM_THRESHOLD (16 * 1024 * 1024)
/* Plaintext coalesced into one record: TLS's maximum record payload. */
#define STAGE_BYTES 16384

/* Ciphertext to the peer, in two buffers: `send` is handed to the kernel (out[off..len), never
 * moved while a send is in flight), `next` is where the session writes meanwhile (our write
 * BIO appends to it directly: no copy through a memory BIO). */
struct obuf {
    uint8_t *p;
    uint32_t len, cap;
};

struct tls_session {
    SSL *ssl;
    BIO *rbio; /* ciphertext from the peer: a memory BIO, we write, OpenSSL reads */
    const char *err;
    bool notify_sent;
    struct obuf send, next;
    struct obuf spare; /* a sent buffer kept for the next batch while the connection is busy */
    uint32_t off;      /* bytes of send already sent */
};

/* The context new connections use; replaced ones wait in `retired` until exit. */
static _Atomic(SSL_CTX *) current;
struct retired {
    SSL_CTX *ctx;
    struct retired *next;
};
static struct retired *retired;
/* One staging buffer per worker thread: a send batch coalesces small frames into full records,
 * and one connection is encrypted at a time. */
static __thread uint8_t stage[STAGE_BYTES];
static __thread size_t stage_len;

/* ---- the write BIO: appends to the session's `next` buffer ---- */

static BIO_METHOD *out_method;
static pthread_once_t out_once = PTHREAD_ONCE_INIT;

/* A full send batch's ciphertext: records of TLS_SEND_BATCH bytes of plaintext with headers
 * and tags, and a few more records of handshake or alert. Below glibc's mmap threshold, so a
 * buffer comes from the heap, not from fresh pages each time. */
#define OBUF_BATCH_CAP (TLS_SEND_BATCH + TLS_SEND_BATCH / 64 + 4096)

/* Room for need bytes in b (doubling up to a batch, so a batch costs few reallocs). */
static bool obuf_reserve(struct obuf *b, size_t need)
{
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? 2 * (size_t)b->cap : 4096;
    if (cap > OBUF_BATCH_CAP)
        cap = OBUF_BATCH_CAP;
    if (cap < need)
        cap = need;
    if (cap > UINT32_MAX)
        return false;
    uint8_t *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = (uint32_t)cap;
    return true;
}

static int out_write(BIO *bio, const char *data, int len)
{
    struct tls_session *s = BIO_get_data(bio);
    if (len <= 0)
        return 0;
    if (!obuf_reserve(&s->next, (size_t)s->next.len + (size_t)len))
        return -1; /* out of memory: the session fails, this connection is closed */
    memcpy(s->next.p + s->next.len, data, (size_t)len);
    s->next.len += (uint32_t)len;
    return len;
}

static long out_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)bio;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* everything written is already "flushed" */
}

static int out_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static void out_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ringcast out");
    if (m && BIO_meth_set_write(m, out_write) && BIO_meth_set_ctrl(m, out_ctrl) &&
        BIO_meth_set_create(m, out_create))
        out_method = m;
    else
        BIO_meth_free(m);
}

/* ---- contexts ---- */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no_application_protocol */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The reason of the oldest queued OpenSSL error (a static string), and the queue cleared. */
static const char *ossl_reason(const char *fallback)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : fallback;
}

SSL_CTX *tls_ctx_new(const char *cert, const char *key, char *err, size_t cap)
{
    pthread_once(&out_once, out_method_init);
    if (!out_method) {
        snprintf(err, cap, "cannot create the TLS output method: out of memory");
        return NULL;
    }
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, cap, "cannot create a TLS context: %s", ossl_reason("out of memory"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* An idle connection keeps no record buffers; they come back with the next record. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
        snprintf(err, cap, "cipher list refused: %s", ossl_reason("?"));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, cap, "tls-cert %s: %s", cert, ossl_reason("cannot load"));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, cap, "tls-key %s: %s", key, ossl_reason("cannot load"));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, cap, "tls-key %s does not match tls-cert %s: %s", key, cert,
                 ossl_reason("mismatch"));
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* "subject, valid until DATE" of ctx's certificate, for the startup and reload lines. */
static void describe(SSL_CTX *ctx, char *out, size_t cap)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    char subj[256] = "?", until[64] = "?";
    if (x) {
        X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof(subj));
        BIO *b = BIO_new(BIO_s_mem());
        if (b && ASN1_TIME_print(b, X509_get0_notAfter(x)) == 1) {
            int n = BIO_read(b, until, sizeof(until) - 1);
            until[n > 0 ? n : 0] = 0;
        }
        BIO_free(b);
    }
    snprintf(out, cap, "%s, valid until %s", subj, until);
}

int tls_init(const struct rc_config *cfg)
{
    if (!cfg->tls_cert[0])
        return 0;
    char err[512], what[400];
    SSL_CTX *ctx = tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
    if (!ctx) {
        fprintf(stderr, "ringcast: %s\n", err);
        return -1;
    }
    atomic_store(&current, ctx);
    /* Each TLS send allocates its ciphertext buffer (up to about 70 KiB) and frees it when the
     * connection goes idle. glibc gives a worker arena's free top back to the kernel above
     * 128 KiB by default, so a busy worker faulted fresh pages in for every batch; keep up to
     * this much instead (the periodic malloc_trim after bursts still returns it, worker.c). */
    mallopt(M_TRIM_THRESHOLD, TLS_TRIM_THRESHOLD);
    describe(ctx, what, sizeof(what));
    log_info("TLS: serving %s (%s)", cfg->tls_cert, what);
    return 0;
}

bool tls_enabled(void)
{
    return atomic_load_explicit(&current, memory_order_relaxed) != NULL;
}

void tls_reload(const struct rc_config *cfg)
{
    if (!tls_enabled())
        return;
    char err[512], what[400];
    SSL_CTX *ctx = tls_ctx_new(cfg->tls_cert, cfg->tls_key, err, sizeof(err));
    if (!ctx) {
        log_error("reload: TLS: %s; keeping the certificate in use", err);
        return;
    }
    struct retired *r = malloc(sizeof(*r));
    if (!r) {
        SSL_CTX_free(ctx);
        log_error("reload: TLS: out of memory; keeping the certificate in use");
        return;
    }
    r->ctx = atomic_exchange(&current, ctx);
    r->next = retired;
    retired = r;
    describe(ctx, what, sizeof(what));
    log_info("reload: TLS: new connections get %s (%s); open ones keep theirs", cfg->tls_cert,
             what);
}

void tls_shutdown(void)
{
    SSL_CTX_free(atomic_exchange(&current, NULL));
    while (retired) {
        struct retired *r = retired;
        retired = r->next;
        SSL_CTX_free(r->ctx);
        free(r);
    }
}

/* ---- sessions ---- */

struct tls_session *tls_session_new(SSL_CTX *ctx)
{
    if (!ctx)
        ctx = atomic_load_explicit(&current, memory_order_acquire);
    struct tls_session *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->ssl = SSL_new(ctx); /* takes its own reference on ctx */
    s->rbio = BIO_new(BIO_s_mem());
    BIO *wbio = BIO_new(out_method);
    if (!s->ssl || !s->rbio || !wbio) {
        BIO_free(s->rbio);
        BIO_free(wbio);
        SSL_free(s->ssl);
        free(s);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO means "wait for more", not end of file. */
    BIO_set_mem_eof_return(s->rbio, -1);
    BIO_set_data(wbio, s);
    SSL_set_bio(s->ssl, s->rbio, wbio); /* the session owns both now */
    SSL_set_accept_state(s->ssl);
    return s;
}

void tls_session_free(struct tls_session *s)
{
    if (!s)
        return;
    SSL_free(s->ssl);
    free(s->send.p);
    free(s->next.p);
    free(s->spare.p);
    free(s);
}

bool tls_feed(struct tls_session *s, const uint8_t *in, size_t len)
{
    return len == 0 || BIO_write(s->rbio, in, (int)len) == (int)len;
}

/* Records the reason a call failed; returns TLS_FAIL. */
static int failed(struct tls_session *s, int ret)
{
    int e = SSL_get_error(s->ssl, ret);
    if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_SSL)
        s->err = ossl_reason(e == SSL_ERROR_SYSCALL ? "unexpected end of stream" : "TLS error");
    else
        s->err = "TLS error";
    ERR_clear_error();
    return TLS_FAIL;
}

int tls_read(struct tls_session *s, uint8_t *out, size_t cap)
{
    if (s->err)
        return TLS_FAIL;
    ERR_clear_error();
    int n = SSL_read(s->ssl, out, (int)(cap > INT32_MAX ? INT32_MAX : cap));
    if (n > 0)
        return n;
    switch (SSL_get_error(s->ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: return TLS_AGAIN; /* a memory BIO never refuses a write */
    case SSL_ERROR_ZERO_RETURN: return TLS_EOF;
    default: return failed(s, n);
    }
}

const char *tls_error(const struct tls_session *s)
{
    return s->err ? s->err : "no error";
}

bool tls_established(const struct tls_session *s)
{
    return SSL_is_init_finished(s->ssl);
}

const char *tls_version(const struct tls_session *s)
{
    return SSL_get_version(s->ssl);
}

/* One record's worth of plaintext into the session (a memory BIO never refuses it). */
static bool seal(struct tls_session *s, const uint8_t *p, size_t len)
{
    ERR_clear_error();
    int n = SSL_write(s->ssl, p, (int)len);
    if (n <= 0) {
        failed(s, n);
        return false;
    }
    return true;
}

static bool write_stage(struct tls_session *s)
{
    size_t n = stage_len;
    stage_len = 0;
    return !n || seal(s, stage, n);
}

/* Room in `next` for the records of plain bytes of plaintext, headers and tags included. */
static bool reserve_plain(struct tls_session *s, size_t plain)
{
    if (obuf_reserve(&s->next, s->next.len + plain + 64 * (plain / STAGE_BYTES + 1)))
        return true;
    s->err = "out of memory for ciphertext";
    return false;
}

bool tls_write_begin(struct tls_session *s, size_t plain)
{
    return !s->err && reserve_plain(s, plain);
}

bool tls_write(struct tls_session *s, const uint8_t *p, size_t len)
{
    if (s->err || !reserve_plain(s, stage_len + len))
        return false;
    while (len) {
        if (!stage_len && len >= STAGE_BYTES) { /* a full record: no need to stage it */
            if (!seal(s, p, STAGE_BYTES))
                return false;
            p += STAGE_BYTES;
            len -= STAGE_BYTES;
            continue;
        }
        size_t n = STAGE_BYTES - stage_len;
        if (n > len)
            n = len;
        memcpy(stage + stage_len, p, n);
        stage_len += n;
        p += n;
        len -= n;
        if (stage_len == STAGE_BYTES && !write_stage(s))
            return false;
    }
    return true;
}

bool tls_write_end(struct tls_session *s)
{
    if (s->err) {
        stage_len = 0;
        return false;
    }
    return write_stage(s);
}

void tls_close_notify(struct tls_session *s)
{
    if (s->notify_sent || s->err || !SSL_is_init_finished(s->ssl))
        return;
    s->notify_sent = true;
    ERR_clear_error();
    SSL_shutdown(s->ssl); /* writes the alert into the write BIO; the answer is not awaited */
    ERR_clear_error();
}

bool tls_close_notify_sent(const struct tls_session *s)
{
    return s->notify_sent;
}

/* ---- output ---- */

size_t tls_out_pending(const struct tls_session *s)
{
    return (size_t)(s->send.len - s->off) + s->next.len;
}

const uint8_t *tls_out_take(struct tls_session *s, size_t *len)
{
    if (s->off == s->send.len && s->next.len) { /* the last send is done: send what came since */
        struct obuf done = s->send;
        s->send = s->next;
        s->next = done.cap ? done : s->spare; /* an empty buffer to write into, if one is kept */
        s->next.len = 0;
        if (done.cap)
            free(s->spare.p);
        s->spare = (struct obuf){NULL, 0, 0};
        s->off = 0;
    }
    *len = s->send.len - s->off;
    return *len ? s->send.p + s->off : NULL;
}

void tls_out_sent(struct tls_session *s, size_t n)
{
    s->off += (uint32_t)n;
    if (s->off == s->send.len) { /* kept for the next batch until the connection goes idle */
        free(s->spare.p);
        s->spare = s->send;
        s->spare.len = 0;
        s->send = (struct obuf){NULL, 0, 0};
        s->off = 0;
    }
}

void tls_out_idle(struct tls_session *s)
{
    free(s->spare.p);
    s->spare = (struct obuf){NULL, 0, 0};
    if (!s->next.len) {
        free(s->next.p);
        s->next = (struct obuf){NULL, 0, 0};
    }
}
