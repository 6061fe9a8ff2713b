/* log.c - leveled, line-atomic logging to stderr (see log.h). */
#include "log.h"

#include <stdatomic.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "proto/json.h"

_Atomic enum log_level log_min_level = LOG_LVL_INFO;

static __thread char thread_name[16] = "main";

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void log_set_level(enum log_level level)
{
    log_min_level = level;
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return LOG_LVL_WARN;
    return -1;
}

const char *log_level_name(enum log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "?";
}

void log_set_thread_name(const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
}

int log_open_file(const char *path)
{
    if (!path || !*path)
        return 0;
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    /* dup2 swaps descriptor 2 atomically: a line being written by a worker goes wholly to the
     * old file or wholly to the new one. */
    int r = dup2(fd, STDERR_FILENO) < 0 ? -errno : 0;
    close(fd);
    return r;
}

static void log_vmsg(enum log_level level, const char *fmt, va_list ap, const char *suffix)
{
    /* One buffer, one write(2): a line is never torn by another thread's line. */
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_timestamp(line, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    size_t n = JSON_TIMESTAMP_LEN;
    int k = snprintf(line + n, sizeof(line) - n, " %-5s [%s] ", log_level_name(level), thread_name);
    if (k > 0)
        n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    if (k > 0)
        n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
    if (suffix) {
        k = snprintf(line + n, sizeof(line) - n, "%s", suffix);
        if (k > 0)
            n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
    }
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* truncated: keep room for the newline */
    line[n++] = '\n';
    int saved = errno;
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere left to report a failing stderr */
    errno = saved;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < log_min_level)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap, NULL);
    va_end(ap);
}

void log_limited(struct log_limit *l, enum log_level level, const char *fmt, ...)
{
    if (level < log_min_level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long sec = (long long)ts.tv_sec, last = atomic_load(&l->sec);
    /* One thread wins the second; the others count themselves as suppressed. */
    if (last == sec || !atomic_compare_exchange_strong(&l->sec, &last, sec)) {
        atomic_fetch_add(&l->dropped, 1);
        return;
    }
    unsigned long long dropped = atomic_exchange(&l->dropped, 0);
    char suffix[64] = "";
    if (dropped)
        snprintf(suffix, sizeof(suffix), " (%llu more like this suppressed)", dropped);
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap, suffix);
    va_end(ap);
}
