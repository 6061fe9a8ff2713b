/* msgring_probe.c - what one cross-worker IORING_OP_MSG_RING costs on this machine: the unit of
 * the engine's cost per publish beyond one core (docs/architecture.md, "Scaling past one core").
 *
 * Two threads, each with its own ring set up as the engine's (SINGLE_ISSUER | DEFER_TASKRUN |
 * COOP_TASKRUN), pinned to two CPUs. The sender posts --msgs MSG_RINGs to the receiver in
 * batches of --batch per submit (1: one submit per message, as a publish that fans out alone;
 * larger: as an iteration that posts several frames); the receiver waits for and reaps the
 * completions. Each side's CPU time per message is reported (RUSAGE_THREAD). At most 65,000
 * messages, so the receiver's completion queue (65,536) can never overflow: no flow control.
 *
 * usage: msgring_probe [--msgs 1..65000] [--batch 1..4096] [--cpus S,R] [--json]
 */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static long msgs = 60000, batch = 1;
static int cpus[2] = {0, 1};
static struct io_uring rings[2];
static atomic_int ready;
static double cpu_us[2];

static double thread_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static void *side(void *arg)
{
    int me = (int)(long)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpus[me], &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                         IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE,
                                .cq_entries = 65536};
    int err = io_uring_queue_init_params(4096, &rings[me], &p); /* made in its own thread */
    if (err < 0) {
        fprintf(stderr, "msgring_probe: io_uring_queue_init: %s\n", strerror(-err));
        exit(77);
    }
    atomic_fetch_add(&ready, 1);
    while (atomic_load(&ready) < 2)
        ;
    double c0 = thread_cpu_s();
    if (me == 0) { /* sender */
        for (long sent = 0; sent < msgs;) {
            long n = msgs - sent < batch ? msgs - sent : batch;
            for (long i = 0; i < n; i++) {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&rings[0]);
                io_uring_prep_msg_ring(sqe, rings[1].ring_fd, 0, (uint64_t)(sent + i + 1), 0);
                io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
            }
            io_uring_submit(&rings[0]);
            sent += n;
            /* Failed posts (a full target CQ) would complete here; success posts nothing. */
            struct io_uring_cqe *cqe;
            while (io_uring_peek_cqe(&rings[0], &cqe) == 0) {
                if (cqe->res < 0) {
                    fprintf(stderr, "msgring_probe: MSG_RING: %s\n", strerror(-cqe->res));
                    exit(2);
                }
                io_uring_cqe_seen(&rings[0], cqe);
            }
        }
    } else { /* receiver */
        for (long got = 0; got < msgs;) {
            struct io_uring_cqe *cqe;
            io_uring_submit_and_wait(&rings[1], 1);
            unsigned head, n = 0;
            io_uring_for_each_cqe(&rings[1], head, cqe) n++;
            io_uring_cq_advance(&rings[1], n);
            got += n;
        }
    }
    cpu_us[me] = (thread_cpu_s() - c0) * 1e6 / (double)msgs;
    return NULL;
}

int main(int argc, char **argv)
{
    bool json = false, ok = true;
    for (int i = 1; i < argc && ok; i++) {
        if (!strcmp(argv[i], "--msgs") && i + 1 < argc)
            msgs = atol(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atol(argv[++i]);
        else if (!strcmp(argv[i], "--cpus") && i + 1 < argc)
            ok = sscanf(argv[++i], "%d,%d", &cpus[0], &cpus[1]) == 2;
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else
            ok = false;
    }
    if (!ok || msgs < 1 || msgs > 65000 || batch < 1 || batch > 4096) {
        fprintf(stderr,
                "usage: msgring_probe [--msgs 1..65000] [--batch 1..4096] [--cpus S,R] [--json]\n");
        return 2;
    }
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, side, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    if (json)
        printf("{\"msgs\":%ld,\"batch\":%ld,\"sender_cpu_us\":%.3f,\"receiver_cpu_us\":%.3f}\n",
               msgs, batch, cpu_us[0], cpu_us[1]);
    else
        printf("msgring_probe: %ld MSG_RINGs in batches of %ld: sender %.2f us, receiver %.2f us "
               "of CPU each (CPUs %d -> %d)\n",
               msgs, batch, cpu_us[0], cpu_us[1], cpus[0], cpus[1]);
    return 0;
}
