/* listen.c - SO_REUSEPORT listeners and multishot accept (see listen.h). */
#include "listen.h"

#include <errno.h>
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

int listen_open(const struct rc_config *cfg, unsigned n, int *fds)
{
    struct addrinfo hints, *ai;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    char port[8];
    snprintf(port, sizeof(port), "%u", cfg->port);
    int r = getaddrinfo(cfg->bind, port, &hints, &ai);
    if (r) {
        log_error("cannot listen on %s:%u: %s", cfg->bind, cfg->port, gai_strerror(r));
        return -EINVAL;
    }
    /* SO_REUSEPORT would happily share the port with another ringcast of the same user: a
     * plain bind first tells "in use" apart. */
    int probe = open_one(ai, false);
    if (probe < 0) {
        if (probe == -EADDRINUSE)
            log_error("cannot listen on %s:%u: address already in use (another server is "
                      "listening there)",
                      cfg->bind, cfg->port);
        else
            log_error("cannot listen on %s:%u: %s", cfg->bind, cfg->port, strerror(-probe));
        freeaddrinfo(ai);
        return probe;
    }
    close(probe);
    for (unsigned i = 0; i < n; i++) {
        fds[i] = open_one(ai, true);
        if (fds[i] < 0) {
            int e = fds[i];
            log_error("cannot listen on %s:%u: %s", cfg->bind, cfg->port, strerror(-e));
            while (i--)
                close(fds[i]);
            freeaddrinfo(ai);
            return e;
        }
    }
    freeaddrinfo(ai);
    return 0;
}

void listen_arm(struct worker *w)
{
    if (w->listen_fd < 0 || w->draining)
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
        /* Out of descriptors: the backlog waits, and the next tick re-arms the accept
         * rather than spinning on the error here. */
        log_warn("accept: %s (max-connections above the descriptor limit?)", strerror(-res));
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
