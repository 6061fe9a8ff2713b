/* log.h - leveled logging to stderr, one line per event, safe from any worker thread.
 *
 * Format: "2026-11-22T04:35:00.123Z INFO  [w0] listening on 127.0.0.1:8765". Each line is built
 * in a stack buffer and written with one write(2), so lines from different workers never
 * interleave. Logging is for events an operator cares about (start, listen, protocol errors,
 * slow-consumer closes, shutdown), never for the per-message hot path above debug level.
 */
#ifndef RINGCAST_ENGINE_LOG_H
#define RINGCAST_ENGINE_LOG_H

#include <stdatomic.h>

enum log_level {
    LOG_LVL_DEBUG = 0,
    LOG_LVL_INFO = 1,
    LOG_LVL_WARN = 2,
    LOG_LVL_ERROR = 3,
};

/* The lowest level that is printed; set at startup and on SIGHUP by log_set_level, read by
 * every thread (atomic: a reload may change it while workers log). */
extern _Atomic enum log_level log_min_level;

void log_set_level(enum log_level level);
/* Parses "debug", "info", "warn", "error"; returns -1 for anything else. */
int log_level_parse(const char *s);
const char *log_level_name(enum log_level level);
/* Names the calling thread in its log lines ("main", "w0", ...); the name is copied. */
void log_set_thread_name(const char *name);
/* Writes one line at level (no trailing newline needed). */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sends the log to path (appending) instead of stderr: the file becomes descriptor 2, so
 * anything else that writes to stderr lands there too. An empty path keeps stderr. Called again
 * (SIGHUP) it reopens path, for log rotation. Returns 0 or -errno (the log stays where it was). */
int log_open_file(const char *path);

/* State of one rate-limited kind of log line (static storage, zero-initialised; shared by all
 * threads). */
struct log_limit {
    _Atomic long long sec;              /* CLOCK_MONOTONIC second of the last line written */
    _Atomic unsigned long long dropped; /* lines suppressed since */
};
/* Writes a line at level unless one of this kind was written in the same second; a line that
 * follows suppressed ones ends with "(N more like this suppressed)". For events a client can
 * cause at will (refusals): an operator sees each kind, a flood cannot fill the disk. */
void log_limited(struct log_limit *l, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_min_level <= LOG_LVL_DEBUG)                                                        \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)
#define log_info(...)                                                                              \
    do {                                                                                           \
        if (log_min_level <= LOG_LVL_INFO)                                                         \
            log_msg(LOG_LVL_INFO, __VA_ARGS__);                                                    \
    } while (0)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
