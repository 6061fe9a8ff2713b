/* listen.h - listening sockets and multishot accept.
 *
 * Every worker has its own SO_REUSEPORT socket on the same address, so the kernel spreads new
 * connections over the workers and an accepted connection never changes thread. Sockets are
 * opened by the main thread before the workers start, so "address in use" is a clear startup
 * error rather than a worker's.
 */
#ifndef RINGCAST_ENGINE_LISTEN_H
#define RINGCAST_ENGINE_LISTEN_H

struct rc_config;
struct worker;

/* Opens n SO_REUSEPORT listening sockets on cfg's address into fds. Returns 0, or -errno with
 * the reason already logged (EADDRINUSE names the address). */
int listen_open(const struct rc_config *cfg, unsigned n, int *fds);

/* Arms the worker's multishot accept. */
void listen_arm(struct worker *w);
/* A completion of the multishot accept: res is the new socket or -errno. */
void listen_on_accept(struct worker *w, int res, unsigned cqe_flags);
/* Stops accepting (graceful shutdown): cancels the accept and closes the socket. */
void listen_stop(struct worker *w);

#endif
