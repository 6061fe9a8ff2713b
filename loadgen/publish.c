/* publish.c - the publishers: when to publish (open loop on a fixed schedule, or closed loop
 * with a window of publishes in flight), what a publish frame holds, and the closed loop's
 * completion counting.
 *
 * Open loop: publish number n (0, 1, 2, ... over all publishers) is due at
 * t_start + n / rate, and publisher j sends the n with n % publishers == j. A publisher that
 * falls behind sends what is due in a burst (capped per loop turn so receiving never starves):
 * the corrected latency, taken from the intended time, shows what the delay cost.
 *
 * Closed loop: each publisher keeps its share of --window publishes in flight; one is done when
 * its reply has been read AND every subscriber of its room got it (the slot counts down the
 * subscribers plus one for the reply: receivers on any worker count down deliveries, the
 * publisher's own worker the reply), or when it has been outstanding longer than --drain (then
 * it is abandoned: the missing deliveries are reported as lost at the end). Independently of
 * abandonment, a publisher never has more than its window of publishes unanswered (sent, reply
 * not yet read): a publisher whose replies are not being read stops sending rather than piling
 * replies up in the server's send queue (which a server bounds: ringcast closes it with 4008).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/json.h"

#include "conn.h"
#include "payload.h"

/* Most publishes one publisher sends in one loop turn when catching up. */
#define LG_MAX_BURST 256
/* A publish frame: the envelope around the payload. */
#define LG_ENVELOPE_OVERHEAD 512

static uint64_t intended_ns(const struct lg_run *run, const struct lg_publisher *pub, uint64_t k)
{
    double n = (double)k * run->cfg.publishers + pub->idx;
    return run->t_start + (uint64_t)(n * 1e9 / run->cfg.rate);
}

/* Chunks of closed-loop records per publisher: 4096 * 4096 publishes (32 KiB of pointers). */
#define LG_CLOSED_LOOP_CHUNKS 4096u

int lg_publisher_init(const struct lg_run *run, struct lg_publisher *pub)
{
    const struct lg_config *cfg = &run->cfg;
    uint64_t n = LG_CLOSED_LOOP_CHUNKS;
    if (cfg->rate > 0) {
        /* Open loop: the schedule says how many this publisher can send, at most. */
        double total = cfg->rate * (double)(cfg->warmup_ns + cfg->duration_ns) / 1e9;
        n = (uint64_t)ceil(total / (cfg->publishers ? cfg->publishers : 1)) / LG_PUBREC_CHUNK + 2;
    }
    pub->nchunks = (unsigned)n;
    pub->recs = calloc(n, sizeof(*pub->recs));
    return pub->recs ? 0 : -ENOMEM;
}

struct lg_pubrec *lg_pubrec_get(const struct lg_publisher *pub, uint64_t k)
{
    uint64_t c = (k - 1) / LG_PUBREC_CHUNK;
    if (k == 0 || c >= pub->nchunks)
        return NULL;
    struct lg_pubrec *chunk = atomic_load_explicit(&pub->recs[c], memory_order_acquire);
    return chunk ? &chunk[(k - 1) % LG_PUBREC_CHUNK] : NULL;
}

/* The record for the publisher's next publish, allocating its chunk when it starts one. NULL
 * when the table is full or memory ran out: the publisher then stops (reported). */
static struct lg_pubrec *next_rec(struct lg_publisher *pub)
{
    uint64_t c = pub->k / LG_PUBREC_CHUNK;
    if (c >= pub->nchunks)
        return NULL;
    struct lg_pubrec *chunk = atomic_load_explicit(&pub->recs[c], memory_order_relaxed);
    if (!chunk) {
        chunk = calloc(LG_PUBREC_CHUNK, sizeof(*chunk));
        if (!chunk)
            return NULL;
        atomic_store_explicit(&pub->recs[c], chunk, memory_order_release);
    }
    return &chunk[pub->k % LG_PUBREC_CHUNK];
}

/* Returns false when the publisher cannot send (no record left for it). */
static bool send_publish(struct lg_worker *w, struct lg_publisher *pub, uint64_t intended)
{
    struct lg_run *run = w->run;
    const struct lg_config *cfg = &run->cfg;
    unsigned r = pub->rooms[pub->k % pub->nrooms];
    struct lg_room *room = &run->rooms[r];
    uint64_t now = lg_now_ns();
    struct lg_pubrec *rec = next_rec(pub);
    if (!rec) {
        pub->recs_full = true;
        return false;
    }
    struct lg_payload pl = {
        .q = atomic_fetch_add_explicit(&room->seq, 1, memory_order_relaxed) + 1,
        .p = pub->idx,
        .k = pub->k + 1,
        .t = now,
        .i = intended,
    };
    uint32_t subs = atomic_load_explicit(&room->subs, memory_order_relaxed);
    rec->expect = subs;
    if (cfg->rate == 0) {
        struct lg_pubslot *slot = &pub->slots[pl.k % LG_MAX_WINDOW];
        /* The slot's earlier publish (k - 256) is still outstanding: a delivery of it was
         * lost. Abandon it now, counted, rather than let it hold a place in the window for
         * the rest of the run (its missing deliveries count as lost at the end). */
        if (atomic_load_explicit(&slot->k, memory_order_relaxed) != 0 &&
            atomic_exchange(&slot->remaining, INT32_MIN / 2) > 0)
            pub->abandoned++;
        /* remaining before k: a receiver only counts down a slot whose k matches. The reply
         * is one more thing the slot waits for. */
        atomic_store_explicit(&slot->remaining, (int32_t)subs + 1, memory_order_relaxed);
        slot->sent_ns = now;
        atomic_store_explicit(&slot->k, pl.k, memory_order_release);
    }
    pub->k++;

    char buf[LG_ENVELOPE_OVERHEAD + 4096];
    char *heap = NULL, *out = buf;
    size_t cap = sizeof(buf);
    if (cfg->size + LG_ENVELOPE_OVERHEAD > cap) {
        cap = cfg->size + LG_ENVELOPE_OVERHEAD + LG_PAYLOAD_MAX_FIXED;
        out = heap = malloc(cap);
        if (!out)
            return true;
    }
    struct jw jw;
    jw_init(&jw, out, cap);
    if (pub->conn->http) {
        /* The same event as over WebSocket; the body's length is written in afterwards. */
        jw_lit(&jw, "POST /api/publish HTTP/1.1\r\nHost: ringcast\r\nX-API-Key: ");
        jw_raw(&jw, cfg->api_key, strlen(cfg->api_key));
        jw_lit(&jw, "\r\nContent-Type: application/json\r\nContent-Length:           \r\n\r\n");
    }
    size_t body_at = jw.len;
    if (pub->conn->http)
        jw_lit(&jw, "{\"channel\":");
    else
        jw_lit(&jw, "{\"type\":\"request\",\"event\":\"publish\",\"data\":{\"channel\":");
    jw_str(&jw, room->name, room->len);
    jw_lit(&jw, ",\"event\":");
    jw_str(&jw, cfg->event_name, strlen(cfg->event_name));
    if (pub->conn->http)
        jw_lit(&jw, ",\"data\":");
    else
        jw_lit(&jw, ",\"payload\":");
    if (!jw.overflow) {
        size_t n = lg_payload_write(out + jw.len, cap - jw.len, &pl, cfg->size);
        jw.len += n;
        jw.overflow = n == 0;
    }
    if (pub->conn->http) {
        jw_lit(&jw, "}");
        if (!jw.overflow) {
            /* Right-aligned in the 10 spaces reserved after "Content-Length:". */
            char num[16];
            int nl = snprintf(num, sizeof(num), "%zu", jw.len - body_at);
            memcpy(out + body_at - 4 - nl, num, (size_t)nl);
            if (lg_conn_http_expect(pub->conn, pl.k) == 0)
                lg_conn_queue(w, pub->conn, out, jw.len);
        }
    } else {
        jw_lit(&jw, "},\"id\":");
        jw_u64(&jw, pl.k);
        jw_lit(&jw, "}");
        if (!jw.overflow)
            lg_conn_queue_frame(w, pub->conn, WS_OP_TEXT, out, jw.len);
    }
    free(heap);

    w->st.pub_sent++;
    w->st.expected += subs;
    if (intended >= run->warm_end)
        w->st.pub_sent_measured++;
    if (now >= run->warm_end && now < run->pub_end)
        w->st.pub_sent_in_period++;
    if (cfg->rate > 0)
        hist_record(&w->lag, now > intended ? now - intended : 0);
    return true;
}

/* Closed loop: gives up on the oldest outstanding publish once it is older than --drain. */
static void reap(struct lg_worker *w, struct lg_publisher *pub, uint64_t now)
{
    while (pub->scan_from < pub->k) {
        struct lg_pubslot *slot = &pub->slots[(pub->scan_from + 1) % LG_MAX_WINDOW];
        /* A slot that holds a later publish: this one was abandoned when the slot was reused. */
        if (atomic_load_explicit(&slot->k, memory_order_relaxed) == pub->scan_from + 1 &&
            atomic_load_explicit(&slot->remaining, memory_order_relaxed) > 0) {
            if (now - slot->sent_ns < w->run->cfg.drain_ns)
                return;
            if (atomic_exchange(&slot->remaining, INT32_MIN / 2) > 0)
                pub->abandoned++;
        }
        pub->scan_from++;
    }
}

uint64_t lg_publish_tick(struct lg_worker *w, uint64_t now)
{
    struct lg_run *run = w->run;
    uint64_t next = UINT64_MAX;
    for (unsigned i = 0; i < w->npubs; i++) {
        struct lg_publisher *pub = w->pubs[i];
        if (pub->conn->state != CS_READY || pub->recs_full)
            continue;
        if (run->cfg.rate > 0) {
            unsigned burst = 0;
            uint64_t due;
            while ((due = intended_ns(run, pub, pub->k)) <= now && due < run->pub_end &&
                   burst < LG_MAX_BURST) {
                if (!send_publish(w, pub, due))
                    break;
                burst++;
            }
            if (burst == LG_MAX_BURST)
                next = now;
            else if (due < run->pub_end && due < next)
                next = due;
        } else {
            reap(w, pub, now);
            if (now >= run->pub_end)
                continue;
            uint64_t done = atomic_load_explicit(&pub->completed, memory_order_acquire);
            while (pub->k - done - pub->abandoned < pub->window &&
                   pub->k - pub->answered < pub->window)
                if (!send_publish(w, pub, now))
                    break;
        }
    }
    return next;
}

/* Closed loop: one of the things publish k waits for (a delivery, or its reply) happened. */
static void slot_countdown(struct lg_worker *w, struct lg_publisher *pub, uint64_t k)
{
    struct lg_run *run = w->run;
    struct lg_pubslot *slot = &pub->slots[k % LG_MAX_WINDOW];
    if (atomic_load_explicit(&slot->k, memory_order_acquire) != k)
        return;
    if (atomic_fetch_sub_explicit(&slot->remaining, 1, memory_order_acq_rel) == 1) {
        atomic_fetch_add_explicit(&pub->completed, 1, memory_order_release);
        if (pub->worker != w->id)
            lg_conn_wake(w, run->ring_fds[pub->worker]);
    }
}

void lg_publish_delivered(struct lg_worker *w, uint64_t p, uint64_t k)
{
    slot_countdown(w, &w->run->pubs[p], k);
}

void lg_publish_answered(struct lg_worker *w, struct lg_conn *c, uint64_t k, bool ok,
                         struct span code)
{
    struct lg_publisher *pub = c->pub;
    struct lg_pubrec *rec = pub ? lg_pubrec_get(pub, k) : NULL;
    if (!rec || k > pub->k)
        return;
    if (atomic_load_explicit(&rec->answer, memory_order_relaxed) != LG_ANS_NONE) {
        w->st.errors++; /* a second answer to one publish */
        return;
    }
    pub->answered++;
    if (ok) {
        atomic_store_explicit(&rec->answer, LG_ANS_ACKED, memory_order_relaxed);
        w->st.pub_acked++;
        if (w->run->cfg.rate == 0)
            slot_countdown(w, pub, k);
        return;
    }
    /* Refused (rate limited, too large, ...): its subscribers are no longer expected to get it
     * (this publish's record says so; no other publish is touched), the refusal fails the run
     * unless --max-refused allows it, and its reason is counted for the message. */
    atomic_store_explicit(&rec->answer, LG_ANS_REFUSED, memory_order_relaxed);
    w->st.pub_errors++;
    unsigned i = 0;
    size_t n =
        code.len < sizeof(w->reasons[0].code) - 1 ? code.len : sizeof(w->reasons[0].code) - 1;
    for (; i < LG_MAX_REASONS && w->reasons[i].n; i++)
        if (strlen(w->reasons[i].code) == n && !memcmp(w->reasons[i].code, code.base, n))
            break;
    if (i == LG_MAX_REASONS)
        i = LG_MAX_REASONS - 1; /* more kinds than kept: the last one collects the rest */
    if (!w->reasons[i].n) {
        memcpy(w->reasons[i].code, n ? code.base : "(no code)", n ? n : 9);
        w->reasons[i].code[n ? n : 9] = 0;
    }
    w->reasons[i].n++;
    if (w->run->cfg.rate == 0) {
        struct lg_pubslot *slot = &pub->slots[k % LG_MAX_WINDOW];
        if (atomic_load(&slot->k) == k && atomic_exchange(&slot->remaining, INT32_MIN / 2) > 0)
            pub->abandoned++;
    }
}
