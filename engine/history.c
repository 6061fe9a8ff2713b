/* history.c - room history, epochs, idle rooms and long polls (see history.h). */
#include "history.h"
#include "cluster.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "broadcast.h"
#include "frame.h"
#include "http_api.h"
#include "log.h"
#include "sendq.h"
#include "worker.h"

/* ---- epochs ---- */

/* splitmix64 over a per-thread state seeded from getrandom: epochs only need to differ, and
 * a room creation must not cost a system call. */
static __thread uint64_t epoch_state;
static __thread bool epoch_seeded;

uint64_t history_epoch_new(void)
{
    if (!epoch_seeded) {
        if (getrandom(&epoch_state, sizeof(epoch_state), 0) != (ssize_t)sizeof(epoch_state)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            epoch_state = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
        }
        epoch_seeded = true;
    }
    for (;;) {
        uint64_t z = (epoch_state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        if (z)
            return z;
    }
}

void history_epoch_format(uint64_t epoch, char out[HISTORY_EPOCH_HEX])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = HISTORY_EPOCH_HEX - 1; i >= 0; i--, epoch >>= 4)
        out[i] = hex[epoch & 15];
}

bool history_epoch_parse(struct span s, uint64_t *out)
{
    if (s.len < 1 || s.len > HISTORY_EPOCH_HEX)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        char ch = s.base[i];
        unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                     : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
                                              : 16u;
        if (d > 15)
            return false;
        v = v << 4 | d;
    }
    *out = v;
    return true;
}

/* ---- the ring ---- */

struct hist_entry *history_at(struct room *r, uint32_t i)
{
    struct history *h = r->hist;
    return &h->e[(h->head + i) % h->cap];
}

static void drop_oldest(struct history *h)
{
    frame_release(h->e[h->head].f);
    h->head = (h->head + 1) % h->cap;
    h->len--;
}

void history_free(struct history *h)
{
    if (!h)
        return;
    while (h->len)
        drop_oldest(h);
    free(h);
}

void history_prune(struct worker *w, struct room *r)
{
    struct history *h = r->hist;
    unsigned ttl = w->cfg->history_ttl;
    if (!h || !ttl)
        return;
    int64_t cutoff = w->mono_ms - (int64_t)ttl * 1000;
    while (h->len && h->e[h->head].mono_ms <= cutoff)
        drop_oldest(h);
}

/* The history is gone (memory): a new epoch tells resuming clients so. */
static void lose(struct room *r)
{
    if (r->hist)
        while (r->hist->len)
            drop_oldest(r->hist);
    r->epoch = history_epoch_new();
}

/* Grows r's ring towards history-size (doubling from 8): a room with a few events does not pay
 * for a hundred slots. False when memory is short. */
static bool grow(struct worker *w, struct room *r)
{
    struct history *h = r->hist;
    uint32_t k = w->cfg->history_size;
    uint32_t cap = h ? h->cap * 2 : 8;
    if (cap > k)
        cap = k;
    struct history *n = malloc(sizeof(*n) + (size_t)cap * sizeof(n->e[0]));
    if (!n)
        return false;
    n->head = 0;
    n->cap = cap;
    n->len = 0;
    if (h) {
        for (uint32_t i = 0; i < h->len; i++)
            n->e[i] = h->e[(h->head + i) % h->cap];
        n->len = h->len;
        free(h);
    }
    r->hist = n;
    return true;
}

void history_record(struct worker *w, struct room *r, struct frame *f, uint64_t seq)
{
    uint32_t k = w->cfg->history_size;
    if (!k)
        return;
    history_prune(w, r);
    struct history *h = r->hist;
    if ((!h || (h->len == h->cap && h->cap < k)) && !grow(w, r)) {
        w->m.alloc_failures++;
        lose(r);
        return;
    }
    h = r->hist;
    if (h->len == h->cap)
        drop_oldest(h); /* the K-th event pushes out the oldest: --history-size */
    frame_ref(f, 1);
    h->e[(h->head + h->len) % h->cap] = (struct hist_entry){f, seq, w->mono_ms};
    h->len++;
}

bool history_since(struct worker *w, struct room *r, bool has_epoch, uint64_t epoch, uint64_t since,
                   uint64_t max_bytes, uint32_t *first, uint32_t *n, uint64_t *last)
{
    *first = 0;
    *n = 0;
    *last = since;
    bool from_start = (!has_epoch || epoch == 0) && since == 0;
    if (!r) /* no room: nothing was kept, and nothing happened since "no history" */
        return from_start || (has_epoch && epoch == 0 && since == 0);
    if (!from_start && (!has_epoch || epoch != r->epoch))
        return false;
    if (since > r->seq)
        return false;
    if (since == r->seq)
        return true;
    history_prune(w, r);
    struct history *h = r->hist;
    if (!h || !h->len)
        return false;
    uint64_t oldest = h->e[h->head].seq;
    if (oldest > since + 1)
        return false; /* evicted (history-size) or expired (history-ttl) */
    /* The ring is contiguous in seq within an epoch: the first to send is at since+1. */
    uint32_t i = (uint32_t)(since + 1 - oldest);
    uint64_t bytes = 0;
    *first = i;
    for (; i < h->len; i++) {
        struct hist_entry *e = history_at(r, i);
        bytes += sendq_frame_cost(e->f);
        if (bytes > max_bytes)
            break;
        (*n)++;
        *last = e->seq;
    }
    /* A replay that would not fit half a queue is not attempted: the client resyncs rather
     * than being closed as a slow consumer over and over. Polls take a first page instead. */
    return *n > 0;
}

/* ---- idle rooms ---- */

bool history_make_room(struct worker *w)
{
    struct room_table *t = &w->rooms;
    while (atomic_load_explicit(&w->eng->nrooms, memory_order_relaxed) >= w->cfg->max_rooms) {
        struct room *r = t->idle_head;
        if (!r)
            return false;
        w->m.history_evicted++;
        room_remove(t, r);
    }
    return true;
}

/* ---- long polls ---- */

/* Answers poll m (an XM_POLL, consumed) from home room r (NULL: no room) at once. */
static void poll_answer(struct worker *w, struct room *r, struct xmsg *m)
{
    uint32_t first, n;
    uint64_t last;
    /* A page fits half a queue, so the HTTP answer never outgrows what a client may hold. */
    bool ok = history_since(w, r, m->epoch != 0, m->epoch, m->since, w->cfg->max_queue_bytes / 2,
                            &first, &n, &last);
    struct xmsg *a = bc_xmsg_new(w, XM_POLL_ACK, (struct span){m->data, m->room_len}, n, 0);
    if (!a) {
        w->m.alloc_failures++;
        a = m; /* answered as an error: no frames */
        a->type = XM_POLL_ACK;
        a->err = true;
        a->nframes = 0;
    } else {
        a->ctx = m->ctx;
        a->http = true;
        a->from = m->from;
        struct frame **fs = bc_xmsg_frames(a);
        for (uint32_t i = 0; i < n; i++) {
            fs[i] = history_at(r, first + i)->f;
            frame_ref(fs[i], 1);
        }
        a->nframes = n;
        free(m);
    }
    a->recovered = ok;
    a->epoch = r ? r->epoch : 0;
    /* The position to poll from next: the last event sent, or where the room is (also after
     * recovered:false, so a poller that resyncs and passes it back catches up). */
    a->seq = n ? last : r ? r->seq : 0;
    unsigned to = a->from;
    a->from = (uint8_t)w->id;
    if (to == w->id)
        http_api_poll_ack(w, a);
    else
        bc_post(w, to, a);
}

void history_on_poll(struct worker *w, struct xmsg *m)
{
    struct span name = {m->data, m->room_len};
    if (w->eng->cluster && cluster_home_poll(w, m))
        return; /* answered here once the bus has synced the room (cluster.h) */
    struct room *r = room_find(&w->rooms, m->room_hash, name.base, name.len);
    uint32_t first, n;
    uint64_t last;
    bool wait =
        m->deadline_ms > w->mono_ms && !w->draining && w->npolls < HISTORY_POLL_MAX_WAITING &&
        history_since(w, r, m->epoch != 0, m->epoch, m->since, UINT64_MAX, &first, &n, &last) &&
        n == 0;
    if (wait && !r && w->cfg->history_size && history_make_room(w))
        r = room_get(&w->rooms, m->room_hash, name.base, name.len, true, w->eng->nworkers);
    /* Waiting on a room that did not exist is only worth it when its events will be kept:
     * the epoch the poll would then see is new, and with no history nothing is recoverable. */
    if (!wait || !r || (m->epoch != r->epoch && m->epoch != 0)) {
        poll_answer(w, r, m);
        if (r)
            bc_room_release(w, r);
        return;
    }
    room_idle_del(&w->rooms, r);
    m->next = r->waiters;
    r->waiters = m;
    w->npolls++;
    if (!r->has_waiters) {
        r->has_waiters = true;
        r->wnext = w->poll_rooms;
        w->poll_rooms = r;
    }
}

/* Answers r's parked polls whose deadline is before `by` (all of them for INT64_MAX). */
static void answer_waiters(struct worker *w, struct room *r, int64_t by)
{
    struct xmsg **pp = &r->waiters;
    while (*pp) {
        struct xmsg *m = *pp;
        if (m->deadline_ms > by) {
            pp = &m->next;
            continue;
        }
        *pp = m->next;
        m->next = NULL;
        w->npolls--;
        poll_answer(w, r, m);
    }
}

/* Takes rooms without waiters off the worker's list and releases them. */
static void sweep_poll_rooms(struct worker *w)
{
    struct room **pp = &w->poll_rooms;
    while (*pp) {
        struct room *r = *pp;
        if (r->waiters) {
            pp = &r->wnext;
            continue;
        }
        *pp = r->wnext;
        r->has_waiters = false;
        r->wnext = NULL;
        bc_room_release(w, r);
    }
}

void history_wake(struct worker *w, struct room *r)
{
    if (!r->waiters)
        return;
    answer_waiters(w, r, INT64_MAX);
    /* r stays on the worker's list until the next sweep (the caller holds r). */
}

void history_drain(struct worker *w)
{
    for (struct room *r = w->poll_rooms; r; r = r->wnext)
        answer_waiters(w, r, INT64_MAX);
    sweep_poll_rooms(w);
}

void history_free_waiters(struct worker *w)
{
    for (struct room *r = w->poll_rooms; r; r = r->wnext)
        while (r->waiters) {
            struct xmsg *m = r->waiters;
            r->waiters = m->next;
            bc_discard_xmsg(m);
        }
    w->poll_rooms = NULL;
    w->npolls = 0;
}

void history_tick(struct worker *w)
{
    for (struct room *r = w->poll_rooms; r; r = r->wnext)
        if (r->waiters)
            answer_waiters(w, r, w->mono_ms);
    if (w->poll_rooms)
        sweep_poll_rooms(w);
    unsigned ttl = w->cfg->history_ttl;
    if (!ttl)
        return;
    /* Oldest first: an idle room's newest event is no newer than when it went idle (or was
     * last published to), so once its TTL has passed its history is empty. */
    struct room_table *t = &w->rooms;
    while (t->idle_head && t->idle_head->idle_ms + (int64_t)ttl * 1000 <= w->mono_ms) {
        struct room *r = t->idle_head;
        history_prune(w, r);
        if (history_has(r)) {
            room_idle_push(t, r, w->mono_ms); /* published to meanwhile: look again later */
            break;
        }
        room_remove(t, r);
    }
}
