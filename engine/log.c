/* log.c - leveled, line-atomic logging to stderr (see log.h). */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "proto/json.h"

enum log_level log_min_level = LOG_LVL_INFO;

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

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < log_min_level)
        return;
    /* One buffer, one write(2): a line is never torn by another thread's line. */
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    json_timestamp(line, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    size_t n = JSON_TIMESTAMP_LEN;
    int k = snprintf(line + n, sizeof(line) - n, " %-5s [%s] ", log_level_name(level), thread_name);
    if (k > 0)
        n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (k > 0)
        n += (size_t)k < sizeof(line) - n ? (size_t)k : sizeof(line) - n - 1;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* truncated: keep room for the newline */
    line[n++] = '\n';
    int saved = errno;
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere left to report a failing stderr */
    errno = saved;
}
