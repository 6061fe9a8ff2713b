/* fuzz_tls.c - the TLS server path (engine/tls.c) over arbitrary client bytes.
 *
 * Each input is what a client sends, cut into recv-sized pieces (the first byte sets the piece
 * size): a fresh server session of the engine's context (its policy: TLS 1.2+, AEAD suites,
 * ALPN) takes every piece through tls_feed and tls_read, as conn.c does, and its output is
 * drained as sendq.c does. Beyond "no crash, no leak": tls_read's result is a length within
 * the buffer or one of its codes, a failed session stays failed, and the pending output count
 * matches what tls_out_take hands out. The key and certificate are made once per process.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "engine/tls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_tls: invariant broken: %s (line %d)\n", #cond, __LINE__);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static SSL_CTX *ctx;

/* A self-signed P-256 certificate, written to temporary PEM files for tls_ctx_new. */
static SSL_CTX *make_ctx(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    REQUIRE(key && x);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, n);
    REQUIRE(X509_sign(x, key, EVP_sha256()) > 0);
    char cert[] = "/tmp/fuzz_tls_cert.XXXXXX", keyf[] = "/tmp/fuzz_tls_key.XXXXXX";
    int cfd = mkstemp(cert), kfd = mkstemp(keyf);
    REQUIRE(cfd >= 0 && kfd >= 0);
    FILE *cf = fdopen(cfd, "w"), *kf = fdopen(kfd, "w");
    REQUIRE(cf && kf && PEM_write_X509(cf, x) && PEM_write_PrivateKey(kf, key, 0, 0, 0, 0, 0));
    fclose(cf);
    fclose(kf);
    char err[512];
    SSL_CTX *c = tls_ctx_new(cert, keyf, err, sizeof(err));
    if (!c)
        fprintf(stderr, "fuzz_tls: %s\n", err);
    REQUIRE(c);
    unlink(cert);
    unlink(keyf);
    X509_free(x);
    EVP_PKEY_free(key);
    return c;
}

static void drain(struct tls_session *s)
{
    size_t pending = tls_out_pending(s), len;
    const uint8_t *p = tls_out_take(s, &len);
    REQUIRE(len == pending && (len == 0) == (p == NULL));
    if (len)
        tls_out_sent(s, len);
    REQUIRE(tls_out_pending(s) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t plain[16384];
    if (!ctx)
        ctx = make_ctx();
    if (size < 1)
        return 0;
    size_t piece = (size_t)data[0] * 8 + 1;
    data++;
    size--;
    struct tls_session *s = tls_session_new(ctx);
    REQUIRE(s);
    bool failed = false;
    for (size_t off = 0; off < size;) {
        size_t n = size - off < piece ? size - off : piece;
        REQUIRE(tls_feed(s, data + off, n));
        off += n;
        int r;
        while ((r = tls_read(s, plain, sizeof(plain))) > 0)
            REQUIRE((size_t)r <= sizeof(plain));
        REQUIRE(r == TLS_AGAIN || r == TLS_EOF || r == TLS_FAIL);
        REQUIRE(!failed || r == TLS_FAIL);
        if (r == TLS_FAIL) {
            failed = true;
            REQUIRE(strcmp(tls_error(s), "no error") != 0);
        }
        drain(s);
    }
    if (tls_established(s) && !failed) { /* the send path as well */
        REQUIRE(tls_write(s, (const uint8_t *)"\x81\x02hi", 4) && tls_write_end(s));
        tls_close_notify(s);
        REQUIRE(tls_close_notify_sent(s));
        drain(s);
    }
    tls_session_free(s);
    return 0;
}
