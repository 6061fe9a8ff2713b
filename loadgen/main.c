/* main.c - ringcast-load: parses the scenario, checks the process can hold it, lays out rooms,
 * connections and publishers over the workers, walks the run through its phases (connect,
 * warmup, measure, drain), prints the live line, and hands the merged figures to the reports
 * and gates. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "report.h"
#include "series.h"
#include "tls_client.h"

/* The main thread's tick: how often it looks at the workers during the run. */
#define TICK_NS 100000000ull
/* The last publish is due before pub_end; the drain phase starts this much later, so a worker
 * that wakes a little late still sends it. */
#define DRAIN_GRACE_NS 50000000ull

/* The signal that interrupted the run (SIGINT, SIGTERM), 0 if none. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    interrupted = sig;
}

static uint64_t rd(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Sums one counter over the workers (racy reads while they run: for the live line and for
 * deciding when to stop waiting; the final figures are read after joining). */
#define SUM(run, field) sum_field((run), offsetof(struct lg_stats, field))

static uint64_t sum_field(const struct lg_run *run, size_t off)
{
    uint64_t s = 0;
    for (unsigned i = 0; i < run->cfg.threads; i++)
        s += rd((const uint64_t *)((const char *)&run->workers[i].st + off));
    return s;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    nanosleep(&ts, NULL);
}

/* Raises the open-file limit to what the run needs, up to the hard limit, and refuses plainly
 * when even the hard limit is too low: one process cannot hold more sockets than that. */
static int check_fd_limit(const struct lg_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return 0;
    uint64_t need = (uint64_t)cfg->connections + cfg->publishers + LG_FD_RESERVE;
    if (rl.rlim_max != RLIM_INFINITY && need > rl.rlim_max) {
        unsigned long long maxconn =
            rl.rlim_max > LG_FD_RESERVE ? (unsigned long long)rl.rlim_max - LG_FD_RESERVE : 0;
        lg_error("%u connections need %llu open files, but this process may open at most %llu "
                 "(hard RLIMIT_NOFILE).",
                 cfg->connections + cfg->publishers, (unsigned long long)need,
                 (unsigned long long)rl.rlim_max);
        fprintf(stderr,
                "ringcast-load: one process can hold at most %llu connections here: run several "
                "ringcast-load processes (each with --connections <= %llu), or raise the hard "
                "limit (ulimit -Hn, /etc/security/limits.conf) as root.\n",
                maxconn, maxconn);
        return -1;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= need)
        return 0;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        lg_error("cannot raise RLIMIT_NOFILE: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int layout(struct lg_run *run)
{
    struct lg_config *cfg = &run->cfg;
    unsigned nsub = cfg->connections, npub = cfg->publishers, T = cfg->threads;
    run->nconns = nsub + npub;
    run->rooms = calloc(cfg->nrooms, sizeof(*run->rooms));
    run->conns = calloc(run->nconns ? run->nconns : 1, sizeof(*run->conns));
    run->pubs = calloc(npub ? npub : 1, sizeof(*run->pubs));
    run->workers = calloc(T, sizeof(*run->workers));
    unsigned hsize = 16;
    while (hsize < cfg->nrooms * 2)
        hsize *= 2;
    run->room_hash = malloc(hsize * sizeof(int32_t));
    run->room_hash_mask = hsize - 1;
    if (!run->rooms || !run->conns || !run->pubs || !run->workers || !run->room_hash)
        return -1;
    memset(run->room_hash, 0xff, hsize * sizeof(int32_t));
    for (unsigned r = 0; r < cfg->nrooms; r++) {
        struct lg_room *room = &run->rooms[r];
        room->name = cfg->room_names[r];
        room->len = strlen(room->name);
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < room->len; i++)
            h = (h ^ (uint8_t)room->name[i]) * 16777619u;
        unsigned slot = h & run->room_hash_mask;
        while (run->room_hash[slot] >= 0) {
            if (!strcmp(run->rooms[run->room_hash[slot]].name, room->name)) {
                fprintf(stderr, "ringcast-load: room %s listed twice\n", room->name);
                return -1;
            }
            slot = (slot + 1) & run->room_hash_mask;
        }
        run->room_hash[slot] = (int32_t)r;
    }
    /* Publishers per room: one when P <= R, else up to ceil(P / R) (publisher j is then the
     * (j / R)-th of room j mod R); a subscriber keeps one track per (room, publisher). */
    run->pubs_per_room = npub <= cfg->nrooms ? 1 : (npub + cfg->nrooms - 1) / cfg->nrooms;
    /* Subscriber i joins rooms i*S .. i*S+S-1 (mod R): with S = 1, room i mod R. */
    for (unsigned i = 0; i < nsub; i++) {
        struct lg_conn *c = &run->conns[i];
        c->nrooms = (uint16_t)cfg->subs_per_conn;
        c->rooms = calloc(c->nrooms, sizeof(uint32_t));
        c->tracks = calloc((size_t)c->nrooms * run->pubs_per_room, sizeof(struct lg_track));
        c->last_srv = calloc(c->nrooms, sizeof(uint64_t));
        if (!c->rooms || !c->tracks || !c->last_srv)
            return -1;
        for (unsigned j = 0; j < c->nrooms; j++)
            c->rooms[j] = (uint32_t)(((uint64_t)i * cfg->subs_per_conn + j) % cfg->nrooms);
    }
    /* Publisher j owns rooms j, j+P, ... when there are at least as many rooms as publishers
     * (each room then has one publisher, and its sequence order is checked too); else
     * publishers share rooms: j publishes to room j mod R. */
    for (unsigned j = 0; j < npub; j++) {
        struct lg_publisher *pub = &run->pubs[j];
        struct lg_conn *c = &run->conns[nsub + j];
        pub->idx = j;
        pub->conn = c;
        pub->worker = j % T;
        c->is_pub = true;
        c->pub = pub;
        unsigned n = npub <= cfg->nrooms ? (cfg->nrooms - j + npub - 1) / npub : 1;
        pub->rooms = calloc(n, sizeof(unsigned));
        if (!pub->rooms)
            return -1;
        pub->nrooms = n;
        pub->room_pos = npub <= cfg->nrooms ? 0 : j / cfg->nrooms;
        if (lg_publisher_init(run, pub))
            return -1;
        for (unsigned k = 0; k < n; k++) {
            pub->rooms[k] = npub <= cfg->nrooms ? j + k * npub : j % cfg->nrooms;
            run->rooms[pub->rooms[k]].publishers++;
        }
        unsigned win = cfg->window / npub + (j < cfg->window % npub);
        if (win < 1)
            win = 1;
        if (win > LG_MAX_WINDOW / 2)
            win = LG_MAX_WINDOW / 2;
        pub->window = win;
    }
    for (unsigned i = 0; i < run->nconns; i++) {
        run->conns[i].idx = i;
        run->conns[i].fd = -1;
    }
    /* Connection i goes to worker i mod T; so does publisher j (its conn is nsub + j, but the
     * publisher's worker is j mod T so publishers spread evenly even when nsub % T != 0). */
    for (unsigned t = 0; t < T; t++) {
        struct lg_worker *w = &run->workers[t];
        w->id = t;
        w->run = run;
        w->conns = calloc(run->nconns / T + 2, sizeof(*w->conns));
        w->pubs = calloc(npub / T + 2, sizeof(*w->pubs));
        if (!w->conns || !w->pubs)
            return -1;
    }
    for (unsigned i = 0; i < nsub; i++) {
        struct lg_worker *w = &run->workers[i % T];
        w->conns[w->nconns++] = &run->conns[i];
    }
    for (unsigned j = 0; j < npub; j++) {
        struct lg_worker *w = &run->workers[j % T];
        w->conns[w->nconns++] = &run->conns[nsub + j];
        w->pubs[w->npubs++] = &run->pubs[j];
    }
    return 0;
}

static void merged_latency(const struct lg_run *run, struct hist *out)
{
    hist_init(out);
    for (unsigned t = 0; t < run->cfg.threads; t++)
        hist_merge(out, &run->workers[t].lat); /* racy copy: good enough for the live line */
}

struct progress {
    bool on;
    uint64_t last_t, last_pub, last_del, expected_1s_ago;
    struct hist prev, cur, diff;
};

static void progress_line(struct lg_run *run, struct progress *p, uint64_t now, const char *what)
{
    if (!p->on)
        return;
    double dt = (double)(now - p->last_t) / 1e9;
    if (dt < 0.95)
        return;
    uint64_t pub = SUM(run, pub_sent), del = SUM(run, delivered), exp = SUM(run, expected);
    merged_latency(run, &p->cur);
    p->diff = p->cur;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        p->diff.buckets[i] -= p->prev.buckets[i];
    p->diff.count -= p->prev.count;
    p->diff.min = 0;
    p->diff.max = UINT64_MAX;
    double p99 = (double)hist_percentile(&p->diff, 99) / 1e6;
    /* Lost so far: deliveries expected a second ago that still have not arrived. */
    uint64_t missing = p->expected_1s_ago > del ? p->expected_1s_ago - del : 0;
    fprintf(stderr,
            "\r[%6.1fs %-7s] conns %" PRIu64 "/%u  pub/s %.0f  deliv/s %.0f  p99 %.2fms  "
            "lost %" PRIu64 "   ",
            (double)(now - run->t0) / 1e9, what, SUM(run, conn_ready), run->nconns,
            (double)(pub - p->last_pub) / dt, (double)(del - p->last_del) / dt, p99, missing);
    fflush(stderr);
    p->prev = p->cur;
    p->last_t = now;
    p->last_pub = pub;
    p->last_del = del;
    p->expected_1s_ago = exp;
}

/* A publisher's connection error if any worker recorded one (*is_pub set), else the first
 * connection error any worker recorded, or "". */
static const char *first_error(const struct lg_run *run, bool *is_pub)
{
    *is_pub = true;
    for (unsigned t = 0; t < run->cfg.threads; t++)
        if (run->workers[t].error_pub)
            return run->workers[t].error;
    *is_pub = false;
    for (unsigned t = 0; t < run->cfg.threads; t++)
        if (run->workers[t].error[0])
            return run->workers[t].error;
    return "";
}

static void stop_workers(struct lg_run *run)
{
    atomic_store_explicit(&run->phase, LG_PHASE_STOP, memory_order_release);
    for (unsigned t = 0; t < run->cfg.threads; t++)
        pthread_join(run->workers[t].thread, NULL);
}

static void collect(struct lg_run *run, struct lg_result *res)
{
    memset(res, 0, sizeof(*res));
    hist_init(&res->lat);
    hist_init(&res->lat_corr);
    hist_init(&res->connect);
    hist_init(&res->lag);
    hist_init(&res->lat_replay);
    if (run->workers[0].series) {
        const struct lg_series *s0 = run->workers[0].series;
        res->series = calloc(1, sizeof(*s0) + s0->n * sizeof(s0->b[0]));
        if (res->series) {
            res->series->width_ns = s0->width_ns;
            res->series->n = s0->n;
        }
    }
    for (unsigned t = 0; t < run->cfg.threads; t++) {
        struct lg_worker *w = &run->workers[t];
        const uint64_t *src = (const uint64_t *)&w->st;
        uint64_t *dst = (uint64_t *)&res->st;
        for (size_t i = 0; i < sizeof(w->st) / sizeof(uint64_t); i++)
            dst[i] += src[i];
        hist_merge(&res->lat, &w->lat);
        hist_merge(&res->lat_corr, &w->lat_corr);
        hist_merge(&res->connect, &w->connect);
        hist_merge(&res->lag, &w->lag);
        hist_merge(&res->lat_replay, &w->lat_replay);
        if (res->series && w->series)
            lg_series_merge(res->series, w->series);
        double pct = run->pub_end > run->warm_end
                         ? w->cpu_s * 1e11 / (double)(run->pub_end - run->warm_end)
                         : 0;
        if (pct > res->max_thread_pct)
            res->max_thread_pct = pct;
    }
    /* Loss and excess, publish by publish: what one publish lacks is never offset by what
     * another got too much of, and a refused publish expects nobody. */
    res->st.expected = 0;
    for (unsigned j = 0; j < run->cfg.publishers; j++) {
        const struct lg_publisher *pub = &run->pubs[j];
        res->abandoned += pub->abandoned;
        res->recs_full |= pub->recs_full;
        for (uint64_t k = 1; k <= pub->k; k++) {
            const struct lg_pubrec *rec = lg_pubrec_get(pub, k);
            uint32_t got = atomic_load(&rec->got);
            uint8_t answer = atomic_load(&rec->answer);
            uint32_t expect = answer == LG_ANS_REFUSED ? 0 : rec->expect;
            res->st.expected += expect;
            if (got < expect)
                res->lost += expect - got;
            else
                res->excess += got - expect;
            if (answer == LG_ANS_NONE)
                res->unanswered++;
        }
    }
    for (unsigned t = 0; t < run->cfg.threads; t++) {
        const struct lg_worker *w = &run->workers[t];
        for (unsigned i = 0; i < LG_MAX_REASONS && w->reasons[i].n; i++) {
            unsigned k = 0;
            while (k < LG_MAX_REASONS && res->reasons[k].n &&
                   strcmp(res->reasons[k].code, w->reasons[i].code))
                k++;
            if (k == LG_MAX_REASONS)
                k = LG_MAX_REASONS - 1;
            if (!res->reasons[k].n)
                memcpy(res->reasons[k].code, w->reasons[i].code, sizeof(res->reasons[k].code));
            res->reasons[k].n += w->reasons[i].n;
        }
        /* A worker whose subscribers got nothing up to the end of the measured period. */
        uint64_t from = w->last_delivery_ns > run->warm_end ? w->last_delivery_ns : run->warm_end;
        if (run->cfg.publishers && w->nconns > w->npubs && run->pub_end > from &&
            run->pub_end - from > res->st.stall_max_ns) {
            res->st.stall_max_ns = run->pub_end - from;
            if (run->pub_end - from > run->cfg.stall_ns)
                res->st.stalls++;
        }
    }
    res->stall_max_ms = (double)res->st.stall_max_ns / 1e6;
    res->stalls = res->st.stalls;
    res->measured_s = (double)(run->pub_end - run->warm_end) / 1e9;
    if (res->measured_s < 0)
        res->measured_s = 0;
    if (res->measured_s > 0) {
        res->deliveries_per_s = (double)res->st.delivered_measured / res->measured_s;
        res->publishes_per_s = (double)res->st.pub_sent_measured / res->measured_s;
    }
    res->saturated = res->max_thread_pct > 90.0;
    if (run->cfg.rate > 0 && run->cfg.publishers) {
        double x = (double)(run->pub_end - run->t_start) * run->cfg.rate / 1e9;
        res->scheduled = (uint64_t)x + ((double)(uint64_t)x < x);
        res->unsent = res->scheduled > res->st.pub_sent ? res->scheduled - res->st.pub_sent : 0;
        res->behind_schedule = res->unsent > 0;
    }
    lg_lag_eval(&run->cfg, res);
}

/* Everything the run allocated, freed at exit on every path (workers are joined by then). */
static struct lg_run *the_run;
static struct progress *the_progress;
static struct lg_result *the_result;

static void free_all(void)
{
    struct lg_run *run = the_run;
    free(the_progress);
    if (the_result)
        free(the_result->series);
    free(the_result);
    if (!run)
        return;
    for (unsigned i = 0; run->conns && i < run->nconns; i++) {
        struct lg_conn *c = &run->conns[i];
        free(c->rooms);
        free(c->tracks);
        free(c->last_srv);
        free(c->out.p);
        free(c->pend.p);
        free(c->carry.p);
        free(c->frag.p);
        free(c->hq);
    }
    for (unsigned j = 0; run->pubs && j < run->cfg.publishers; j++) {
        struct lg_publisher *pub = &run->pubs[j];
        free(pub->rooms);
        for (unsigned c = 0; pub->recs && c < pub->nchunks; c++)
            free(atomic_load(&pub->recs[c]));
        free(pub->recs);
    }
    for (unsigned t = 0; run->workers && t < run->cfg.threads; t++) {
        lg_worker_teardown(&run->workers[t]);
        free(run->workers[t].series);
        free(run->workers[t].conns);
        free(run->workers[t].pubs);
    }
    for (unsigned r = 0; run->cfg.room_names && r < run->cfg.nrooms; r++)
        free(run->cfg.room_names[r]);
    free(run->cfg.room_names);
    free(run->rooms);
    free(run->conns);
    free(run->pubs);
    free(run->workers);
    free(run->room_hash);
    SSL_CTX_free(run->tls_ctx);
    free(run);
}

/* An output path must be writable before a run spends minutes: a report that cannot be
 * written after the run is a CI artifact lost. Creates nothing that was not there. */
static int check_output_path(const char *opt, const char *path)
{
    if (!path[0])
        return 0;
    bool existed = access(path, F_OK) == 0;
    FILE *f = fopen(path, "a");
    if (!f) {
        lg_error("cannot write --%s %s: %s", opt, path, strerror(errno));
        return -1;
    }
    fclose(f);
    if (!existed)
        unlink(path);
    return 0;
}

/* Exit 2 after the options were read: the reports still get written, with the error in them,
 * so CI artifacts say what happened. */
static int setup_failed(const struct lg_config *cfg)
{
    if (cfg->json_path[0] && lg_report_json_error(cfg->json_path, cfg, lg_error_msg) < 0)
        fprintf(stderr, "ringcast-load: cannot write %s: %s\n", cfg->json_path, strerror(errno));
    if (cfg->html_path[0] && lg_report_html_error(cfg->html_path, cfg, lg_error_msg) < 0)
        fprintf(stderr, "ringcast-load: cannot write %s: %s\n", cfg->html_path, strerror(errno));
    return LG_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    struct lg_run *run = calloc(1, sizeof(*run));
    if (!run)
        return LG_EXIT_USAGE;
    the_run = run;
    atexit(free_all);
    struct lg_config *cfg = &run->cfg;
    int r = lg_config_parse(cfg, argc, argv);
    if (r == 3)
        return 0;
    if (r) {
        /* Only the paths themselves are trusted from a command line that did not parse. */
        struct lg_config partial = *cfg;
        if (check_output_path("json", cfg->json_path))
            partial.json_path[0] = 0;
        if (check_output_path("html", cfg->html_path))
            partial.html_path[0] = 0;
        return setup_failed(&partial);
    }
    struct lg_result *res = the_result = calloc(1, sizeof(*res));
    if (!res)
        return LG_EXIT_USAGE;
    /* Everything that can be checked before the run is checked before it. */
    if (check_output_path("json", cfg->json_path)) {
        cfg->json_path[0] = 0;
        return setup_failed(cfg);
    }
    if (check_output_path("html", cfg->html_path)) {
        cfg->html_path[0] = 0;
        return setup_failed(cfg);
    }
    if (cfg->baseline_path[0]) {
        char err[1024];
        if (lg_baseline_load(cfg, res, err, sizeof(err)) < 0) {
            lg_error("%s", err);
            return setup_failed(cfg);
        }
    }
    if (cfg->repeat > 1)
        return lg_repeat_main(cfg, res, argc, argv);
    if (check_fd_limit(cfg))
        return setup_failed(cfg);
    if (layout(run)) {
        lg_error("out of memory laying out the run");
        return setup_failed(cfg);
    }
    /* Per-second figures over the whole run (bounded: series.h). */
    for (unsigned t = 0; t < cfg->threads; t++) {
        run->workers[t].series =
            lg_series_new(cfg->warmup_ns + cfg->duration_ns + cfg->drain_ns + 1000000000ull);
        if (!run->workers[t].series) {
            lg_error("out of memory laying out the run");
            return setup_failed(cfg);
        }
    }
    if (cfg->tls) {
        char err[768];
        run->tls_ctx = tlsc_ctx_new(cfg->ca_file, cfg->tls_insecure, err, sizeof(err));
        if (!run->tls_ctx) {
            lg_error("%s", err);
            return setup_failed(cfg);
        }
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);

    struct lg_server_stat srv0 = {0}, srv1 = {0}, srv2 = {0};
    if (cfg->server_pid) {
        srv0 = lg_server_stat_read(cfg->server_pid);
        if (!srv0.ok)
            fprintf(stderr, "ringcast-load: warning: cannot read /proc/%d\n", cfg->server_pid);
    }
    struct progress *prog = the_progress = calloc(1, sizeof(*prog));
    if (!prog)
        return setup_failed(cfg);
    prog->on = cfg->progress == 1 || (cfg->progress < 0 && isatty(2));
    hist_init(&prog->prev);

    run->t0 = lg_now_ns();
    prog->last_t = run->t0;
    atomic_store(&run->phase, LG_PHASE_CONNECT);
    for (unsigned t = 0; t < cfg->threads; t++) {
        if (pthread_create(&run->workers[t].thread, NULL, lg_worker_main, &run->workers[t])) {
            lg_error("cannot start thread %u", t);
            return setup_failed(cfg);
        }
    }
    for (unsigned t = 0; t < cfg->threads; t++) {
        while (!atomic_load_explicit(&run->workers[t].setup_done, memory_order_acquire))
            sleep_ns(1000000);
        if (run->workers[t].setup_err < 0) {
            lg_error("io_uring setup failed: %s", strerror(-run->workers[t].setup_err));
            stop_workers(run);
            return setup_failed(cfg);
        }
    }

    /* ---- connect, handshake, subscribe ---- */
    uint64_t now;
    for (;;) {
        sleep_ns(TICK_NS / 10);
        now = lg_now_ns();
        progress_line(run, prog, now, "connect");
        uint64_t ready = SUM(run, conn_ready), failed = SUM(run, conn_failed);
        if (ready + failed >= run->nconns)
            break;
        if (now - run->t0 > cfg->connect_timeout_ns || interrupted) {
            if (prog->on)
                fputc('\n', stderr);
            lg_error("setup %s: %" PRIu64 " of %u connections ready",
                     interrupted ? "interrupted" : "timed out", ready, run->nconns);
            stop_workers(run);
            setup_failed(cfg);
            return interrupted ? 128 + interrupted : LG_EXIT_USAGE;
        }
    }
    uint64_t setup_ns = now - run->t0;
    uint64_t failed = SUM(run, conn_failed);
    if (failed) {
        bool is_pub;
        const char *why = first_error(run, &is_pub);
        if (prog->on)
            fputc('\n', stderr);
        lg_error("%" PRIu64 " of %u connections failed: %s", failed, run->nconns, why);
        stop_workers(run);
        return setup_failed(cfg);
    }

    /* ---- publish: warmup, measured period; then drain ---- */
    double self0 = 0, self1 = 0;
    run->t_start = lg_now_ns() + 20000000ull;
    run->warm_end = run->t_start + cfg->warmup_ns;
    run->pub_end = run->warm_end + cfg->duration_ns;
    atomic_store_explicit(&run->phase, LG_PHASE_RUN, memory_order_release);
    bool measuring = false;
    for (;;) {
        now = lg_now_ns();
        if (!measuring && now >= run->warm_end) {
            measuring = true;
            self0 = lg_self_cpu_s();
            if (cfg->server_pid)
                srv1 = lg_server_stat_read(cfg->server_pid);
        }
        if (now >= run->pub_end || interrupted)
            break;
        progress_line(run, prog, now, now < run->warm_end ? "warmup" : "measure");
        uint64_t next = measuring ? run->pub_end : run->warm_end;
        sleep_ns(next - now < TICK_NS ? next - now : TICK_NS);
    }
    if (interrupted)
        run->pub_end = now; /* report what was measured so far */
    self1 = lg_self_cpu_s();
    if (cfg->server_pid)
        srv2 = lg_server_stat_read(cfg->server_pid);
    sleep_ns(DRAIN_GRACE_NS);
    atomic_store_explicit(&run->phase, LG_PHASE_DRAIN, memory_order_release);
    for (;;) {
        now = lg_now_ns();
        progress_line(run, prog, now, "drain");
        if (SUM(run, delivered) >= SUM(run, expected) &&
            SUM(run, pub_acked) + SUM(run, pub_errors) >= SUM(run, pub_sent))
            break;
        if (now - run->pub_end >= cfg->drain_ns || interrupted)
            break;
        sleep_ns(1000000);
    }
    if (prog->on)
        fputc('\n', stderr);
    stop_workers(run);

    /* ---- figures, gates, reports ---- */
    struct lg_baseline base = res->base;
    collect(run, res);
    res->base = base;
    res->interrupted = interrupted != 0;
    res->signal = interrupted;
    res->connect_rate = setup_ns ? (double)res->st.conn_established * 1e9 / (double)setup_ns : 0;
    if (res->measured_s > 0)
        res->cpu_pct = (self1 - self0) * 100.0 / res->measured_s;
    if (cfg->server_pid && srv1.ok && srv2.ok) {
        res->server = true;
        res->server_cpu_s = srv2.cpu_s - srv1.cpu_s;
        res->server_rss_kb = srv2.rss_kb;
        long grew_kb = srv2.rss_kb - (srv0.ok ? srv0.rss_kb : 0);
        res->server_rss_per_conn =
            run->nconns && grew_kb >= 0 ? (double)grew_kb * 1024.0 / run->nconns : NAN;
        if (res->st.delivered_measured)
            res->server_cpu_us_per_1000 =
                res->server_cpu_s * 1e6 / ((double)res->st.delivered_measured / 1000.0);
    }
    lg_gates_eval(cfg, res);
    if (res->interrupted)
        res->ok = false; /* whatever was measured, it is not the run that was asked for */
    if (!cfg->quiet)
        lg_report_table(stdout, run, res);
    int status = res->ok ? LG_EXIT_OK : LG_EXIT_GATE;
    if (res->interrupted)
        status = 128 + res->signal;
    if (cfg->json_path[0] && lg_report_json(cfg->json_path, run, res) < 0) {
        fprintf(stderr, "ringcast-load: cannot write %s: %s\n", cfg->json_path, strerror(errno));
        status = LG_EXIT_USAGE;
    }
    if (cfg->html_path[0] && lg_report_html(cfg->html_path, run, res) < 0) {
        fprintf(stderr, "ringcast-load: cannot write %s: %s\n", cfg->html_path, strerror(errno));
        status = LG_EXIT_USAGE;
    }
    if (res->st.disconnects) {
        bool is_pub;
        const char *why = first_error(run, &is_pub);
        /* A publisher's reason ("publisher P: ...") is shown even when it was not first. */
        fprintf(stderr, "ringcast-load: %" PRIu64 " connections ended during the run; %s: %s\n",
                res->st.disconnects, is_pub ? "the reason" : "the first",
                *why ? why : "(no reason recorded)");
    }
    if (res->saturated)
        fprintf(stderr,
                "ringcast-load: warning: a load generator thread used %.0f%% of a core: the "
                "figures may measure ringcast-load, not the server (add --threads)\n",
                res->max_thread_pct);
    if (res->behind_schedule || res->lagging) {
        char why[512];
        fprintf(stderr, "ringcast-load: warning: %s\n", lg_lag_warning(res, why, sizeof(why)));
    }
    if (res->recs_full)
        fprintf(stderr,
                "ringcast-load: warning: a publisher stopped: it ran out of per-publish "
                "records (%u per publisher)\n",
                LG_PUBREC_CHUNK * run->pubs[0].nchunks);
    if (res->st.pub_errors) {
        fprintf(stderr,
                "ringcast-load: %" PRIu64 " of %" PRIu64 " publishes refused by the server:",
                res->st.pub_errors, res->st.pub_sent);
        for (unsigned i = 0; i < LG_MAX_REASONS && res->reasons[i].n; i++)
            fprintf(stderr, "%s %s %" PRIu64, i ? "," : "", res->reasons[i].code,
                    res->reasons[i].n);
        fputc('\n', stderr);
    }
    if (res->unanswered)
        fprintf(stderr,
                "ringcast-load: %" PRIu64 " of %" PRIu64
                " publishes got neither a response nor an error\n",
                res->unanswered, res->st.pub_sent);
    if (res->excess)
        fprintf(stderr,
                "ringcast-load: %" PRIu64 " deliveries beyond what was published (more than a "
                "publish's subscribers, or of a refused publish)\n",
                res->excess);
    if (res->st.no_seq)
        fprintf(stderr,
                "ringcast-load: warning: %" PRIu64 " deliveries without a server seq: order "
                "across publishers was not checked for them\n",
                res->st.no_seq);
    for (unsigned i = 0; i < res->ngates; i++)
        if (!res->gates[i].ok)
            fprintf(stderr, "ringcast-load: GATE FAILED: %s: %.6g %s (must be %s %.6g %s)%s%s\n",
                    res->gates[i].name, res->gates[i].value, res->gates[i].unit,
                    res->gates[i].at_least ? ">=" : "<=", res->gates[i].limit, res->gates[i].unit,
                    res->gates[i].note[0] ? ": " : "", res->gates[i].note);
    if (res->interrupted)
        fprintf(stderr,
                "ringcast-load: INTERRUPTED by %s after %.1f s of the measured period: not a "
                "result\n",
                res->signal == SIGINT ? "SIGINT" : "SIGTERM", res->measured_s);
    if (res->gate_error[0]) {
        fprintf(stderr, "ringcast-load: %s\n", res->gate_error);
        status = LG_EXIT_USAGE;
    }
    return status;
}
