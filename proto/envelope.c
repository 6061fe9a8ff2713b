/* envelope.c - ringcast's JSON envelope: client requests in, server messages out, and server
 * messages parsed back for clients (the load generator parses every event it receives).
 *
 * Both parsers make one tokenizing pass and then one walk over the top-level members, picking
 * out the keys they know by raw comparison; unknown keys are skipped without a look. Nothing is
 * copied: every field is a span into the caller's message.
 */
#include "envelope.h"

#include <string.h>

const char *env_err_str(enum env_err err)
{
    switch (err) {
    case ENV_OK: return "ok";
    case ENV_ERR_JSON: return "message is not valid JSON";
    case ENV_ERR_TOO_COMPLEX: return "message has too many JSON values";
    case ENV_ERR_NOT_OBJECT: return "message must be a JSON object";
    case ENV_ERR_TYPE: return "\"type\" must be one of request, ping, subscribe, unsubscribe";
    case ENV_ERR_EVENT: return "request needs a string \"event\"";
    case ENV_ERR_DATA: return "\"data\" must be an object";
    case ENV_ERR_ID: return "\"id\" must be a string or a number";
    case ENV_ERR_CHANNEL: return "\"channel\" must be a string";
    case ENV_ERR_SEQ: return "\"seq\" must be an unsigned integer";
    }
    return "invalid message";
}

/* ------------------------------------------------------------------------------------------ */
/* Shared helpers                                                                             */
/* ------------------------------------------------------------------------------------------ */

/* True when key token t holds exactly lit (raw, as sent). */
#define key_is(json, t, lit)                                                                       \
    ((size_t)((t)->end - (t)->start) == sizeof(lit) - 1 &&                                         \
     memcmp((json) + (t)->start, (lit), sizeof(lit) - 1) == 0)

/* The raw JSON text of token t: a string keeps its quotes, a container its brackets. */
static struct span raw_span(const char *json, const jsmntok_t *t)
{
    if (t->type == JSMN_STRING)
        return (struct span){json + t->start - 1, (size_t)(t->end - t->start) + 2};
    return json_tok_span(json, t);
}

/* A string or a number: what an id may be. Numbers are primitives that are not literals. */
static bool is_id(const char *json, const jsmntok_t *t)
{
    if (t->type == JSMN_STRING)
        return true;
    if (t->type != JSMN_PRIMITIVE)
        return false;
    char c = json[t->start];
    return c == '-' || (c >= '0' && c <= '9');
}

static enum env_err tokenize(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks, int *n)
{
    *n = json_tokenize(json, len, toks, ntoks);
    if (*n == -JSON_ERR_TOO_MANY)
        return ENV_ERR_TOO_COMPLEX;
    if (*n <= 0)
        return ENV_ERR_JSON;
    if (toks[0].type != JSMN_OBJECT)
        return ENV_ERR_NOT_OBJECT;
    return ENV_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Client requests                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* Fills channel/pub_event/payload from the members of the request's data object. A channel or
 * event that is not a string is left absent (an event so is flagged pub_event_bad): the engine
 * answers that with the error the request's event calls for. */
static void parse_data(const char *json, const jsmntok_t *toks, int n, int obj,
                       struct env_request *req)
{
    int i = obj + 1;
    for (int k = 0; k < toks[obj].size && i + 1 < n; k++) {
        const jsmntok_t *key = &toks[i], *val = &toks[i + 1];
        if (key_is(json, key, "channel")) {
            req->channel = val->type == JSMN_STRING ? json_tok_span(json, val) : SPAN_NULL;
        } else if (key_is(json, key, "event")) {
            req->pub_event = val->type == JSMN_STRING ? json_tok_span(json, val) : SPAN_NULL;
            req->pub_event_bad = val->type != JSMN_STRING;
        } else if (key_is(json, key, "payload")) {
            req->payload = raw_span(json, val);
        }
        i = json_skip(toks, n, i + 1);
    }
}

enum env_err env_request_parse(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks,
                               struct env_request *req)
{
    memset(req, 0, sizeof(*req));
    int n;
    enum env_err err = tokenize(json, len, toks, ntoks, &n);
    if (err != ENV_OK)
        return err;

    /* Token indices of the members we know; the last duplicate wins (json_obj_get's rule). */
    int type = -1, event = -1, data = -1, id = -1, cid = -1, channel = -1;
    int i = 1;
    for (int k = 0; k < toks[0].size && i + 1 < n; k++) {
        const jsmntok_t *key = &toks[i];
        int v = i + 1;
        switch (key->end - key->start) {
        case 2:
            if (key_is(json, key, "id"))
                id = v;
            break;
        case 4:
            if (key_is(json, key, "type"))
                type = v;
            else if (key_is(json, key, "data"))
                data = v;
            break;
        case 5:
            if (key_is(json, key, "event"))
                event = v;
            break;
        case 7:
            if (key_is(json, key, "channel"))
                channel = v;
            break;
        case 14:
            if (key_is(json, key, "correlation_id"))
                cid = v;
            break;
        }
        i = json_skip(toks, n, v);
    }

    if (type < 0 || toks[type].type != JSMN_STRING)
        return ENV_ERR_TYPE;
    struct span ts = json_tok_span(json, &toks[type]);
    if (span_eq_lit(ts, "request"))
        req->type = ENV_REQUEST;
    else if (span_eq_lit(ts, "ping"))
        req->type = ENV_PING;
    else if (span_eq_lit(ts, "subscribe"))
        req->type = ENV_SUBSCRIBE;
    else if (span_eq_lit(ts, "unsubscribe"))
        req->type = ENV_UNSUBSCRIBE;
    else
        return ENV_ERR_TYPE;

    switch (req->type) {
    case ENV_REQUEST:
        /* "id" is the documented name; "correlation_id" is accepted for clients that echo
         * the server's field name back. When both are sent, "id" wins. The short forms have
         * no id: they are answered without correlation_id whatever they carry. */
        if (id < 0)
            id = cid;
        if (id >= 0) {
            if (!is_id(json, &toks[id]))
                return ENV_ERR_ID;
            req->id = raw_span(json, &toks[id]);
        }
        if (event < 0 || toks[event].type != JSMN_STRING)
            return ENV_ERR_EVENT;
        req->event = json_tok_span(json, &toks[event]);
        if (data >= 0) {
            if (toks[data].type != JSMN_OBJECT)
                return ENV_ERR_DATA;
            req->data = raw_span(json, &toks[data]);
            parse_data(json, toks, n, data, req);
        }
        break;
    case ENV_SUBSCRIBE:
    case ENV_UNSUBSCRIBE:
        if (channel < 0 || toks[channel].type != JSMN_STRING)
            return ENV_ERR_CHANNEL;
        req->channel = json_tok_span(json, &toks[channel]);
        break;
    case ENV_PING: break;
    }
    req->channel_escaped = req->channel.base && memchr(req->channel.base, '\\', req->channel.len);
    return ENV_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Server messages, as a client parses them                                                   */
/* ------------------------------------------------------------------------------------------ */

enum env_err env_msg_parse(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks,
                           struct env_msg *msg)
{
    memset(msg, 0, sizeof(*msg));
    int n;
    enum env_err err = tokenize(json, len, toks, ntoks, &n);
    if (err != ENV_OK)
        return err;

    int type = -1, data = -1;
    int i = 1;
    for (int k = 0; k < toks[0].size && i + 1 < n; k++) {
        const jsmntok_t *key = &toks[i], *val = &toks[i + 1];
        switch (key->end - key->start) {
        case 3:
            if (key_is(json, key, "seq")) {
                if (!json_tok_u64(json, val, &msg->seq))
                    return ENV_ERR_SEQ;
                msg->has_seq = true;
            }
            break;
        case 4:
            if (key_is(json, key, "type"))
                type = i + 1;
            else if (key_is(json, key, "room")) {
                if (val->type != JSMN_STRING)
                    return ENV_ERR_CHANNEL;
                msg->room = json_tok_span(json, val);
            } else if (key_is(json, key, "data")) {
                data = i + 1;
                msg->data = raw_span(json, val);
            }
            break;
        case 5:
            if (key_is(json, key, "event")) {
                if (val->type != JSMN_STRING)
                    return ENV_ERR_EVENT;
                msg->event = json_tok_span(json, val);
            }
            break;
        case 14:
            if (key_is(json, key, "correlation_id")) {
                if (!is_id(json, val))
                    return ENV_ERR_ID;
                msg->id = raw_span(json, val);
            }
            break;
        }
        i = json_skip(toks, n, i + 1);
    }

    if (type < 0 || toks[type].type != JSMN_STRING)
        return ENV_ERR_TYPE;
    msg->type = json_tok_span(json, &toks[type]);

    /* Only errors carry a code; looking for it elsewhere would walk every event's payload. */
    if (data >= 0 && span_eq_lit(msg->type, "error")) {
        int c = json_obj_get(json, toks, n, data, "code");
        if (c >= 0 && toks[c].type == JSMN_STRING)
            msg->code = json_tok_span(json, &toks[c]);
    }
    return ENV_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Encoders                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Writes ,"timestamp":"T" — shared by every server message. */
static void write_ts(struct jw *w, int64_t unix_ms)
{
    jw_lit(w, ",\"timestamp\":");
    jw_timestamp(w, unix_ms);
}

void env_write_event(struct jw *w, struct span event, struct span room, struct span data,
                     int64_t unix_ms, uint64_t seq)
{
    jw_lit(w, "{\"type\":\"event\",\"event\":\"");
    jw_span(w, event);
    if (room.base) {
        jw_lit(w, "\",\"room\":\"");
        jw_span(w, room);
    }
    jw_lit(w, "\",\"data\":");
    /* An empty span would leave "data": with no value: say null instead. */
    if (data.len)
        jw_span(w, data);
    else
        jw_lit(w, "null");
    write_ts(w, unix_ms);
    if (seq) {
        jw_lit(w, ",\"seq\":");
        jw_u64(w, seq);
    }
    jw_lit(w, "}");
}

void env_write_response_begin(struct jw *w, struct span event)
{
    jw_lit(w, "{\"type\":\"response\",\"event\":\"");
    jw_span(w, event);
    jw_lit(w, "\",\"data\":");
}

void env_write_end(struct jw *w, struct span id, int64_t unix_ms)
{
    if (id.len) {
        jw_lit(w, ",\"correlation_id\":");
        jw_span(w, id);
    }
    write_ts(w, unix_ms);
    jw_lit(w, "}");
}

void env_write_error(struct jw *w, const char *code, const char *message, struct span id,
                     int64_t unix_ms)
{
    jw_lit(w, "{\"type\":\"error\",\"event\":\"error\",\"data\":{\"code\":");
    jw_str(w, code, strlen(code));
    jw_lit(w, ",\"message\":");
    jw_str(w, message, strlen(message));
    jw_lit(w, "}");
    env_write_end(w, id, unix_ms);
}
