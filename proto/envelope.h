/* envelope.h - ringcast's JSON envelope (docs/protocol.md): parse client requests into spans,
 * parse server messages (for clients: the load generator, tests), encode server messages.
 *
 * Client to server:
 *   {"type":"request","event":E,"data":{...},"id":ID}       ("correlation_id" may replace "id")
 *   {"type":"ping"}  {"type":"subscribe","channel":C}  {"type":"unsubscribe","channel":C}
 * Server to client:
 *   {"type":"event","event":E,"room":C,"data":PAYLOAD,"timestamp":T,"seq":N}
 *   {"type":"response","event":E,"data":{...},"correlation_id":ID,"timestamp":T}
 *   {"type":"error","event":"error","data":{"code":CODE,"message":M},"correlation_id":ID,...}
 *
 * Parsing copies nothing: the caller supplies the token array, and the publish payload stays a
 * raw span that the engine embeds verbatim in the broadcast event, never re-serialized.
 */
#ifndef RINGCAST_PROTO_ENVELOPE_H
#define RINGCAST_PROTO_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "span.h"

/* Token budget that is plenty for a usual request; the payload is tokenized too, so a larger
 * message may need more: env_max_tokens(len) is enough for any message of len bytes. */
#define ENV_MAX_TOKENS 1024

/* Tokens that any JSON text of len bytes can hold at most: every value takes at least one byte
 * and, but for the first, a separator. */
static inline size_t env_max_tokens(size_t len)
{
    return len / 2 + 2;
}

enum env_type {
    ENV_REQUEST = 0, /* {"type":"request",...}: see event */
    ENV_PING,        /* {"type":"ping"} */
    ENV_SUBSCRIBE,   /* {"type":"subscribe","channel":C} */
    ENV_UNSUBSCRIBE, /* {"type":"unsubscribe","channel":C} */
};

/* Why a message is not a valid request. All of them are answered with INVALID_MESSAGE. */
enum env_err {
    ENV_OK = 0,
    ENV_ERR_JSON,        /* not (complete, valid) JSON */
    ENV_ERR_TOO_COMPLEX, /* more than the token budget */
    ENV_ERR_NOT_OBJECT,  /* top-level value is not an object */
    ENV_ERR_TYPE,        /* "type" missing, not a string, or unknown */
    ENV_ERR_EVENT,       /* request without a string "event" */
    ENV_ERR_DATA,        /* "data" present but not an object */
    ENV_ERR_ID,          /* "id"/"correlation_id" not a string or number */
    ENV_ERR_CHANNEL,     /* short subscribe/unsubscribe without a string "channel" */
    ENV_ERR_SEQ,         /* env_msg_parse: "seq" present but not an unsigned 64-bit integer */
};

const char *env_err_str(enum env_err err);

struct env_request {
    enum env_type type;
    struct span event; /* request: event name, string contents as sent (still escaped) */
    struct span id; /* raw JSON of id/correlation_id ("abc" with quotes, or 42); empty if absent */
    struct span data;      /* raw JSON of the data object; empty if absent */
    struct span channel;   /* data.channel (requests) or channel (short forms): string contents as
                            * sent, still escaped; base NULL when absent or not a string */
    bool channel_escaped;  /* channel holds a backslash: unescape with json_unescape */
    struct span pub_event; /* data.event (publish): string contents as sent; base NULL if absent
                            * or not a string */
    bool pub_event_bad;    /* data.event present but not a string: a publish refuses it */
    struct span payload;   /* data.payload: raw JSON value, any type; base NULL if absent */
};

/* Parses a client message using the caller's token array. Returns ENV_OK and fills *req, or an
 * enum env_err; on an error req->id is still set when the request form carried a usable id
 * (a string or a number) before the error was found, so the error can be correlated. Field checks
 * that depend on the event (publish needs a channel, ...) are the caller's: it answers them with
 * the right error code. Unknown keys are ignored; when a key is repeated the last one wins (as with
 * JSON.parse); when both "id" and "correlation_id" are sent, "id" wins. id, event and data are read
 * only in the request form: the short forms have no id (req->id stays empty), so they are answered
 * without correlation_id. */
enum env_err env_request_parse(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks,
                               struct env_request *req);

/* A server message as a client sees it. */
struct env_msg {
    struct span type;  /* string contents */
    struct span event; /* string contents, empty if absent */
    struct span room;  /* string contents, base NULL if absent */
    struct span data;  /* raw JSON */
    struct span id;    /* raw JSON of correlation_id */
    struct span code;  /* error: data.code string contents */
    uint64_t seq;
    bool has_seq;
};

/* Parses a server message (event, response, error, pong). Returns ENV_OK or an env_err: "type"
 * must be a string; "event" (ENV_ERR_EVENT) and "room" (ENV_ERR_CHANNEL) strings when present,
 * "correlation_id" a string or number (ENV_ERR_ID), "seq" an unsigned integer (ENV_ERR_SEQ).
 * code is looked up only when type is "error". */
enum env_err env_msg_parse(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks,
                           struct env_msg *msg);

/* Writes {"type":"event","event":E,"room":C,"data":DATA,"timestamp":T,"seq":N}. event and room
 * are JSON string contents already escaped (as parsed, or plain names); room is omitted when
 * room.base is NULL, seq when 0. data is raw JSON; an empty data span is written as null. */
void env_write_event(struct jw *w, struct span event, struct span room, struct span data,
                     int64_t unix_ms, uint64_t seq);

/* Writes {"type":"response","event":E,"data": — the caller then writes the data value and
 * finishes with env_write_end. event is escaped string contents. */
void env_write_response_begin(struct jw *w, struct span event);

/* Writes ,"correlation_id":ID (omitted when id is empty),"timestamp":T} */
void env_write_end(struct jw *w, struct span id, int64_t unix_ms);

/* Writes a whole error envelope with code (e.g. "INVALID_CHANNEL") and message (plain UTF-8,
 * escaped here). */
void env_write_error(struct jw *w, const char *code, const char *message, struct span id,
                     int64_t unix_ms);

#endif
