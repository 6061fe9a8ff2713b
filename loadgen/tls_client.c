/* tls_client.c - client TLS over memory BIOs (tls_client.h). */
#include "tls_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* The first queued OpenSSL error as text (its reason, the part a user can read), or fallback. */
static void ssl_err(char *err, size_t errlen, const char *fallback)
{
    unsigned long e = ERR_get_error();
    const char *why = e ? ERR_reason_error_string(e) : NULL;
    if (why && ERR_GET_REASON(e) == SSL_R_WRONG_VERSION_NUMBER)
        snprintf(err, errlen, "the server did not answer in TLS (%s): a ws:// port?", why);
    else if (why)
        snprintf(err, errlen, "%s", why);
    else if (e)
        snprintf(err, errlen, "%s (OpenSSL error %lx)", fallback, e);
    else
        snprintf(err, errlen, "%s", fallback);
    ERR_clear_error();
}

SSL_CTX *tlsc_ctx_new(const char *ca_file, bool insecure, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_err(err, errlen, "cannot create a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Idle connections hold no record buffers: 10k subscribers must not cost 10k x 34 KiB. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file && *ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            char why[256];
            ssl_err(why, sizeof(why), "not a PEM certificate");
            snprintf(err, errlen, "cannot load CA file %s: %s", ca_file, why);
            SSL_CTX_free(ctx);
            return NULL;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        ssl_err(err, errlen, "cannot load the system's trusted CAs");
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int tlsc_start(struct tlsc *t, SSL_CTX *ctx, const char *host, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    ERR_clear_error();
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        ssl_err(err, errlen, "out of memory");
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        memset(t, 0, sizeof(*t));
        return -1;
    }
    /* An empty rbio means "more to come", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns them from here */
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (!is_ip && SSL_set_tlsext_host_name(t->ssl, host) != 1) {
        ssl_err(err, errlen, "bad host name for SNI");
        return -1;
    }
    if (SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
        int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) : SSL_set1_host(t->ssl, host);
        if (ok != 1) {
            ssl_err(err, errlen, "cannot set the host name to verify");
            return -1;
        }
    }
    return 0;
}

int tlsc_feed(struct tlsc *t, const void *data, size_t len)
{
    while (len) {
        int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
        int n = BIO_write(t->rbio, data, chunk);
        if (n <= 0)
            return -1;
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    return 0;
}

/* Why an SSL call that returned r failed, in err. */
static void explain(struct tlsc *t, int r, char *err, size_t errlen)
{
    int e = SSL_get_error(t->ssl, r);
    long vr = SSL_get_verify_result(t->ssl);
    if (vr != X509_V_OK) {
        snprintf(err, errlen, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
        ERR_clear_error();
        return;
    }
    if (e == SSL_ERROR_SYSCALL || (e == SSL_ERROR_SSL && ERR_peek_error() == 0)) {
        /* With memory BIOs this is an EOF inside the protocol: our caller saw none, so it is
         * OpenSSL's own view of a truncated stream. */
        snprintf(err, errlen, "the TLS stream ended unexpectedly");
        ERR_clear_error();
        return;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(err, errlen, "the server closed the TLS session");
        return;
    }
    ssl_err(err, errlen, "TLS error");
}

int tlsc_handshake(struct tlsc *t, char *err, size_t errlen)
{
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return 1;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    explain(t, r, err, errlen);
    return -1;
}

ssize_t tlsc_read(struct tlsc *t, void *buf, size_t cap, char *err, size_t errlen)
{
    if (cap > (1u << 30))
        cap = 1u << 30;
    ERR_clear_error();
    int r = SSL_read(t->ssl, buf, (int)cap);
    if (r > 0)
        return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN)
        return TLSC_EOF;
    explain(t, r, err, errlen);
    return -1;
}

int tlsc_write(struct tlsc *t, const void *data, size_t len, char *err, size_t errlen)
{
    while (len) {
        int chunk = len > (1u << 30) ? 1 << 30 : (int)len;
        ERR_clear_error();
        int n = SSL_write(t->ssl, data, chunk);
        if (n <= 0) {
            /* A memory wbio takes everything: any refusal is a real failure. */
            explain(t, n, err, errlen);
            return -1;
        }
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    return 0;
}

size_t tlsc_out_pending(const struct tlsc *t)
{
    return t->wbio ? BIO_ctrl_pending(t->wbio) : 0;
}

size_t tlsc_out_take(struct tlsc *t, void *buf, size_t cap)
{
    if (cap > (1u << 30))
        cap = 1u << 30;
    int n = cap ? BIO_read(t->wbio, buf, (int)cap) : 0;
    return n > 0 ? (size_t)n : 0;
}

void tlsc_free(struct tlsc *t)
{
    SSL_free(t->ssl); /* and both BIOs: tlsc_start attached them */
    memset(t, 0, sizeof(*t));
}

void tlsc_release(struct tlsc **tp)
{
    if (!*tp)
        return;
    tlsc_free(*tp);
    free(*tp);
    *tp = NULL;
}
