/* json.h - the JSON pieces ringcast needs around jsmn: a bounded writer with correct string
 * escaping, ISO-8601 timestamps, strict validation of jsmn's tokens, and string unescaping.
 *
 * jsmn (Debian's libjsmn-dev, built with JSMN_STRICT and JSMN_PARENT_LINKS for the whole
 * project) tokenizes into spans; it does not check that primitives are real literals or that
 * strings hold no raw control characters, so json_tokenize adds those checks: a span that
 * passes can be copied verbatim into JSON we send to thousands of clients.
 */
#ifndef RINGCAST_PROTO_JSON_H
#define RINGCAST_PROTO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSMN_HEADER
#include <jsmn.h>

#include "span.h"

/* Length of an ISO-8601 UTC timestamp with milliseconds: 2026-11-22T04:35:00.123Z */
#define JSON_TIMESTAMP_LEN 24

enum json_err {
    JSON_OK = 0,
    JSON_ERR_SYNTAX,    /* not JSON */
    JSON_ERR_TRUNCATED, /* JSON that ends early */
    JSON_ERR_TOO_MANY,  /* more tokens than the caller's array holds */
    JSON_ERR_TRAILING,  /* something after the top-level value */
};

/* Tokenizes json[0..len) into toks (ntoks entries) and validates it strictly: one top-level
 * value, literals exactly true/false/null, numbers per RFC 8259, strings without raw control
 * characters and with valid escapes. Returns the number of tokens (>0) or a negative
 * enum json_err (-JSON_ERR_SYNTAX, ...). No allocation. */
int json_tokenize(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks);

/* The span of token t in json. */
static inline struct span json_tok_span(const char *json, const jsmntok_t *t)
{
    return (struct span){json + t->start, (size_t)(t->end - t->start)};
}

/* Index of the token after token i and everything nested in it (an object key owns its value,
 * as in jsmn's layout, so skipping a key skips the member). At most ntoks. */
int json_skip(const jsmntok_t *toks, int ntoks, int i);

/* In the object at token obj, finds key (raw, unescaped keys only) and returns the index of its
 * value token, or -1. A repeated key yields its last value, as JSON.parse does. */
int json_obj_get(const char *json, const jsmntok_t *toks, int ntoks, int obj, const char *key);

/* Parses an unsigned decimal integer token. Returns false if it is not one or overflows. */
bool json_tok_u64(const char *json, const jsmntok_t *t, uint64_t *out);

/* Unescapes the contents of a JSON string (without quotes) into out. \uXXXX escapes become
 * UTF-8, surrogate pairs are joined; a lone surrogate, a bad escape or an overflow of cap returns
 * -1, else the unescaped length. */
int json_unescape(const char *in, size_t len, char *out, size_t cap);

/* Writes unix_ms as "2026-11-22T04:35:00.123Z" (JSON_TIMESTAMP_LEN characters, no NUL, no
 * quotes). Clamped to 1970-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z. */
void json_timestamp(char out[JSON_TIMESTAMP_LEN], int64_t unix_ms);

/* A bounded writer. Appends never write past cap; once something did not fit, overflow is set
 * and stays set, and the caller treats the output as unusable. */
struct jw {
    char *buf;
    size_t cap;
    size_t len;
    bool overflow;
};

void jw_init(struct jw *w, char *buf, size_t cap);
/* Appends bytes as they are. */
void jw_raw(struct jw *w, const char *s, size_t n);
#define jw_lit(w, lit) jw_raw((w), (lit), sizeof(lit) - 1)
static inline void jw_span(struct jw *w, struct span s)
{
    jw_raw(w, s.base, s.len);
}
/* Appends s as a quoted JSON string, escaping '"', '\\' and control characters (s is UTF-8;
 * \b \f \n \r \t by name, other C0 controls as \u00XX, U+2028/U+2029 as \u2028/\u2029). */
void jw_str(struct jw *w, const char *s, size_t n);
void jw_u64(struct jw *w, uint64_t v);
void jw_i64(struct jw *w, int64_t v);
/* Appends a quoted ISO-8601 timestamp. */
void jw_timestamp(struct jw *w, int64_t unix_ms);

#endif
