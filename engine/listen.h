/* listen.h - listening sockets and multishot accept.
 *
 * Every worker has its own SO_REUSEPORT socket on the same address, so the kernel spreads new
 * connections over the workers and an accepted connection never changes thread. Sockets are
 * opened by the main thread before the workers start, so "address in use" is a clear startup
 * error rather than a worker's.
 */
#ifndef RINGCAST_ENGINE_LISTEN_H
#define RINGCAST_ENGINE_LISTEN_H

#include <stddef.h>

struct rc_config;
struct worker;
struct sockaddr;

/* How long accept stays off after EMFILE/ENFILE: descriptors come back as clients leave. */
#define LISTEN_BACKOFF_MS 500

/* Opens n SO_REUSEPORT listening sockets on cfg's address (a numeric address, or a host name
 * resolved once, here) into fds, and writes the address as "127.0.0.1:8765" or "[::1]:8765"
 * into where. Returns 0, or -errno with the reason already logged (EADDRINUSE names the
 * address). */
int listen_open(const struct rc_config *cfg, unsigned n, int *fds, char *where, size_t cap);

/* Writes an IPv4 or IPv6 socket address as "ADDR:PORT", IPv6 in brackets ("[::1]:9702"). */
void listen_addr_format(const struct sockaddr *sa, char *out, size_t cap);

/* Arms the worker's multishot accept. */
void listen_arm(struct worker *w);
/* A completion of the multishot accept: res is the new socket or -errno. */
void listen_on_accept(struct worker *w, int res, unsigned cqe_flags);
/* Stops accepting (graceful shutdown): cancels the accept and closes the socket. */
void listen_stop(struct worker *w);

#endif
