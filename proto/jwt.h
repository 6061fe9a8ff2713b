/* jwt.h - JSON Web Tokens (RFC 7519) in compact JWS form: the parsing half.
 *
 * Pure, like the rest of proto/: jwt_parse splits "header.payload.signature", base64url-decodes
 * each part into a caller-provided scratch area, parses header and claims with the project's
 * strict JSON (json.h) and reports spans; no allocation, no I/O, no cryptography. The
 * signature is verified by the engine (engine/auth.c, OpenSSL) over jwt.signing_input; nothing a
 * token claims may be trusted before that.
 *
 * Strictness (a token is refused rather than guessed at): base64url without padding and with
 * zero trailing bits; header and claims each one JSON object; "alg" one of HS256, RS256, ES256
 * ("none" and everything else refused); a "crit" header refused (we understand no extension);
 * a repeated registered claim refused; exp/nbf non-negative numbers without exponent; sub a
 * string; channels/publish arrays of at most JWT_MAX_PATTERNS strings.
 */
#ifndef RINGCAST_PROTO_JWT_H
#define RINGCAST_PROTO_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "span.h"

/* Longest compact token accepted, in bytes: the whole upgrade head is 8 KiB. */
#define JWT_MAX_TOKEN 4096
/* Decoded header bytes: {"alg":"ES256","typ":"JWT","kid":"..."} is far below. */
#define JWT_MAX_HEADER 256
/* Decoded claims bytes: bounds what a connection's permissions may cost (auth.h). */
#define JWT_MAX_PAYLOAD 2048
/* Decoded signature bytes: an RSA-4096 signature is 512. */
#define JWT_MAX_SIG 512
/* Patterns in each of the channels and publish claims. */
#define JWT_MAX_PATTERNS 32
/* JSON tokens for the header or the claims. */
#define JWT_MAX_JSON_TOKENS 128

enum jwt_alg {
    JWT_ALG_HS256 = 1,
    JWT_ALG_RS256,
    JWT_ALG_ES256,
};

enum jwt_err {
    JWT_OK = 0,
    JWT_ERR_TOO_LONG,   /* token over JWT_MAX_TOKEN, or a part over its decoded bound */
    JWT_ERR_FORMAT,     /* not three base64url parts separated by dots */
    JWT_ERR_HEADER,     /* header not a JSON object with a string "alg" */
    JWT_ERR_ALG,        /* alg is none, or not one we verify */
    JWT_ERR_CRIT,       /* a "crit" header: an extension we do not understand */
    JWT_ERR_CLAIMS,     /* claims not a JSON object, or a repeated registered claim */
    JWT_ERR_CLAIM_TYPE, /* exp, nbf, sub, channels or publish of the wrong type */
    JWT_ERR_PATTERNS,   /* more than JWT_MAX_PATTERNS in channels or publish */
};

/* Where jwt_parse decodes to. Large (about 5 KiB): on the caller's stack or in its own state. */
struct jwt_scratch {
    uint8_t header[JWT_MAX_HEADER];
    uint8_t payload[JWT_MAX_PAYLOAD];
    uint8_t sig[JWT_MAX_SIG];
    jsmntok_t toks[JWT_MAX_JSON_TOKENS];
};

/* A parsed token. Spans point into the token (signing_input) or into the scratch (the rest);
 * string claims are JSON string contents still escaped: json_unescape them before use. */
struct jwt {
    enum jwt_alg alg;
    struct span signing_input; /* "header.payload", what the signature covers */
    const uint8_t *sig;
    size_t sig_len;
    bool has_exp, has_nbf, has_sub, has_channels, has_publish;
    int64_t exp, nbf; /* seconds since the epoch (a fraction is dropped) */
    struct span sub;
    unsigned nchannels, npublish;
    struct span channels[JWT_MAX_PATTERNS];
    struct span publish[JWT_MAX_PATTERNS];
};

/* Parses token[0..len) into out, decoding into s. JWT_OK or the first rule broken. */
enum jwt_err jwt_parse(const char *token, size_t len, struct jwt_scratch *s, struct jwt *out);

/* One line of plain text for err (a static string), for a 401 body and the log. */
const char *jwt_err_str(enum jwt_err err);

/* Decodes unpadded base64url in[0..len) into out (cap bytes). Returns the decoded length, or -1
 * on a character outside the alphabet, padding, an impossible length, non-zero trailing bits,
 * or when it does not fit. */
int jwt_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/* True when channel matches pattern: "*" matches every channel, "prefix*" every channel that
 * starts with prefix (so "workflow:*" matches "workflow:42", not "workflow"), anything else
 * only itself. A '*' elsewhere than at the end is an ordinary character. */
bool jwt_pattern_match(const char *pattern, size_t plen, const char *channel, size_t clen);

#endif
