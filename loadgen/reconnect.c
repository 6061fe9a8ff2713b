/* reconnect.c - --reconnect-every: see reconnect.h. */
#include "reconnect.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "payload.h"
#include "series.h"

/* The shortest time between two scans of a worker's subscribers. */
#define SCAN_NS 1000000ull

struct lg_reconnect {
    uint64_t rng;
    uint64_t next_scan;
};

static uint64_t rnd(struct lg_reconnect *R)
{
    R->rng ^= R->rng >> 12;
    R->rng ^= R->rng << 25;
    R->rng ^= R->rng >> 27;
    return R->rng * UINT64_C(2685821657736338717);
}

/* Uniform in [lo, lo + span]. */
static uint64_t uniform(struct lg_reconnect *R, uint64_t lo, uint64_t span)
{
    return lo + (span ? rnd(R) % (span + 1) : 0);
}

int lg_reconnect_init(struct lg_worker *w)
{
    const struct lg_config *cfg = &w->run->cfg;
    if (!cfg->reconnect_ns)
        return 0;
    struct lg_reconnect *R = calloc(1, sizeof(*R));
    if (!R)
        return -ENOMEM;
    w->rc = R;
    R->rng = UINT64_C(0xD1B54A32D192ED03) ^ ((uint64_t)w->id << 40) ^ lg_now_ns();
    for (unsigned i = 0; i < w->nconns; i++) {
        struct lg_conn *c = w->conns[i];
        if (c->is_pub)
            continue;
        c->rc = calloc(1, sizeof(*c->rc));
        if (!c->rc)
            return -ENOMEM;
        c->rc->epoch = calloc(c->nrooms ? c->nrooms : 1, sizeof(uint64_t));
        c->rc->has_epoch = calloc(c->nrooms ? c->nrooms : 1, sizeof(bool));
        if (!c->rc->epoch || !c->rc->has_epoch)
            return -ENOMEM;
    }
    return 0;
}

void lg_reconnect_free(struct lg_worker *w)
{
    for (unsigned i = 0; i < w->nconns; i++) {
        struct lg_conn *c = w->conns[i];
        if (c->rc) {
            free(c->rc->epoch);
            free(c->rc->has_epoch);
            free(c->rc);
            c->rc = NULL;
        }
    }
    free(w->rc);
    w->rc = NULL;
}

void lg_reconnect_tick(struct lg_worker *w, uint64_t now, uint64_t *deadline)
{
    struct lg_reconnect *R = w->rc;
    struct lg_run *run = w->run;
    const struct lg_config *cfg = &run->cfg;
    int phase = lg_phase(run);
    if (phase < LG_PHASE_RUN)
        return; /* nothing drops while the run is being set up */
    if (now < R->next_scan) {
        if (R->next_scan < *deadline)
            *deadline = R->next_scan;
        return;
    }
    /* Drops happen while publishing; whoever is away when it ends still comes back (the drain
     * waits for the replays). */
    bool may_drop = phase == LG_PHASE_RUN && now < run->pub_end;
    uint64_t next = UINT64_MAX;
    for (unsigned i = 0; i < w->nconns; i++) {
        struct lg_conn *c = w->conns[i];
        struct lg_rconn *rc = c->rc;
        if (!rc)
            continue;
        if (rc->away) {
            if (rc->due <= now) {
                if (lg_conn_quiet(c)) {
                    rc->away = false;
                    rc->resuming = true;
                    rc->due = 0;
                    lg_conn_restart(w, c, now);
                    continue;
                }
                rc->due = now + SCAN_NS; /* its last socket's completions are still due */
            }
        } else if (c->state == CS_READY && may_drop) {
            if (rc->due == 0)
                rc->due = now + uniform(R, cfg->reconnect_ns, cfg->reconnect_jitter_ns);
            if (rc->due <= now) {
                /* A pending send could hold a SO_LINGER 0 close back: those go cleanly. */
                bool rst = (rnd(R) & 1) && !c->send_busy;
                lg_conn_drop(w, c, rst);
                if (rst)
                    w->st.drops_rst++;
                else
                    w->st.drops_clean++;
                rc->away = true;
                uint64_t b = cfg->reconnect_backoff_ns;
                rc->due = now + uniform(R, b / 2, b); /* backoff/2 .. 3*backoff/2 */
            }
        } else {
            continue;
        }
        if (rc->due < next)
            next = rc->due;
    }
    R->next_scan = next > now + SCAN_NS ? next : now + SCAN_NS;
    if (R->next_scan < *deadline)
        *deadline = R->next_scan;
}

void lg_reconnect_sub_fields(struct lg_worker *w, struct lg_conn *c, unsigned i, struct jw *jw,
                             uint64_t now)
{
    struct lg_rconn *rc = c->rc;
    if (!rc || !rc->resuming)
        return;
    rc->t_resub = now;
    uint64_t since = c->last_srv[i];
    if (!since) {
        /* Nothing of the room seen yet: everything from this run's first publish to it. */
        uint64_t first =
            atomic_load_explicit(&w->run->rooms[c->rooms[i]].first_srv_seq, memory_order_relaxed);
        if (!first)
            return; /* nothing published yet: a plain subscribe misses nothing */
        since = first - 1;
    }
    jw_lit(jw, ",\"since\":");
    jw_u64(jw, since);
    if (rc->has_epoch[i]) {
        static const char hex[] = "0123456789abcdef";
        char ep[16];
        for (int k = 0; k < 16; k++)
            ep[k] = hex[(rc->epoch[i] >> (60 - 4 * k)) & 15];
        jw_lit(jw, ",\"epoch\":\"");
        jw_raw(jw, ep, sizeof(ep));
        jw_lit(jw, "\"");
    }
}

/* The value after "key": in a JSON object's raw text (a small, flat search: these answers are
 * the engine's own, and a wrong guess only costs a recovered count, never a delivery). */
static const char *find_key(struct span data, const char *key, size_t klen)
{
    const char *p = memmem(data.base, data.len, key, klen);
    return p ? p + klen : NULL;
}

void lg_reconnect_subscribed(struct lg_worker *w, struct lg_conn *c, unsigned i,
                             const struct lg_msg *m)
{
    struct lg_rconn *rc = c->rc;
    if (!rc || !m->data.base)
        return;
    const char *end = m->data.base + m->data.len;
    const char *p = find_key(m->data, "\"epoch\":\"", 9);
    uint64_t epoch = 0;
    bool have = false;
    if (p) {
        int n = 0;
        for (; p < end && n < 16; p++, n++) {
            char ch = *p;
            unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                         : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                         : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
                                                  : 16u;
            if (d == 16)
                break;
            epoch = epoch << 4 | d;
        }
        have = n > 0;
    }
    if (rc->resuming) {
        p = find_key(m->data, "\"recovered\":", 12);
        if (p && p < end && *p == 't') {
            w->st.resumes_recovered++;
        } else if (p) {
            w->st.resumes_unrecovered++;
            /* A new epoch is a new seq space: the next event may have any seq. */
            if (have && (!rc->has_epoch[i] || epoch != rc->epoch[i]))
                c->last_srv[i] = 0;
        }
    }
    if (have) {
        rc->epoch[i] = epoch;
        rc->has_epoch[i] = true;
    }
}

void lg_reconnect_ready(struct lg_worker *w, struct lg_conn *c, uint64_t now)
{
    w->st.reconnects++;
    if (w->series)
        w->series->b[lg_series_idx(w->series, w->run->t_start, now)].reconnects++;
    c->rc->due = 0; /* the next drop is drawn at the next scan */
    if (w->rc->next_scan > now + SCAN_NS)
        w->rc->next_scan = now + SCAN_NS;
}

void lg_reconnect_published(struct lg_worker *w, struct lg_conn *c, uint64_t k,
                            const struct lg_msg *m)
{
    struct lg_publisher *pub = c->pub;
    if (!pub || !m->data.base || k == 0)
        return;
    const char *p = find_key(m->data, "\"seq\":", 6);
    if (!p)
        return;
    const char *end = m->data.base + m->data.len;
    uint64_t seq = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++)
        seq = seq * 10 + (uint64_t)(*p - '0');
    if (!seq)
        return;
    struct lg_room *room = &w->run->rooms[pub->rooms[(k - 1) % pub->nrooms]];
    uint64_t cur = atomic_load_explicit(&room->first_srv_seq, memory_order_relaxed);
    while ((cur == 0 || seq < cur) &&
           !atomic_compare_exchange_weak_explicit(&room->first_srv_seq, &cur, seq,
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}
