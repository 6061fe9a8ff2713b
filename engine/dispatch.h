/* dispatch.h - client messages to actions, and the envelopes the server answers with.
 *
 * One complete text message goes in; it is tokenized on the worker's token array (no
 * allocation), rate-limited, and turned into a subscribe, unsubscribe, publish or ping. Every
 * failure a client can cause is answered with an error envelope (docs/protocol.md) and leaves
 * the connection open, except a rate limit that persists: that closes with 1008.
 *
 * Rate-limit rule: a token bucket of rate_burst messages refilled at rate_limit per second.
 * A message with no token is answered RATE_LIMITED and not acted on. A client that keeps
 * sending regardless — more than 2 x rate_burst messages refused since its bucket was last
 * full — is closed with 1008 (policy violation). The count is not reset by the odd message
 * that finds a refilled token, so a steady flood is closed however fast the refill.
 */
#ifndef RINGCAST_ENGINE_DISPATCH_H
#define RINGCAST_ENGINE_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "proto/span.h"

struct conn;
struct frame;
struct worker;

/* Handles one complete text message (payload bytes, valid UTF-8). */
void dispatch_message(struct conn *c, const char *msg, size_t len);

/* The welcome event (session.created) for a freshly upgraded connection. One reference. */
struct frame *dispatch_welcome(struct conn *c);
/* {"type":"response","event":EVENT,"data":{"status":STATUS,"channel":C}...}; channel is
 * escaped string contents. One reference. */
struct frame *dispatch_reply_channel(struct worker *w, const char *event, const char *status,
                                     struct span channel_esc, struct span id);
/* The publish response. One reference. */
struct frame *dispatch_reply_published(struct worker *w, struct span channel_esc, uint64_t seq,
                                       uint64_t subscribers, struct span id);
/* An error envelope with code and message. One reference. */
struct frame *dispatch_reply_error(struct worker *w, const char *code, const char *message,
                                   struct span id);

#endif
