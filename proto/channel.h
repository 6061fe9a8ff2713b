/* channel.h - room (channel) names.
 *
 * A channel name is 1-255 bytes of valid UTF-8 with no control characters (U+0000-U+001F,
 * U+007F, and the C1 controls U+0080-U+009F). By convention names are "kind:id" — "workflow:42",
 * "test:run-7" — or a bare word such as "global"; the server gives the convention no meaning, it
 * only keeps names readable in logs and URLs.
 */
#ifndef RINGCAST_PROTO_CHANNEL_H
#define RINGCAST_PROTO_CHANNEL_H

#include <stddef.h>

#define CHANNEL_MAX_LEN 255

enum channel_err {
    CHANNEL_OK = 0,
    CHANNEL_ERR_EMPTY,
    CHANNEL_ERR_TOO_LONG,
    CHANNEL_ERR_UTF8,
    CHANNEL_ERR_CONTROL,
};

/* Checks an (unescaped) channel name: length first, then UTF-8, then control characters. */
enum channel_err channel_validate(const char *name, size_t len);
/* A message for err, for the INVALID_CHANNEL error envelope. */
const char *channel_err_str(enum channel_err err);

#endif
