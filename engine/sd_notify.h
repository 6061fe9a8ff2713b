/* sd_notify.h - readiness and state for systemd (Type=notify), from the main thread.
 *
 * Built with libsystemd (meson -Dsystemd=enabled, or auto when libsystemd-dev is installed):
 * sd_notify() tells the service manager READY=1 once every worker accepts, RELOADING=1 and
 * READY=1 around a SIGHUP reload, STOPPING=1 when the drain starts, and a STATUS= line. Without
 * $NOTIFY_SOCKET these do nothing; without libsystemd they compile to nothing.
 */
#ifndef RINGCAST_ENGINE_SD_NOTIFY_H
#define RINGCAST_ENGINE_SD_NOTIFY_H

void rc_notify_ready(const char *status);
void rc_notify_reloading(void);
void rc_notify_stopping(const char *status);

#endif
