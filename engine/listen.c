/* listen.c - SO_REUSEPORT listeners and multishot accept (see listen.h). */
#include "listen.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "defaults.h"
#include "log.h"
#include "worker.h"

static int open_one(const struct addrinfo *ai, bool reuseport)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
        (reuseport && listen(fd, RC_DEF_BACKLOG) < 0)) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

void listen_addr_format(const struct sockaddr *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        snprintf(out, cap, "[%s]:%u", host, port);
        return;
    }
    snprintf(out, cap, "%s:%u", host, port);
}

int listen_open(const struct rc_config *cfg, unsigned n, int *fds, char *where, size_t cap)
{
    struct addrinfo hints, *ai;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", cfg->port);
    /* A host name is resolved once, here: the first address it has is the one we listen on
     * (getaddrinfo orders them by RFC 6724, so "localhost" is 127.0.0.1 on a usual host). */
    int r = getaddrinfo(cfg->bind, port, &hints, &ai);
    if (r) {
        log_error("cannot listen on %s port %u: bind '%s': %s", cfg->bind, cfg->port, cfg->bind,
                  r == EAI_SYSTEM ? strerror(errno) : gai_strerror(r));
        return -EINVAL;
    }
    listen_addr_format(ai->ai_addr, where, cap);
    if (strcmp(where, cfg->bind) != 0 && ai->ai_next)
        log_info("bind %s resolves to several addresses: listening on the first, %s", cfg->bind,
                 where);
    /* SO_REUSEPORT would happily share the port with another ringcast of the same user: a
     * plain bind first tells "in use" apart. */
    int probe = open_one(ai, false);
    if (probe < 0) {
        if (probe == -EADDRINUSE)
            log_error("cannot listen on %s: address already in use (another server is "
                      "listening there)",
                      where);
        else
            log_error("cannot listen on %s: %s", where, strerror(-probe));
        freeaddrinfo(ai);
        return probe;
    }
    close(probe);
    for (unsigned i = 0; i < n; i++) {
        fds[i] = open_one(ai, true);
        if (fds[i] < 0) {
            int e = fds[i];
            log_error("cannot listen on %s: %s", where, strerror(-e));
            while (i--)
                close(fds[i]);
            freeaddrinfo(ai);
            return e;
        }
    }
    freeaddrinfo(ai);
    return 0;
}

/* Out of descriptors: the accept stays off until then (CLOCK_MONOTONIC ms), per worker. */
static __thread int64_t backoff_until_ms;

void listen_arm(struct worker *w)
{
    if (w->listen_fd < 0 || w->draining || w->mono_ms < backoff_until_ms)
        return;
    struct io_uring_sqe *sqe = worker_sqe(w);
    io_uring_prep_multishot_accept(sqe, w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud_make(w, UD_ACCEPT));
    w->accept_armed = true;
}

void listen_on_accept(struct worker *w, int res, unsigned cqe_flags)
{
    if (!(cqe_flags & IORING_CQE_F_MORE))
        w->accept_armed = false;
    if (res >= 0) {
        if (w->draining)
            close(res);
        else
            conn_accept(w, res);
    } else if (res == -EMFILE || res == -ENFILE) {
        /* Out of descriptors: the backlog waits, and a tick after the backoff re-arms the
         * accept, rather than spinning on the error here; one line a second says so. */
        static struct log_limit lim;
        backoff_until_ms = w->mono_ms + LISTEN_BACKOFF_MS;
        log_limited(&lim, LOG_LVL_WARN,
                    "accept: %s: pausing accept for %d ms (max-connections above the "
                    "descriptor limit? raise ulimit -n)",
                    strerror(-res), LISTEN_BACKOFF_MS);
        return;
    } else if (res != -ECANCELED && res != -EBADF && res != -EINVAL) {
        log_warn("accept: %s", strerror(-res));
    }
    if (!w->accept_armed && !w->draining && w->listen_fd >= 0)
        listen_arm(w);
}

void listen_stop(struct worker *w)
{
    if (w->listen_fd < 0)
        return;
    if (w->accept_armed) {
        struct io_uring_sqe *sqe = worker_sqe(w);
        io_uring_prep_cancel64(sqe, ud_make(w, UD_ACCEPT), 0);
        io_uring_sqe_set_data64(sqe, ud_make(NULL, UD_IGNORE));
    }
    close(w->listen_fd);
    w->listen_fd = -1;
}
