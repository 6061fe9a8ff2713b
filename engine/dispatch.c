/* dispatch.c - client requests to actions, and reply envelopes (see dispatch.h). */
#include "dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "broadcast.h"
#include "conn.h"
#include "connlog.h"
#include "frame.h"
#include "history.h"
#include "log.h"
#include "presence.h"
#include "proto/channel.h"
#include "proto/envelope.h"
#include "proto/ws_frame.h"
#include "sendq.h"
#include "sys_stats.h"
#include "worker.h"

/* Replies are small: the longest is an error with a 255-byte channel name in its message and
 * an id that the client chose (bounded by the message size, so sized per reply). */
#define REPLY_BASE 512

/* ---- replies ---- */

struct frame *dispatch_welcome(struct conn *c)
{
    struct worker *w = c->w;
    struct frame *f = frame_alloc(REPLY_BASE, 0);
    if (!f)
        return NULL;
    struct jw jw;
    frame_writer(f, &jw);
    char id[32];
    int n = conn_id_format(c, id);
    jw_lit(&jw, "{\"type\":\"event\",\"event\":\"session.created\",\"data\":{\"connection_id\":");
    jw_str(&jw, id, (size_t)n);
    jw_lit(&jw, ",\"server\":\"ringcast\",\"heartbeat_s\":");
    jw_u64(&jw, w->cfg->heartbeat_s);
    jw_lit(&jw, ",\"max_message_bytes\":");
    jw_u64(&jw, w->cfg->max_message_bytes);
    jw_lit(&jw, "}");
    env_write_end(&jw, SPAN_NULL, w->now_ms);
    frame_finish(f, WS_OP_TEXT, jw.len);
    return f;
}

struct frame *dispatch_reply_channel(struct worker *w, const char *event, const char *status,
                                     struct span channel_esc, struct span id)
{
    struct frame *f = frame_alloc(REPLY_BASE + channel_esc.len + id.len, 0);
    if (!f)
        return NULL;
    struct jw jw;
    frame_writer(f, &jw);
    env_write_response_begin(&jw, span_from_cstr(event));
    jw_lit(&jw, "{\"status\":\"");
    jw_raw(&jw, status, strlen(status));
    jw_lit(&jw, "\",\"channel\":\"");
    jw_span(&jw, channel_esc);
    jw_lit(&jw, "\"}");
    env_write_end(&jw, id, w->now_ms);
    frame_finish(f, WS_OP_TEXT, jw.len);
    return f;
}

size_t dispatch_published_cap(size_t channel_esc_len, size_t id_len)
{
    return REPLY_BASE + channel_esc_len + id_len;
}

void dispatch_write_published(struct worker *w, struct frame *f, struct span channel_esc,
                              uint64_t seq, uint64_t epoch, uint64_t subscribers, struct span id)
{
    char ep[HISTORY_EPOCH_HEX];
    history_epoch_format(epoch, ep);
    struct jw jw;
    frame_writer(f, &jw);
    env_write_response_begin(&jw, SPAN_LIT("publish"));
    jw_lit(&jw, "{\"status\":\"published\",\"channel\":\"");
    jw_span(&jw, channel_esc);
    jw_lit(&jw, "\",\"seq\":");
    jw_u64(&jw, seq);
    jw_lit(&jw, ",\"subscribers\":");
    jw_u64(&jw, subscribers);
    jw_lit(&jw, ",\"epoch\":\"");
    jw_raw(&jw, ep, sizeof(ep));
    jw_lit(&jw, "\"}");
    env_write_end(&jw, id, w->now_ms);
    frame_finish(f, WS_OP_TEXT, jw.len);
}

struct frame *dispatch_reply_published(struct worker *w, struct span channel_esc, uint64_t seq,
                                       uint64_t epoch, uint64_t subscribers, struct span id)
{
    struct frame *f = frame_alloc(dispatch_published_cap(channel_esc.len, id.len), 0);
    if (f)
        dispatch_write_published(w, f, channel_esc, seq, epoch, subscribers, id);
    return f;
}

void dispatch_write_error(struct worker *w, struct frame *f, const char *code, const char *message,
                          struct span id)
{
    metrics_count_error(&w->m, false, code);
    struct jw jw;
    frame_writer(f, &jw);
    env_write_error(&jw, code, message, id, w->now_ms);
    frame_finish(f, WS_OP_TEXT, jw.len);
}

struct frame *dispatch_reply_error(struct worker *w, const char *code, const char *message,
                                   struct span id)
{
    struct frame *f = frame_alloc(REPLY_BASE + 6 * strlen(message) + id.len, 0);
    if (f)
        dispatch_write_error(w, f, code, message, id);
    return f;
}

static struct frame *reply_pong(struct worker *w)
{
    struct frame *f = frame_alloc(64, 0);
    if (!f)
        return NULL;
    struct jw jw;
    frame_writer(f, &jw);
    jw_lit(&jw, "{\"type\":\"pong\"");
    env_write_end(&jw, SPAN_NULL, w->now_ms);
    frame_finish(f, WS_OP_TEXT, jw.len);
    return f;
}

/* ---- requests ---- */

static void error(struct conn *c, const char *code, const char *message, struct span id)
{
    sendq_push(c, dispatch_reply_error(c->w, code, message, id));
}

/* Token bucket; see the rule in dispatch.h. Returns false when the message is refused. */
static bool rate_ok(struct conn *c)
{
    const struct rc_config *cfg = c->w->cfg;
    if (!cfg->rate_limit)
        return true;
    uint64_t cap = (uint64_t)cfg->rate_burst * 1000;
    if (cap > UINT32_MAX)
        cap = UINT32_MAX;
    int64_t elapsed = c->w->mono_ms - c->rl_last_ms;
    c->rl_last_ms = c->w->mono_ms;
    uint64_t tokens = c->rl_tokens_milli + (uint64_t)(elapsed > 0 ? elapsed : 0) * cfg->rate_limit;
    if (tokens >= cap) {
        tokens = cap;
        c->rl_strikes = 0; /* calm long enough to refill the bucket: a clean slate */
    }
    if (tokens >= 1000) {
        c->rl_tokens_milli = (uint32_t)(tokens - 1000);
        return true;
    }
    c->rl_tokens_milli = (uint32_t)tokens;
    if (c->rl_strikes < UINT32_MAX)
        c->rl_strikes++;
    c->w->m.rate_limited++;
    return false;
}

bool dispatch_rate_ok(struct conn *c)
{
    return rate_ok(c);
}

bool dispatch_rate_persistent(const struct conn *c)
{
    return c->rl_strikes > 2 * (uint64_t)c->w->cfg->rate_burst;
}

bool dispatch_admit(struct conn *c)
{
    if (rate_ok(c))
        return true;
    if (dispatch_rate_persistent(c)) {
        connlog(c, LOG_LVL_INFO, "rate limit exceeded persistently, closing with 1008");
        conn_close(c, WS_CLOSE_POLICY, "rate limit exceeded");
    }
    return false;
}

/* Unescapes and validates a channel; answers INVALID_CHANNEL itself. */
static bool channel_get(struct conn *c, const struct env_request *req, struct span *out)
{
    struct span ch = req->channel;
    if (req->channel_escaped) {
        if (ch.len > CHANNEL_UNESCAPE_CAP) {
            error(c, "INVALID_CHANNEL", channel_err_str(CHANNEL_ERR_TOO_LONG), req->id);
            return false;
        }
        int n = json_unescape(ch.base, ch.len, c->w->unescape, sizeof(c->w->unescape));
        if (n < 0) {
            error(c, "INVALID_CHANNEL", "channel is not a valid JSON string", req->id);
            return false;
        }
        ch = (struct span){c->w->unescape, (size_t)n};
    }
    enum channel_err err = channel_validate(ch.base, ch.len);
    if (err != CHANNEL_OK) {
        error(c, "INVALID_CHANNEL", channel_err_str(err), req->id);
        return false;
    }
    *out = ch;
    return true;
}

/* The connection's token (auth.h) must allow the channel; answers FORBIDDEN itself, and the
 * connection stays open. */
static bool permitted(struct conn *c, struct span ch, bool publish, struct span id)
{
    if (auth_grant_allows(c->grant, ch, publish))
        return true;
    error(c, "FORBIDDEN",
          publish ? "your token does not allow publishing to this channel"
                  : "your token does not allow subscribing to this channel",
          id);
    return false;
}

/* The resume and presence options of a subscribe's data object (docs/protocol.md): "since"
 * (an unsigned integer), "epoch" (a string of 1-16 hex digits) and "presence" (a boolean).
 * The data object is tokenized again here, only for subscribes that carry one. NULL, or why
 * the options are refused. */
static const char *sub_opts_parse(struct worker *w, struct span data, struct bc_sub_opts *o)
{
    memset(o, 0, sizeof(*o));
    if (!data.base || !data.len)
        return NULL;
    jsmntok_t *toks = w->toks; /* the request's spans point into the message, not here */
    int n = json_tokenize(data.base, data.len, toks, ENV_MAX_TOKENS);
    if (n < 1 || toks[0].type != JSMN_OBJECT)
        return NULL; /* parsed once already: too complex to look into means no options */
    int v = json_obj_get(data.base, toks, n, 0, "since");
    if (v >= 0) {
        if (toks[v].type != JSMN_PRIMITIVE || !json_tok_u64(data.base, &toks[v], &o->since))
            return "data.since must be an unsigned integer";
        o->has_since = true;
    }
    v = json_obj_get(data.base, toks, n, 0, "epoch");
    if (v >= 0) {
        if (toks[v].type != JSMN_STRING ||
            !history_epoch_parse(json_tok_span(data.base, &toks[v]), &o->epoch))
            return "data.epoch must be a string of 1 to 16 hex digits";
        o->has_epoch = true;
    }
    v = json_obj_get(data.base, toks, n, 0, "presence");
    if (v >= 0) {
        struct span p = json_tok_span(data.base, &toks[v]);
        if (toks[v].type != JSMN_PRIMITIVE || !(span_eq_lit(p, "true") || span_eq_lit(p, "false")))
            return "data.presence must be a boolean";
        o->presence = span_eq_lit(p, "true");
    }
    return NULL;
}

/* A message too complex for the worker's ENV_MAX_TOKENS (a publish whose payload is a long
 * array) is parsed again with enough tokens for any text of its length (env_max_tokens, about
 * 10 bytes of tokens per byte of message, freed at once): no valid message within
 * max-message-bytes is refused for its shape, and the worker's fixed array stays small. */
static enum env_err parse_big(const char *msg, size_t len, struct env_request *req)
{
    size_t need = env_max_tokens(len);
    jsmntok_t *toks = malloc(need * sizeof(*toks));
    if (!toks)
        return ENV_ERR_TOO_COMPLEX;
    enum env_err err = env_request_parse(msg, len, toks, (unsigned)need, req);
    /* The spans in req point into msg, not into the tokens: freeing them here is safe. */
    free(toks);
    return err;
}

void dispatch_message(struct conn *c, const char *msg, size_t len)
{
    struct worker *w = c->w;
    struct env_request req;
    w->m.messages_in++;
    /* The timer closes an expired connection on time; this catches the messages that arrive
     * in the same tick. */
    if (auth_grant_expired(c->grant, w->now_ms)) {
        conn_close(c, 4001, "token expired");
        return;
    }
    enum env_err err = env_request_parse(msg, len, w->toks, ENV_MAX_TOKENS, &req);
    if (err == ENV_ERR_TOO_COMPLEX && len > ENV_MAX_TOKENS)
        err = parse_big(msg, len, &req);
    if (!dispatch_admit(c)) {
        /* Refused: answered RATE_LIMITED, unless the refusal closed the connection. */
        error(c, "RATE_LIMITED", "too many messages: slow down", req.id);
        return;
    }
    if (err != ENV_OK) {
        /* req.id is set when the request carried a usable id before the error (protocol.md
         * §4): the client can still tell which request failed. */
        error(c, "INVALID_MESSAGE", env_err_str(err), req.id);
        return;
    }
    if (w->draining) {
        /* Shutdown: what is already published is delivered; nothing new is taken. */
        error(c, "SHUTTING_DOWN", "the server is shutting down: reconnect later", req.id);
        return;
    }
    struct span ch;
    switch (req.type) {
    case ENV_PING: sendq_push(c, reply_pong(w)); return;
    case ENV_SUBSCRIBE:
        if (channel_get(c, &req, &ch) && permitted(c, ch, false, req.id)) {
            conn_debug(c, "subscribe %.*s", (int)ch.len, ch.base);
            bc_subscribe(c, ch, req.id, NULL);
        }
        return;
    case ENV_UNSUBSCRIBE:
        if (channel_get(c, &req, &ch)) {
            conn_debug(c, "unsubscribe %.*s", (int)ch.len, ch.base);
            bc_unsubscribe(c, ch, req.id);
        }
        return;
    case ENV_REQUEST: break;
    }
    if (span_eq_lit(req.event, "ping")) {
        struct frame *f = frame_alloc(REPLY_BASE + req.id.len, 0);
        if (!f) {
            sendq_push(c, NULL); /* counted and closed as an allocation failure */
            return;
        }
        struct jw jw;
        frame_writer(f, &jw);
        env_write_response_begin(&jw, SPAN_LIT("pong"));
        jw_lit(&jw, "{}");
        env_write_end(&jw, req.id, w->now_ms);
        frame_finish(f, WS_OP_TEXT, jw.len);
        sendq_push(c, f);
        return;
    }
    bool sub = span_eq_lit(req.event, "subscribe");
    bool unsub = !sub && span_eq_lit(req.event, "unsubscribe");
    bool pub = !sub && !unsub && span_eq_lit(req.event, "publish");
    bool pres = !sub && !unsub && !pub && span_eq_lit(req.event, "presence");
    if (!sub && !unsub && !pub && !pres) {
        error(c, "UNKNOWN_REQUEST", "unknown request event", req.id);
        return;
    }
    if (!req.channel.base) {
        error(c, "INVALID_MESSAGE", "data.channel (a string) is required", req.id);
        return;
    }
    if (pub && req.pub_event_bad) {
        error(c, "INVALID_MESSAGE", "data.event must be a string", req.id);
        return;
    }
    if (!channel_get(c, &req, &ch))
        return;
    if ((sub || pub) && !permitted(c, ch, pub, req.id))
        return;
    if (pres) {
        /* Who is in a room is as private as what is said there: the subscribe patterns
         * decide, whether or not this connection is subscribed itself. */
        if (!auth_grant_allows(c->grant, ch, false)) {
            error(c, "FORBIDDEN", "your token does not allow subscribing to this channel", req.id);
            return;
        }
        conn_debug(c, "presence %.*s", (int)ch.len, ch.base);
        presence_request(c, ch, req.id);
        return;
    }
    if (sub) {
        conn_debug(c, "subscribe %.*s", (int)ch.len, ch.base);
        struct bc_sub_opts o;
        const char *bad = sub_opts_parse(w, req.data, &o);
        if (bad) {
            error(c, "INVALID_MESSAGE", bad, req.id);
            return;
        }
        bc_subscribe(c, ch, req.id, &o);
    } else if (unsub) {
        conn_debug(c, "unsubscribe %.*s", (int)ch.len, ch.base);
        bc_unsubscribe(c, ch, req.id);
    } else {
        /* The event name defaults to "message"; a missing payload is sent as null. */
        struct span event = req.pub_event.base ? req.pub_event : SPAN_LIT("message");
        struct span payload = req.payload.base ? req.payload : SPAN_NULL;
        if (sys_room_reserved(ch)) {
            error(c, "RESERVED_CHANNEL",
                  "channels starting with '$' are the server's: subscribe only", req.id);
            return;
        }
        bc_publish(c, ch, event, payload, req.id);
    }
}
