/* jitter.c - how often, and for how long, this machine takes a CPU away from a program that
 * wants it: the floor under every tail latency measured on it.
 *
 * One thread per CPU, pinned, reads CLOCK_MONOTONIC in a tight loop for --seconds. Any gap
 * between two reads longer than --threshold-us is time the thread did not run: an interrupt,
 * a kernel thread, another process, or (in a VM) the hypervisor running someone else. A server
 * pinned to that CPU loses the same time, and every event it holds meanwhile arrives late by
 * up to the gap. On a quiet bare-metal core the gaps are a few microseconds; a shared 2-vCPU VM
 * loses milliseconds at a time, several times a second, and no server's p99.9 there can be
 * below its longest gaps (bench/run reports this beside its results).
 *
 * usage: jitter [--seconds S] [--cpus A,B,...] [--threshold-us U] [--json]
 * Prints one line per CPU: "jitter: CPU N: X ms/s lost to gaps over U us (G over 1 ms), longest
 * L ms"; with --json, one object instead.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CPUS 64

struct spinner {
    int cpu;
    bool pinned;
    uint64_t run_ns, threshold_ns;
    /* results */
    uint64_t lost_ns, max_ns, gaps, gaps_1ms, gaps_10ms;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *spin(void *arg)
{
    struct spinner *s = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(s->cpu, &set);
    s->pinned = pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
    uint64_t prev = now_ns(), end = prev + s->run_ns;
    for (;;) {
        uint64_t t = now_ns(), gap = t - prev;
        prev = t;
        if (gap > s->threshold_ns) {
            s->gaps++;
            s->lost_ns += gap;
            s->gaps_1ms += gap > 1000000;
            s->gaps_10ms += gap > 10000000;
            if (gap > s->max_ns)
                s->max_ns = gap;
        }
        if (t >= end)
            return NULL;
    }
}

static int usage(void)
{
    fprintf(stderr, "usage: jitter [--seconds S] [--cpus A,B,...] [--threshold-us U] [--json]\n");
    return 2;
}

int main(int argc, char **argv)
{
    double seconds = 3;
    long threshold_us = 50;
    bool json = false;
    struct spinner sp[MAX_CPUS];
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--threshold-us") && i + 1 < argc) {
            threshold_us = atol(argv[++i]);
        } else if (!strcmp(argv[i], "--cpus") && i + 1 < argc) {
            for (char *p = argv[++i], *e; *p; p = *e ? e + 1 : e) {
                long cpu = strtol(p, &e, 10);
                if (e == p || (*e && *e != ',') || cpu < 0 || cpu >= CPU_SETSIZE || n == MAX_CPUS)
                    return usage();
                sp[n++].cpu = (int)cpu;
            }
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else {
            return usage();
        }
    }
    if (!(seconds > 0 && seconds <= 3600) || threshold_us < 1) {
        fprintf(stderr, "jitter: --seconds must be in (0, 3600] and --threshold-us >= 1\n");
        return 2;
    }
    if (!n) { /* every CPU this process may use */
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof(set), &set) < 0) {
            fprintf(stderr, "jitter: sched_getaffinity: %s\n", strerror(errno));
            return 2;
        }
        for (int c = 0; c < CPU_SETSIZE && n < MAX_CPUS; c++)
            if (CPU_ISSET(c, &set))
                sp[n++].cpu = c;
    }
    pthread_t th[MAX_CPUS];
    for (int i = 0; i < n; i++) {
        int cpu = sp[i].cpu;
        memset(&sp[i], 0, sizeof(sp[i]));
        sp[i].cpu = cpu;
        sp[i].run_ns = (uint64_t)(seconds * 1e9);
        sp[i].threshold_ns = (uint64_t)threshold_us * 1000;
        int r = pthread_create(&th[i], NULL, spin, &sp[i]);
        if (r) {
            fprintf(stderr, "jitter: pthread_create: %s\n", strerror(r));
            return 2;
        }
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);

    if (json)
        printf("{\"tool\":\"jitter\",\"seconds\":%.3f,\"threshold_us\":%ld,\"cpus\":[", seconds,
               threshold_us);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const struct spinner *s = &sp[i];
        double lost_ms_per_s = (double)s->lost_ns / 1e6 / seconds, max_ms = (double)s->max_ns / 1e6;
        if (!s->pinned) {
            fprintf(stderr, "jitter: cannot pin to CPU %d (not allowed or offline)\n", s->cpu);
            rc = 2;
        }
        if (json)
            printf("%s{\"cpu\":%d,\"pinned\":%s,\"lost_ms_per_s\":%.3f,\"gaps\":%llu,"
                   "\"gaps_over_1ms\":%llu,\"gaps_over_10ms\":%llu,\"max_ms\":%.3f}",
                   i ? "," : "", s->cpu, s->pinned ? "true" : "false", lost_ms_per_s,
                   (unsigned long long)s->gaps, (unsigned long long)s->gaps_1ms,
                   (unsigned long long)s->gaps_10ms, max_ms);
        else if (s->pinned)
            printf("jitter: CPU %d: %.1f ms/s lost to gaps over %ld us (%llu over 1 ms, %llu over "
                   "10 ms), longest %.2f ms\n",
                   s->cpu, lost_ms_per_s, threshold_us, (unsigned long long)s->gaps_1ms,
                   (unsigned long long)s->gaps_10ms, max_ms);
    }
    if (json)
        printf("]}\n");
    return rc;
}
