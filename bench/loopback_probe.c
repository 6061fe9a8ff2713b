/* loopback_probe.c - what one small loopback TCP write costs on this machine, the floor under
 * every fan-out figure measured on it.
 *
 * A broadcast to N subscribers is N socket writes, whatever the server; on loopback each also
 * runs the receiver's TCP input on the writer's core. This probe times exactly that: a writer
 * pinned to one CPU sends --writes messages of --size bytes (TCP_NODELAY) to a reader pinned
 * to another, and reports the writer's CPU time per write. Typical hardware needs 1-3 us; a
 * nested or heavily shared VM can need 10 us, at which point 1000 subscribers cost 10 ms of
 * kernel time per publish and no server can keep a 10 ms p99 (bench/gate uses this).
 *
 * usage: loopback_probe [--writes N] [--size B] [--cpus W,R] [--json]
 * Prints one line: "loopback_probe: B-byte writes: X.XX us of writer CPU each (...)".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
           ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0)
        fprintf(stderr, "loopback_probe: cannot pin to CPU %d: %s (running unpinned)\n", cpu,
                strerror(errno));
}

static void die(const char *what)
{
    fprintf(stderr, "loopback_probe: %s: %s\n", what, strerror(errno));
    exit(2);
}

int main(int argc, char **argv)
{
    long writes = 50000, size = 240;
    int wcpu = 0, rcpu = 1;
    bool json = false, ok = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--writes") && i + 1 < argc)
            writes = atol(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = atol(argv[++i]);
        else if (!strcmp(argv[i], "--cpus") && i + 1 < argc)
            ok = sscanf(argv[++i], "%d,%d", &wcpu, &rcpu) == 2;
        else if (!strcmp(argv[i], "--json"))
            json = true;
        else
            ok = false;
        if (!ok) {
            fprintf(stderr,
                    "usage: loopback_probe [--writes N] [--size B] [--cpus W,R] [--json]\n");
            return 2;
        }
    }
    if (writes < 1 || size < 1 || size > 65536) {
        fprintf(stderr, "loopback_probe: --writes must be >= 1 and --size 1..65536\n");
        return 2;
    }

    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(ls, 1) < 0 ||
        getsockname(ls, (struct sockaddr *)&a, &alen) < 0)
        die("listen on 127.0.0.1");
    int rd = socket(AF_INET, SOCK_STREAM, 0);
    if (rd < 0 || connect(rd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect");
    int wr = accept(ls, NULL, NULL);
    if (wr < 0)
        die("accept");
    close(ls);
    int one = 1;
    setsockopt(wr, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    long long total = (long long)writes * size;
    pid_t child = fork();
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(wr);
        pin(rcpu);
        static char buf[65536];
        long long got = 0;
        while (got < total) {
            ssize_t r = read(rd, buf, sizeof(buf));
            if (r <= 0)
                break;
            got += r;
        }
        _exit(got == total ? 0 : 1);
    }
    close(rd);
    pin(wcpu);
    static char msg[65536];
    memset(msg, 'x', (size_t)size);
    /* A short warmup lets the connection's windows open before timing. */
    long warm = writes / 10;
    for (long i = 0; i < warm; i++)
        if (write(wr, msg, (size_t)size) != size)
            die("write");
    double c0 = cpu_s(), t0 = wall_s();
    for (long i = warm; i < writes; i++)
        if (write(wr, msg, (size_t)size) != size)
            die("write");
    double c1 = cpu_s(), t1 = wall_s();
    close(wr);
    int st = 0;
    waitpid(child, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "loopback_probe: the reader did not get every byte\n");
        return 2;
    }
    long timed = writes - warm;
    double us_cpu = (c1 - c0) * 1e6 / (double)timed, us_wall = (t1 - t0) * 1e6 / (double)timed;
    if (json)
        printf("{\"size\":%ld,\"writes\":%ld,\"writer_cpu_us\":%.3f,\"wall_us\":%.3f}\n", size,
               timed, us_cpu, us_wall);
    else
        printf("loopback_probe: %ld-byte writes: %.2f us of writer CPU each (%.2f us wall; %ld "
               "writes, writer on CPU %d, reader on CPU %d)\n",
               size, us_cpu, us_wall, timed, wcpu, rcpu);
    return 0;
}
