/* main.c - startup, signals and graceful shutdown of the ringcast engine.
 *
 * The main thread does everything that can fail in a way an operator must read: configuration,
 * descriptor limits, io_uring availability, binding the port. Then it starts one worker per
 * configured thread (worker.h), waits until all of them accept, and sleeps in sigwait until
 * SIGTERM or SIGINT; the workers never see a signal. Shutdown is a MSG_RING to each worker from
 * a tiny ring of the main thread's own.
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

#include "config.h"
#include "defaults.h"
#include "listen.h"
#include "log.h"
#include "metrics.h"
#include "proto/http.h"
#include "room.h"
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

int main(int argc, char **argv)
{
    struct rc_config cfg;
    int r = config_load(&cfg, argc, argv);
    if (r != 0)
        return r > 0 ? 0 : 2;
    log_set_level(cfg.log_level);
    log_set_thread_name("main");
    log_info("ringcast %s starting", RINGCAST_VERSION);
    config_log(&cfg);

    /* Workers inherit this mask: only the main thread ever takes SIGTERM/SIGINT. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    raise_fd_limit(&cfg);

    /* OpenSSL loads and initializes its providers on the first digest: do it now, so the first
     * client does not wait for it and the megabyte of code it pages in is startup cost. */
    char accept[WS_ACCEPT_LEN + 1];
    ws_accept_compute(SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="), accept);

    struct io_uring main_ring;
    r = io_uring_queue_init(8, &main_ring, 0);
    if (r < 0) {
        uring_error(r);
        return 2;
    }

    unsigned n = cfg.threads;
    int fds[RC_MAX_THREADS];
    if (listen_open(&cfg, n, fds) < 0) {
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
    while (atomic_load(&eng.accepting) < n)
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    log_info("listening on %s:%u (%u workers)", cfg.bind, cfg.port, n);

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("%s: shutting down (drain timeout %us)", sig == SIGINT ? "SIGINT" : "SIGTERM",
             cfg.drain_timeout_s);
    for (unsigned i = 0; i < n; i++) {
        r = worker_request_shutdown(&main_ring, workers[i]);
        if (r < 0)
            log_error("cannot signal worker %u: %s", i, strerror(-r));
    }
    struct metrics total;
    memset(&total, 0, sizeof(total));
    for (unsigned i = 0; i < n; i++) {
        pthread_join(workers[i]->thread, NULL);
        metrics_add(&total, &workers[i]->m);
        workers[i]->listen_fd = -1; /* closed by the worker at drain */
        worker_free(workers[i]);
    }
    metrics_log(&total);
    io_uring_queue_exit(&main_ring);
    pthread_cond_destroy(&eng.cond);
    pthread_mutex_destroy(&eng.lock);
    log_info("stopped");
    return 0;
}
