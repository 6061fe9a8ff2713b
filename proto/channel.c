/* channel.c - room (channel) name validation.
 *
 * Names end up in logs, metrics labels and every broadcast frame, so beyond "valid UTF-8" they
 * must not carry anything a terminal or log viewer would act on. Besides the C0 controls and DEL
 * the header names, the C1 controls U+0080-U+009F are refused too: U+0085 (NEL) is a line break
 * to some log tooling and U+009B (CSI) starts an escape sequence on 8-bit terminals, and no
 * readable name needs them.
 */
#include "channel.h"

#include <stdint.h>

#include "utf8.h"

enum channel_err channel_validate(const char *name, size_t len)
{
    if (len == 0)
        return CHANNEL_ERR_EMPTY;
    if (len > CHANNEL_MAX_LEN)
        return CHANNEL_ERR_TOO_LONG;
    const unsigned char *s = (const unsigned char *)name;
    if (!utf8_valid(s, len))
        return CHANNEL_ERR_UTF8;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < 0x20 || s[i] == 0x7F)
            return CHANNEL_ERR_CONTROL;
        /* In valid UTF-8, U+0080-U+009F is exactly 0xC2 followed by 0x80-0x9F. */
        if (s[i] == 0xC2 && i + 1 < len && s[i + 1] <= 0x9F)
            return CHANNEL_ERR_CONTROL;
    }
    return CHANNEL_OK;
}

const char *channel_err_str(enum channel_err err)
{
    switch (err) {
    case CHANNEL_OK: return "ok";
    case CHANNEL_ERR_EMPTY:
    case CHANNEL_ERR_TOO_LONG: return "channel must be 1-255 bytes";
    case CHANNEL_ERR_UTF8: return "channel must be valid UTF-8";
    case CHANNEL_ERR_CONTROL: return "channel must not contain control characters";
    }
    return "invalid channel";
}
