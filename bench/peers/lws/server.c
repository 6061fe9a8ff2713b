/* lws-broadcast - a broadcast server on libwebsockets, written the way lws's own minimal
 * examples write one (minimal-ws-broker, minimal-ws-server-ring), speaking the subset of
 * ringcast's protocol (docs/protocol.md) that ringcast-load uses. It is a peer in bench/run's
 * side-by-side benchmark.
 *
 *   lws-broadcast [--host 127.0.0.1] [--port 8765]
 *
 * One thread, lws's own service loop. Every message is serialized once into a refcounted buffer
 * with LWS_PRE bytes of headroom; each subscriber's session holds a FIFO of references, asks for
 * LWS_CALLBACK_SERVER_WRITEABLE with lws_callback_on_writable() and sends one message per
 * writeable callback, as the lws examples do. lws_write() puts the frame header in the headroom:
 * every subscriber gets the same unmasked header for the same length, so rewriting it in the
 * shared buffer is harmless in a single-threaded server.
 *
 * JSON is tokenized with jsmn (header-only, made static to this file so it cannot clash with
 * the copy in ringcast's proto library); the publish payload is embedded verbatim. msg.c holds
 * the refcounted buffers and the JSON appenders.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <libwebsockets.h>

#define JSMN_STATIC
#include <jsmn.h>

#include "msg.h"

/* The same limits ringcast ships with, so that both refuse the same things. */
#define MAX_MESSAGE_BYTES 65536
#define MAX_CHANNEL_BYTES 255
/* A subscriber with more than this unsent is dropped, as ringcast does. */
#define MAX_QUEUE_BYTES (1u << 20)
#define MAX_TOKENS      1024 /* jsmn tokens per request: the payload is tokenized too */
#define HEARTBEAT_S     25   /* idle seconds before lws pings */
#define HANGUP_S        35   /* idle seconds (no pong either) before lws hangs up */
#define RX_CHUNK        4096 /* lws rx buffer per connection: requests are small */

/* ---- rooms ---- */

struct session;

/* One subscription: the link between a room and a session, so that either side can drop it in
 * O(1) (idx is its position in room->subs). */
struct sub {
    struct room *room;
    struct session *sess;
    uint32_t idx;
};

/* Rooms are never freed: seq must keep increasing for a room even after it empties. */
struct room {
    struct room *next; /* hash chain */
    uint64_t hash;
    uint64_t seq;
    struct sub **subs;
    uint32_t nsubs, cap;
    size_t name_len;
    char name[];
};

static struct room **buckets;
static size_t nbuckets, nrooms;

static uint64_t hash_name(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) {
        fprintf(stderr, "lws-broadcast: out of memory\n");
        abort();
    }
    return p;
}

static void rooms_grow(void)
{
    size_t nb = nbuckets ? nbuckets * 2 : 1024;
    struct room **nt = calloc(nb, sizeof(*nt));
    if (!nt)
        abort();
    for (size_t i = 0; i < nbuckets; i++) {
        for (struct room *r = buckets[i], *next; r; r = next) {
            next = r->next;
            r->next = nt[r->hash & (nb - 1)];
            nt[r->hash & (nb - 1)] = r;
        }
    }
    free(buckets);
    buckets = nt;
    nbuckets = nb;
}

static struct room *room_find(const char *name, size_t n, bool create)
{
    uint64_t h = hash_name(name, n);
    if (nbuckets) {
        for (struct room *r = buckets[h & (nbuckets - 1)]; r; r = r->next)
            if (r->hash == h && r->name_len == n && memcmp(r->name, name, n) == 0)
                return r;
    }
    if (!create)
        return NULL;
    if (nrooms >= nbuckets)
        rooms_grow();
    struct room *r = calloc(1, sizeof(*r) + n);
    if (!r)
        abort();
    r->hash = h;
    r->name_len = n;
    memcpy(r->name, name, n);
    r->next = buckets[h & (nbuckets - 1)];
    buckets[h & (nbuckets - 1)] = r;
    nrooms++;
    return r;
}

/* ---- sessions ---- */

/* lws allocates and zeroes one per connection (per_session_data_size). */
struct session {
    struct lws *wsi;
    uint64_t id;
    bool culled; /* over MAX_QUEUE_BYTES: being dropped, queue nothing more */
    /* FIFO of messages to send, a ring of references */
    struct msg **q;
    uint32_t qhead, qlen, qcap;
    size_t qbytes;
    /* subscriptions */
    struct sub **subs;
    uint32_t nsubs, subs_cap;
    /* a request split over several RECEIVE callbacks, reassembled here */
    char *rx;
    size_t rxlen;
};

static uint64_t next_session_id = 1;

/* Queues a reference to m for s and asks lws for a writeable callback. Returns false (and drops
 * the session) when s already has MAX_QUEUE_BYTES waiting: a reader that slow would otherwise
 * grow the server without bound. */
static bool session_push(struct session *s, struct msg *m)
{
    if (s->culled)
        return false;
    if (s->qbytes + m->len > MAX_QUEUE_BYTES) {
        s->culled = true;
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_LAGGING, LWS_TO_KILL_ASYNC);
        return false;
    }
    if (s->qlen == s->qcap) {
        uint32_t ncap = s->qcap ? s->qcap * 2 : 8;
        struct msg **nq = xrealloc(NULL, ncap * sizeof(*nq));
        for (uint32_t i = 0; i < s->qlen; i++)
            nq[i] = s->q[(s->qhead + i) % s->qcap];
        free(s->q);
        s->q = nq;
        s->qhead = 0;
        s->qcap = ncap;
    }
    s->q[(s->qhead + s->qlen) % s->qcap] = m;
    s->qlen++;
    s->qbytes += m->len;
    m->refs++;
    lws_callback_on_writable(s->wsi);
    return true;
}

/* Queues m and drops the creator's reference: for replies that go to one session only. */
static void session_send(struct session *s, struct msg *m)
{
    session_push(s, m);
    msg_unref(m);
}

static bool subscribe(struct session *s, const char *ch, size_t n)
{
    struct room *r = room_find(ch, n, true);
    for (uint32_t i = 0; i < s->nsubs; i++)
        if (s->subs[i]->room == r)
            return true; /* already subscribed: idempotent */
    struct sub *sub = xrealloc(NULL, sizeof(*sub));
    if (r->nsubs == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4;
        r->subs = xrealloc(r->subs, r->cap * sizeof(*r->subs));
    }
    if (s->nsubs == s->subs_cap) {
        s->subs_cap = s->subs_cap ? s->subs_cap * 2 : 4;
        s->subs = xrealloc(s->subs, s->subs_cap * sizeof(*s->subs));
    }
    *sub = (struct sub){.room = r, .sess = s, .idx = r->nsubs};
    r->subs[r->nsubs++] = sub;
    s->subs[s->nsubs++] = sub;
    return true;
}

/* Removes s->subs[i] from its room (swap-remove on both sides). */
static void drop_sub(struct session *s, uint32_t i)
{
    struct sub *sub = s->subs[i];
    struct room *r = sub->room;
    r->subs[sub->idx] = r->subs[--r->nsubs];
    r->subs[sub->idx]->idx = sub->idx;
    s->subs[i] = s->subs[--s->nsubs];
    free(sub);
}

static void unsubscribe(struct session *s, const char *ch, size_t n)
{
    struct room *r = room_find(ch, n, false);
    for (uint32_t i = 0; r && i < s->nsubs; i++) {
        if (s->subs[i]->room == r) {
            drop_sub(s, i);
            return;
        }
    }
}

static void session_destroy(struct session *s)
{
    while (s->nsubs)
        drop_sub(s, s->nsubs - 1);
    free(s->subs);
    for (uint32_t i = 0; i < s->qlen; i++)
        msg_unref(s->q[(s->qhead + i) % s->qcap]);
    free(s->q);
    free(s->rx);
    memset(s, 0, sizeof(*s));
}

/* ---- JSON helpers over jsmn tokens ---- */

struct req {
    const char *js;
    jsmntok_t *t;
    int n;
};

static bool tok_eq(const struct req *q, int i, const char *lit)
{
    size_t n = strlen(lit);
    return q->t[i].type == JSMN_STRING && (size_t)(q->t[i].end - q->t[i].start) == n &&
           memcmp(q->js + q->t[i].start, lit, n) == 0;
}

/* Index of the value of key in the object at token obj, or -1. Keys are children of obj
 * (parent links), values follow their key. */
static int obj_get(const struct req *q, int obj, const char *key)
{
    if (obj < 0 || q->t[obj].type != JSMN_OBJECT)
        return -1;
    for (int i = obj + 1; i + 1 < q->n && q->t[i].start < q->t[obj].end; i++)
        if (q->t[i].parent == obj && tok_eq(q, i, key))
            return i + 1;
    return -1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static long hex4(const char *p, const char *end)
{
    long v = 0;
    if (end - p < 4)
        return -1;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Unescapes string token i into out (cap bytes). Returns the length, or -1 when it is not a
 * string, holds a bad escape or a lone surrogate, or does not fit. */
static long tok_unescape(const struct req *q, int i, char *out, size_t cap)
{
    if (i < 0 || q->t[i].type != JSMN_STRING)
        return -1;
    const char *p = q->js + q->t[i].start, *end = q->js + q->t[i].end;
    size_t n = 0;
    while (p < end) {
        unsigned long cp;
        if (*p != '\\') {
            if (n >= cap)
                return -1;
            out[n++] = *p++;
            continue;
        }
        if (end - p < 2)
            return -1;
        char e = p[1];
        p += 2;
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e && simple) {
            if (n >= cap)
                return -1;
            out[n++] = "\"\\/\b\f\n\r\t"[simple - "\"\\/bfnrt"];
            continue;
        }
        if (e != 'u')
            return -1;
        long hi = hex4(p, end);
        if (hi < 0)
            return -1;
        p += 4;
        cp = (unsigned long)hi;
        if (hi >= 0xDC00 && hi <= 0xDFFF)
            return -1;
        if (hi >= 0xD800 && hi <= 0xDBFF) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                return -1;
            long lo = hex4(p + 2, end);
            if (lo < 0xDC00 || lo > 0xDFFF)
                return -1;
            p += 6;
            cp = 0x10000 + (((unsigned long)hi - 0xD800) << 10) + ((unsigned long)lo - 0xDC00);
        }
        unsigned char u[4];
        size_t k;
        if (cp < 0x80) {
            u[0] = (unsigned char)cp, k = 1;
        } else if (cp < 0x800) {
            u[0] = (unsigned char)(0xC0 | (cp >> 6)), u[1] = (unsigned char)(0x80 | (cp & 63));
            k = 2;
        } else if (cp < 0x10000) {
            u[0] = (unsigned char)(0xE0 | (cp >> 12));
            u[1] = (unsigned char)(0x80 | ((cp >> 6) & 63));
            u[2] = (unsigned char)(0x80 | (cp & 63));
            k = 3;
        } else {
            u[0] = (unsigned char)(0xF0 | (cp >> 18));
            u[1] = (unsigned char)(0x80 | ((cp >> 12) & 63));
            u[2] = (unsigned char)(0x80 | ((cp >> 6) & 63));
            u[3] = (unsigned char)(0x80 | (cp & 63));
            k = 4;
        }
        if (n + k > cap)
            return -1;
        memcpy(out + n, u, k);
        n += k;
    }
    return (long)n;
}

/* ---- replies ---- */

/* Room for the fixed parts of any envelope (type, event, timestamp, keys). */
#define ENVELOPE_SLACK 256

static size_t tok_len(const struct req *q, int i)
{
    return i < 0 ? 0 : (size_t)(q->t[i].end - q->t[i].start);
}

/* Writes the raw JSON of the request's id, as sent (a string with its quotes, or a number). */
static void put_id_tail(struct msg *m, const struct req *q, int id)
{
    if (id >= 0) {
        msg_put_lit(m, ",\"correlation_id\":");
        if (q->t[id].type == JSMN_STRING)
            msg_put_lit(m, "\"");
        msg_put(m, q->js + q->t[id].start, tok_len(q, id));
        if (q->t[id].type == JSMN_STRING)
            msg_put_lit(m, "\"");
    }
    msg_put_lit(m, ",\"timestamp\":");
    msg_put_timestamp(m);
    msg_put_lit(m, "}");
}

static void send_error(struct session *s, const struct req *q, int id, const char *code,
                       const char *message)
{
    struct msg *m = msg_new(ENVELOPE_SLACK + strlen(code) + 6 * strlen(message) + tok_len(q, id));
    msg_put_lit(m, "{\"type\":\"error\",\"event\":\"error\",\"data\":{\"code\":");
    msg_put_str(m, code, strlen(code));
    msg_put_lit(m, ",\"message\":");
    msg_put_str(m, message, strlen(message));
    msg_put_lit(m, "}");
    put_id_tail(m, q, id);
    session_send(s, m);
}

/* {"type":"response","event":EV,"data":{"status":ST,"channel":C},...} for (un)subscribe. */
static void send_sub_response(struct session *s, const struct req *q, int id, const char *ev,
                              const char *ch, size_t n)
{
    struct msg *m = msg_new(ENVELOPE_SLACK + 6 * n + tok_len(q, id));
    msg_put_lit(m, "{\"type\":\"response\",\"event\":\"");
    msg_put(m, ev, strlen(ev));
    msg_put_lit(m, "\",\"data\":{\"status\":\"");
    msg_put(m, ev, strlen(ev));
    msg_put_lit(m, "d\",\"channel\":");
    msg_put_str(m, ch, n);
    msg_put_lit(m, "}");
    put_id_tail(m, q, id);
    session_send(s, m);
}

static void publish(struct session *s, const struct req *q, int data, int id)
{
    char ch[MAX_CHANNEL_BYTES], ev[256];
    int tch = obj_get(q, data, "channel"), tev = obj_get(q, data, "event");
    int tpay = obj_get(q, data, "payload");
    long chn = tok_unescape(q, tch, ch, sizeof(ch));
    long evn = tev >= 0 ? tok_unescape(q, tev, ev, sizeof(ev)) : -1;

    if (chn <= 0 || memchr(ch, 0x7f, (size_t)chn)) {
        send_error(s, q, id, "INVALID_CHANNEL",
                   "channel must be 1-255 bytes, no control characters");
        return;
    }
    for (long i = 0; i < chn; i++) {
        if ((unsigned char)ch[i] < 0x20) {
            send_error(s, q, id, "INVALID_CHANNEL", "channel holds a control character");
            return;
        }
    }
    if (evn < 0) {
        memcpy(ev, "message", 7);
        evn = 7;
    }
    struct room *r = room_find(ch, (size_t)chn, true);
    uint64_t seq = ++r->seq;
    uint32_t delivered = 0;

    if (r->nsubs) {
        /* Serialized once, shared by every subscriber's queue. A string payload token excludes
         * its quotes, so put them back. */
        size_t plen = tok_len(q, tpay) + 2;
        struct msg *m = msg_new(ENVELOPE_SLACK + 6 * (size_t)(evn + chn) + plen);
        msg_put_lit(m, "{\"type\":\"event\",\"event\":");
        msg_put_str(m, ev, (size_t)evn);
        msg_put_lit(m, ",\"room\":");
        msg_put_str(m, ch, (size_t)chn);
        msg_put_lit(m, ",\"data\":");
        if (tpay < 0) {
            msg_put_lit(m, "null");
        } else {
            bool str = q->t[tpay].type == JSMN_STRING;
            if (str)
                msg_put_lit(m, "\"");
            msg_put(m, q->js + q->t[tpay].start, tok_len(q, tpay));
            if (str)
                msg_put_lit(m, "\"");
        }
        msg_put_lit(m, ",\"timestamp\":");
        msg_put_timestamp(m);
        msg_put_lit(m, ",\"seq\":");
        msg_put_u64(m, seq);
        msg_put_lit(m, "}");
        for (uint32_t i = 0; i < r->nsubs; i++)
            delivered += session_push(r->subs[i]->sess, m);
        msg_unref(m);
    }

    struct msg *m = msg_new(ENVELOPE_SLACK + 6 * (size_t)chn + tok_len(q, id));
    msg_put_lit(m,
                "{\"type\":\"response\",\"event\":\"publish\",\"data\":{\"status\":\"published\","
                "\"channel\":");
    msg_put_str(m, ch, (size_t)chn);
    msg_put_lit(m, ",\"seq\":");
    msg_put_u64(m, seq);
    msg_put_lit(m, ",\"subscribers\":");
    msg_put_u64(m, delivered);
    msg_put_lit(m, "}");
    put_id_tail(m, q, id);
    session_send(s, m);
}

/* (Un)subscribe, request or short form: chtok is the channel token. */
static void sub_request(struct session *s, const struct req *q, int id, bool sub, int chtok)
{
    char ch[MAX_CHANNEL_BYTES];
    long n = tok_unescape(q, chtok, ch, sizeof(ch));
    bool bad = n <= 0 || memchr(ch, 0x7f, (size_t)n);
    for (long i = 0; !bad && i < n; i++)
        bad = (unsigned char)ch[i] < 0x20;
    if (bad) {
        send_error(s, q, id, "INVALID_CHANNEL",
                   "channel must be 1-255 bytes, no control characters");
        return;
    }
    if (sub)
        subscribe(s, ch, (size_t)n);
    else
        unsubscribe(s, ch, (size_t)n);
    send_sub_response(s, q, id, sub ? "subscribe" : "unsubscribe", ch, (size_t)n);
}

static void handle_message(struct session *s, const char *js, size_t len)
{
    static jsmntok_t toks[MAX_TOKENS]; /* single-threaded server: one scratch array */
    struct req q = {.js = js, .t = toks};
    jsmn_parser p;

    jsmn_init(&p);
    q.n = jsmn_parse(&p, js, len, toks, MAX_TOKENS);
    if (q.n <= 0 || toks[0].type != JSMN_OBJECT) {
        send_error(s, &q, -1, "INVALID_MESSAGE",
                   q.n == JSMN_ERROR_NOMEM ? "too complex" : "not a JSON object");
        return;
    }
    int type = obj_get(&q, 0, "type");
    if (type >= 0 && tok_eq(&q, type, "ping")) {
        struct msg *m = msg_new(16);
        msg_put_lit(m, "{\"type\":\"pong\"}");
        session_send(s, m);
        return;
    }
    if (type >= 0 && (tok_eq(&q, type, "subscribe") || tok_eq(&q, type, "unsubscribe"))) {
        sub_request(s, &q, -1, tok_eq(&q, type, "subscribe"), obj_get(&q, 0, "channel"));
        return;
    }
    if (type < 0 || !tok_eq(&q, type, "request")) {
        send_error(s, &q, -1, "INVALID_MESSAGE", "unknown type");
        return;
    }
    int id = obj_get(&q, 0, "id");
    if (id < 0)
        id = obj_get(&q, 0, "correlation_id");
    if (id >= 0 && q.t[id].type != JSMN_STRING &&
        !(q.t[id].type == JSMN_PRIMITIVE &&
          (js[q.t[id].start] == '-' || (js[q.t[id].start] >= '0' && js[q.t[id].start] <= '9')))) {
        send_error(s, &q, -1, "INVALID_MESSAGE", "id must be a string or a number");
        return;
    }
    int ev = obj_get(&q, 0, "event"), data = obj_get(&q, 0, "data");
    if (ev < 0 || q.t[ev].type != JSMN_STRING) {
        send_error(s, &q, id, "INVALID_MESSAGE", "no event");
        return;
    }
    if (data >= 0 && q.t[data].type != JSMN_OBJECT) {
        send_error(s, &q, id, "INVALID_MESSAGE", "data must be an object");
        return;
    }
    if (tok_eq(&q, ev, "ping")) {
        struct msg *m = msg_new(ENVELOPE_SLACK + tok_len(&q, id));
        msg_put_lit(m, "{\"type\":\"response\",\"event\":\"pong\",\"data\":{}");
        put_id_tail(m, &q, id);
        session_send(s, m);
    } else if (tok_eq(&q, ev, "subscribe") || tok_eq(&q, ev, "unsubscribe")) {
        sub_request(s, &q, id, tok_eq(&q, ev, "subscribe"), obj_get(&q, data, "channel"));
    } else if (tok_eq(&q, ev, "publish")) {
        publish(s, &q, data, id);
    } else {
        send_error(s, &q, id, "UNKNOWN_REQUEST", "unknown request");
    }
}

static void send_welcome(struct session *s)
{
    struct msg *m = msg_new(ENVELOPE_SLACK + 64);
    msg_put_lit(
        m, "{\"type\":\"event\",\"event\":\"session.created\",\"data\":{\"connection_id\":\"lws-");
    msg_put_u64(m, s->id);
    msg_put_lit(m, "\",\"server\":\"lws-broadcast\",\"heartbeat_s\":");
    msg_put_u64(m, HEARTBEAT_S);
    msg_put_lit(m, ",\"max_message_bytes\":");
    msg_put_u64(m, MAX_MESSAGE_BYTES);
    msg_put_lit(m, "},\"timestamp\":");
    msg_put_timestamp(m);
    msg_put_lit(m, "}");
    session_send(s, m);
}

/* ---- the lws protocol callback ---- */

static int close_with(struct lws *wsi, int code, const char *reason)
{
    lws_close_reason(wsi, (enum lws_close_status)code, (unsigned char *)(uintptr_t)reason,
                     strlen(reason));
    return -1;
}

static int callback_ringcast(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                             void *in, size_t len)
{
    struct session *s = user;

    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        s->wsi = wsi;
        s->id = next_session_id++;
        send_welcome(s);
        return 0;

    case LWS_CALLBACK_CLOSED: session_destroy(s); return 0;

    case LWS_CALLBACK_RECEIVE: {
        if (lws_frame_is_binary(wsi))
            return close_with(wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                              "binary messages are not supported");
        bool complete = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
        if (s->rxlen + len > MAX_MESSAGE_BYTES)
            return close_with(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "message too big");
        if (complete && s->rxlen == 0) {
            handle_message(s, in, len); /* the common case: the whole request in one piece */
            return 0;
        }
        if (!s->rx)
            s->rx = xrealloc(NULL, MAX_MESSAGE_BYTES);
        memcpy(s->rx + s->rxlen, in, len);
        s->rxlen += len;
        if (complete) {
            handle_message(s, s->rx, s->rxlen);
            s->rxlen = 0;
        }
        return 0;
    }

    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (s->culled || !s->qlen)
            return 0;
        struct msg *m = s->q[s->qhead];
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
        s->qbytes -= m->len;
        /* lws buffers whatever the socket does not take now and holds back the next
         * writeable callback until it is flushed; a short count is a dead connection. */
        int n = lws_write(wsi, msg_data(m), m->len, LWS_WRITE_TEXT);
        size_t want = m->len;
        msg_unref(m);
        if (n < (int)want)
            return -1;
        if (s->qlen)
            lws_callback_on_writable(wsi);
        return 0;
    }

    default:
        /* Plain HTTP (not an upgrade) lands here too: protocols[0] is the default. */
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* protocols[0] is the one an upgrade without Sec-WebSocket-Protocol binds to. */
static const struct lws_protocols protocols[] = {
    {
        .name = "ringcast",
        .callback = callback_ringcast,
        .per_session_data_size = sizeof(struct session),
        .rx_buffer_size = RX_CHUNK,
        .tx_packet_size = 2 * MAX_MESSAGE_BYTES, /* 0 would cap one send() at rx_buffer_size */
    },
    {.name = NULL},
};

static const lws_retry_bo_t heartbeat = {
    .secs_since_valid_ping = HEARTBEAT_S,
    .secs_since_valid_hangup = HANGUP_S,
};

static volatile sig_atomic_t interrupted;
static struct lws_context *context;

static void on_signal(int sig)
{
    interrupted = sig;
    if (context)
        lws_cancel_service(context);
}

static void usage(FILE *f)
{
    fprintf(
        f, "usage: lws-broadcast [--host ADDR] [--port N]\n"
           "A libwebsockets broadcast server speaking ringcast's protocol (peer for bench/run).\n");
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    long port = 8765;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "--host") || !strcmp(argv[i], "--bind")) && i + 1 < argc) {
            host = argv[++i];
        } else if (!strcmp(argv[i], "--port") && i + 1 < argc) {
            char *end;
            port = strtol(argv[++i], &end, 10);
            if (*end || port < 0 || port > 65535) {
                fprintf(stderr, "lws-broadcast: bad port %s\n", argv[i]);
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }

    /* lws sizes its fd table from RLIMIT_NOFILE: raise the soft limit for 10k connections. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            fprintf(stderr, "lws-broadcast: setrlimit: %s\n", strerror(errno));
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = (int)port;
    info.iface = host;
    info.protocols = protocols;
    info.retry_and_idle_policy = &heartbeat;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);

    context = lws_create_context(&info);
    if (!context) {
        fprintf(stderr, "lws-broadcast: lws_create_context failed (port %ld in use?)\n", port);
        return 1;
    }
    const char *version = lws_get_library_version(); /* "4.1.6-" or "4.1.6-v4.1.6 hash" */
    fprintf(stderr, "lws-broadcast (libwebsockets %.*s) listening on %s:%ld\n",
            (int)strcspn(version, "- "), version, host, port);

    while (!interrupted)
        if (lws_service(context, 0) < 0)
            break;

    /* Said on stderr so that a server stopped by someone else's signal is told from a crash. */
    if (interrupted)
        fprintf(stderr, "lws-broadcast: %s, shutting down\n", strsignal(interrupted));
    lws_context_destroy(context);
    return 0;
}
