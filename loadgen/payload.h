/* payload.h - what the load generator publishes and how a subscriber checks what it receives.
 *
 * Every publish carries, as its JSON payload (exactly --size bytes when the size allows):
 *   {"q":Q,"p":P,"k":K,"t":T,"i":I,"x":"PAD"}
 * q: the room's sequence (1, 2, ... per room, dense: the subscriber's loss/duplicate bitmap
 *    indexes it), p: publisher index, k: the publisher's own sequence, t: send time and
 *    i: intended send time (CLOCK_MONOTONIC ns), x: padding whose characters are a pseudo-random
 *    stream seeded from all five numbers, so any changed byte (a digit or the padding) is
 *    caught as corruption.
 *
 * Received messages go through a fast path that recognises ringcast's exact event layout
 * (env_write_event's key order, no whitespace) and falls back to env_msg_parse (jsmn) for
 * anything else; tests/loadgen/payload_test.c checks both give the same answer.
 */
#ifndef RINGCAST_LOADGEN_PAYLOAD_H
#define RINGCAST_LOADGEN_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/envelope.h"

struct lg_payload {
    uint64_t q, p, k, t, i;
};

/* Smallest payload: the fixed fields with their largest values and an empty pad. */
#define LG_PAYLOAD_MAX_FIXED 120

/* Writes the payload for pl padded to size bytes (or the fixed part alone when size is
 * smaller). Returns the length written, 0 if cap is too small. */
size_t lg_payload_write(char *out, size_t cap, const struct lg_payload *pl, size_t size);

enum lg_payload_res {
    LG_PAYLOAD_OK = 0,
    LG_PAYLOAD_CORRUPT,   /* numbers read, but the padding does not match them */
    LG_PAYLOAD_MALFORMED, /* not our payload at all: nothing in it can be trusted */
};

/* Parses and checks a payload (raw JSON span) that was written for --size `size`: the padding
 * must match the numbers and have exactly the length lg_payload_write gave it (a truncated
 * payload is corrupt). On LG_PAYLOAD_OK and LG_PAYLOAD_CORRUPT *pl holds the numbers as
 * received. Whitespace between tokens is tolerated. */
enum lg_payload_res lg_payload_check(const char *s, size_t len, size_t size, struct lg_payload *pl);
/* Length of the padding lg_payload_write gives pl's numbers for --size `size`. */
size_t lg_payload_pad_len(const struct lg_payload *pl, size_t size);

enum lg_msg_kind {
    LG_MSG_EVENT = 0, /* "type":"event" */
    LG_MSG_RESPONSE,  /* "type":"response" */
    LG_MSG_ERROR,     /* "type":"error" */
    LG_MSG_OTHER,     /* pong and anything else that parsed */
    LG_MSG_INVALID,   /* not a server message */
};

struct lg_msg {
    enum lg_msg_kind kind;
    struct span event; /* event name (string contents) */
    struct span room;  /* events: room name contents; base NULL if absent */
    struct span data;  /* raw JSON */
    struct span id;    /* raw JSON correlation_id; empty if absent */
    struct span code;  /* errors: data.code contents */
    uint64_t seq;
    bool has_seq;
    bool fast; /* taken by the fast path */
};

/* Parses one server message. toks (ntoks entries) is scratch for the fallback parser. */
void lg_msg_parse(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks, struct lg_msg *m);

/* The fallback alone (env_msg_parse), for tests and --verify-parse. */
void lg_msg_parse_slow(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks,
                       struct lg_msg *m);

#endif
