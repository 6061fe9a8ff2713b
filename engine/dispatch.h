/* dispatch.h - client messages to actions, and the envelopes the server answers with.
 *
 * Every builder returns NULL when memory is short; sendq_push(c, NULL) turns that into the
 * connection's close (1011), so the shortage costs the client that needed the frame.
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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/span.h"

struct conn;
struct frame;
struct worker;

/* Takes one token from c's rate-limit bucket (messages and pings alike). False when the
 * message is refused; a refusal that makes the flood persistent also marks c to close 1008. */
bool dispatch_admit(struct conn *c);
/* The bucket alone, for the HTTP API (which answers 429 itself): takes one token, false when
 * there is none. */
bool dispatch_rate_ok(struct conn *c);
/* True when c's refusals have become a persistent flood (the rule above): close it. */
bool dispatch_rate_persistent(const struct conn *c);
/* Handles one complete text message (payload bytes, valid UTF-8). */
void dispatch_message(struct conn *c, const char *msg, size_t len);

/* The welcome event (session.created) for a freshly upgraded connection. One reference. */
struct frame *dispatch_welcome(struct conn *c);
/* {"type":"response","event":EVENT,"data":{"status":STATUS,"channel":C}...}; channel is
 * escaped string contents. One reference. */
struct frame *dispatch_reply_channel(struct worker *w, const char *event, const char *status,
                                     struct span channel_esc, struct span id);
/* Payload bytes a publish response needs (for a frame reserved before the answer is known). */
size_t dispatch_published_cap(size_t channel_esc_len, size_t id_len);
/* Writes the publish response into f (allocated with dispatch_published_cap). */
void dispatch_write_published(struct worker *w, struct frame *f, struct span channel_esc,
                              uint64_t seq, uint64_t epoch, uint64_t subscribers, struct span id);
/* Writes an error envelope into f (the message short enough for f's capacity). */
void dispatch_write_error(struct worker *w, struct frame *f, const char *code, const char *message,
                          struct span id);
/* The publish response. One reference. */
struct frame *dispatch_reply_published(struct worker *w, struct span channel_esc, uint64_t seq,
                                       uint64_t epoch, uint64_t subscribers, struct span id);
/* An error envelope with code and message. One reference. */
struct frame *dispatch_reply_error(struct worker *w, const char *code, const char *message,
                                   struct span id);

#endif
