/* main.c - startup, signals and graceful shutdown of the ringcast engine.
 *
 * The main thread does everything that can fail in a way an operator must read: configuration,
 * descriptor limits, io_uring availability, binding the port. Then it starts one worker per
 * configured thread (worker.h), waits until all of them accept, and sleeps in sigwait; the
 * workers never see a signal. Every signal becomes a MSG_RING to each worker from a tiny ring
 * of the main thread's own, so no thread ever reads or writes another's state:
 *   SIGTERM, SIGINT  graceful shutdown (UD_SHUTDOWN); a second one during the drain exits now;
 *   SIGHUP           reopens --log-file, reloads the TLS certificate (tls.h) and the run-time
 *                    options (UD_RELOAD hands each
 *                    worker a pointer to the new configuration, which stays valid until exit);
 *   SIGUSR1          each worker logs a one-line status (UD_STATUS).
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "auth.h"
#include "cluster.h"
#include "config.h"
#include "tls.h"
#include "edge.h"
#include "defaults.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "proto/http.h"
#include "room.h"
#include "sd_notify.h"
#include "worker.h"

#ifndef RINGCAST_VERSION
#define RINGCAST_VERSION "0.1.0"
#endif

/* Descriptors beyond max_connections: listeners, rings, connections still in handshake. */
#define FD_MARGIN 64

static void raise_fd_limit(const struct rc_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t want = (rlim_t)cfg->max_connections + FD_MARGIN + 4 * cfg->threads;
    if (rl.rlim_cur < want)
        log_warn("open file limit %llu is below max-connections %u + %u: connections beyond "
                 "the limit will be refused at accept (raise ulimit -n)",
                 (unsigned long long)rl.rlim_cur, cfg->max_connections,
                 (unsigned)(want - cfg->max_connections));
}

static void uring_error(int err)
{
    if (err == -ENOSYS || err == -EPERM)
        log_error("io_uring is unavailable (%s): the kernel lacks it, it is disabled "
                  "(sysctl kernel.io_uring_disabled), or a container's seccomp profile blocks "
                  "io_uring_setup; ringcast needs io_uring",
                  strerror(-err));
    else
        log_error("cannot set up io_uring: %s (kernel 6.1 or newer is required)", strerror(-err));
}

/* CPUs we may run on, in order: workers are pinned round-robin over them. */
static unsigned usable_cpus(int *cpus, unsigned max)
{
    cpu_set_t set;
    unsigned n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return 0;
    for (int i = 0; i < CPU_SETSIZE && n < max; i++)
        if (CPU_ISSET(i, &set))
            cpus[n++] = i;
    return n;
}

/* RINGCAST_TEST_XMSG_ORDER=reverse|shuffle: a test hook that scrambles the order in which
 * each worker handles a batch of cross-worker messages (tests/abuse, docs/hardening.md). */
static int xorder_test_mode(void)
{
    const char *v = getenv("RINGCAST_TEST_XMSG_ORDER");
    if (!v || !*v)
        return 0;
    int mode = strcmp(v, "reverse") == 0 ? 1 : strcmp(v, "shuffle") == 0 ? 2 : 0;
    log_warn("test hook RINGCAST_TEST_XMSG_ORDER=%s: cross-worker batches are %s", v,
             mode ? "scrambled" : "left alone (unknown value)");
    return mode;
}

/* Sends ud to every worker's ring and reaps the main ring's completions, so that any number of
 * signals never overflows its completion queue. */
static void post_all(struct io_uring *ring, struct worker **workers, unsigned n, uint64_t ud)
{
    for (unsigned i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        if (!sqe) {
            io_uring_submit(ring);
            sqe = io_uring_get_sqe(ring);
        }
        io_uring_prep_msg_ring(sqe, workers[i]->ring_fd, 0, ud, 0);
        io_uring_sqe_set_data64(sqe, i);
    }
    io_uring_submit_and_wait(ring, n);
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(ring, head, cqe)
    {
        if (cqe->res < 0)
            log_error("cannot signal worker %llu: %s", (unsigned long long)cqe->user_data,
                      strerror(-cqe->res));
        seen++;
    }
    io_uring_cq_advance(ring, seen);
}

/* Configurations handed to the workers by SIGHUP: each stays valid until exit, because a
 * worker may still be reading the previous one when the next arrives. A few hundred bytes per
 * reload. */
struct cfg_gen {
    struct rc_config cfg; /* first: the pointer posted is the struct's */
    struct cfg_gen *prev;
};

static const struct rc_config *reload(struct io_uring *ring, struct engine *eng,
                                      const struct rc_config *cur, struct cfg_gen **gens)
{
    log_info("SIGHUP: reopening the log and reloading the configuration");
    if (cur->log_file[0]) {
        int r = log_open_file(cur->log_file);
        if (r < 0)
            log_error("cannot reopen log file %s: %s (still logging to the old one)", cur->log_file,
                      strerror(-r));
    }
    /* The certificate is read again whatever else changed: a renewed one replaces the files
     * under the same names. */
    tls_reload(cur);
    struct cfg_gen *g = malloc(sizeof(*g));
    if (!g) {
        log_error("reload: out of memory");
        return cur;
    }
    if (config_reload(cur, &g->cfg) <= 0) {
        free(g);
        return cur;
    }
    g->prev = *gens;
    *gens = g;
    log_set_level(g->cfg.log_level);
    post_all(ring, eng->workers, eng->nworkers, ud_make(&g->cfg, UD_RELOAD));
    return &g->cfg;
}

static const char *sig_name(int sig)
{
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    case SIGUSR1: return "SIGUSR1";
    }
    return "signal";
}

int main(int argc, char **argv)
{
    struct rc_config cfg;
    int r = config_load(&cfg, argc, argv);
    if (r != 0)
        return r > 0 ? 0 : 2;
    log_set_level(cfg.log_level);
    log_set_thread_name("main");
    r = log_open_file(cfg.log_file);
    if (r < 0) {
        fprintf(stderr, "ringcast: log-file '%s': cannot open: %s\n", cfg.log_file, strerror(-r));
        return 2;
    }
    log_info("ringcast %s starting", RINGCAST_VERSION);
    config_log(&cfg);

    /* Workers inherit this mask: only the main thread ever takes these signals. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    raise_fd_limit(&cfg);
    if (auth_init(&cfg) != 0 || edge_init(&cfg) != 0 || tls_init(&cfg) != 0)
        return 2;
    int cluster = cluster_init(&cfg); /* 0: cluster mode, 1: single node, -1: exit 2 */
    if (cluster < 0)
        return 2;
    if (cluster == 0 && cfg.threads >= RC_MAX_THREADS) {
        /* The bus is sender id nworkers on 6-bit link ids (worker.h). */
        fprintf(stderr, "ringcast: --redis: at most %d threads\n", RC_MAX_THREADS - 1);
        return 2;
    }

    /* OpenSSL loads and initializes its providers on the first digest: do it now, so the first
     * client does not wait for it and the megabyte of code it pages in is startup cost. */
    char accept[WS_ACCEPT_LEN + 1];
    ws_accept_compute(SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="), accept);

    struct io_uring main_ring;
    r = io_uring_queue_init(2 * RC_MAX_THREADS, &main_ring, 0);
    if (r < 0) {
        uring_error(r);
        return 2;
    }

    unsigned n = cfg.threads;
    int fds[RC_MAX_THREADS];
    char where[300];
    if (listen_open(&cfg, n, fds, where, sizeof(where)) < 0) {
        io_uring_queue_exit(&main_ring);
        return 2;
    }

    int cpus[CPU_SETSIZE];
    unsigned ncpus = usable_cpus(cpus, CPU_SETSIZE);
    struct engine eng;
    memset(&eng, 0, sizeof(eng));
    eng.cfg = &cfg;
    eng.nworkers = n;
    pthread_mutex_init(&eng.lock, NULL);
    pthread_cond_init(&eng.cond, NULL);
    struct worker *workers[RC_MAX_THREADS];
    eng.workers = workers;
    eng.xorder_test = xorder_test_mode();
    eng.cluster = cluster == 0;
    room_hash_init();
    for (unsigned i = 0; i < n; i++) {
        workers[i] = worker_new(&eng, i, ncpus ? cpus[i % ncpus] : -1, fds[i]);
        if (!workers[i]) {
            log_error("out of memory creating worker %u", i);
            return 2;
        }
    }
    /* Workers call malloc_trim (worker.c). glibc sets its allocator up in the first thread
     * that calls into it, and two threads doing so at once corrupt its arena counts (an abort
     * at thread exit). With glibc's malloc in use, main's own mallocs did that long ago; under
     * ASan, whose malloc replaces it, nothing has: do it here, before any worker starts. */
    malloc_trim(0);
    unsigned started = 0;
    for (; started < n; started++) {
        r = worker_start(workers[started]);
        if (r < 0) {
            log_error("cannot start worker thread %u: %s", started, strerror(-r));
            atomic_compare_exchange_strong(&eng.start_err, &(int){0}, r);
            break;
        }
    }
    /* Wait for every started worker to set up its ring, then release them together: no
     * worker may message another before all rings exist. */
    pthread_mutex_lock(&eng.lock);
    while ((unsigned)atomic_load(&eng.started) < started)
        pthread_cond_wait(&eng.cond, &eng.lock);
    int err = atomic_load(&eng.start_err);
    eng.go = err || started < n ? -1 : 1;
    pthread_cond_broadcast(&eng.cond);
    pthread_mutex_unlock(&eng.lock);
    if (eng.go < 0) {
        if (err && started == n)
            uring_error(err);
        for (unsigned i = 0; i < started; i++)
            pthread_join(workers[i]->thread, NULL);
        for (unsigned i = 0; i < n; i++)
            worker_free(workers[i]);
        io_uring_queue_exit(&main_ring);
        return 2;
    }
    if (eng.cluster && (r = cluster_start(&eng)) < 0) {
        /* Workers run; nothing can reach them without the bus: exit as for a startup error. */
        log_error("cannot start the cluster bus thread: %s", strerror(-r));
        _exit(2);
    }
    while (atomic_load(&eng.accepting) < n)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    /* Ready means ready to publish: give the bus its first connect (it keeps trying after). */
    for (unsigned ms = 0; eng.cluster && ms < cfg.redis_timeout_ms &&
                          atomic_load(&cluster_stats.state) != CLUSTER_UP;
         ms++)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    log_info("listening on %s (%u workers)", where, n);
    char sd_status[360];
    snprintf(sd_status, sizeof(sd_status), "listening on %s (%u workers)", where, n);
    rc_notify_ready(sd_status);

    const struct rc_config *cur = &cfg;
    struct cfg_gen *gens = NULL;
    int sig = 0;
    for (;;) {
        sigwait(&sigs, &sig);
        if (sig == SIGHUP) {
            rc_notify_reloading();
            cur = reload(&main_ring, &eng, cur, &gens);
            rc_notify_ready(sd_status);
        } else if (sig == SIGUSR1)
            post_all(&main_ring, workers, n, ud_make(NULL, UD_STATUS));
        else
            break;
    }
    log_info("%s: shutting down (drain timeout %us)", sig_name(sig), cur->drain_timeout_s);
    rc_notify_stopping("draining");
    post_all(&main_ring, workers, n, ud_make(NULL, UD_SHUTDOWN));

    /* The drain: wait for the workers while still taking signals. */
    struct timespec step = {0, 200 * 1000000L};
    unsigned joined = 0;
    int64_t ticks = 0;
    while (joined < n) {
        if (pthread_tryjoin_np(workers[joined]->thread, NULL) == 0) {
            joined++;
            continue;
        }
        siginfo_t si;
        int s2 = sigtimedwait(&sigs, &si, &step);
        if (s2 == SIGTERM || s2 == SIGINT) {
            log_warn("%s during the drain: exiting now, %u connections not drained", sig_name(s2),
                     atomic_load(&eng.nconns));
            _exit(1);
        }
        if (s2 == SIGHUP || s2 == SIGUSR1)
            log_info("%s ignored: shutting down", sig_name(s2));
        if (++ticks % 5 == 0)
            log_info("draining: %u connections still open, %u of %u workers done",
                     atomic_load(&eng.nconns), joined, n);
    }
    cluster_stop(); /* after the workers (the drain still publishes), before their memory goes */
    struct metrics total;
    memset(&total, 0, sizeof(total));
    for (unsigned i = 0; i < n; i++) {
        metrics_add(&total, &workers[i]->m);
        workers[i]->listen_fd = -1; /* closed by the worker at drain */
        worker_free(workers[i]);
    }
    metrics_log(&total);
    edge_log_totals();
    auth_shutdown();
    edge_shutdown();
    tls_shutdown();
    io_uring_queue_exit(&main_ring);
    pthread_cond_destroy(&eng.cond);
    pthread_mutex_destroy(&eng.lock);
    while (gens) {
        struct cfg_gen *g = gens;
        gens = g->prev;
        free(g);
    }
    log_info("stopped");
    return 0;
}
