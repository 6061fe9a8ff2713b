/* sd_notify.c - see sd_notify.h. */
#include "sd_notify.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#include <time.h>

void rc_notify_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void rc_notify_reloading(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* MONOTONIC_USEC lets systemd >= 253 match the reload; older ones ignore it. */
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
}

void rc_notify_stopping(const char *status)
{
    sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
}
#else
void rc_notify_ready(const char *status)
{
    (void)status;
}
void rc_notify_reloading(void)
{
}
void rc_notify_stopping(const char *status)
{
    (void)status;
}
#endif
