/* channel_test.c - channel name rules: length, UTF-8, control characters (C0, DEL, C1). */
#include "unit.h"
#include "proto/channel.h"

static enum channel_err val(const char *s)
{
    return channel_validate(s, strlen(s));
}

static void test_valid_names(void)
{
    CHECK_EQ(val("global"), CHANNEL_OK);
    CHECK_EQ(val("workflow:42"), CHANNEL_OK);
    CHECK_EQ(val("test:run-7"), CHANNEL_OK);
    CHECK_EQ(val("a"), CHANNEL_OK);
    CHECK_EQ(val("with space and \"quotes\" and \\"), CHANNEL_OK);
    CHECK_EQ(val("caf\xc3\xa9"), CHANNEL_OK);                   /* U+00E9 */
    CHECK_EQ(val("\xc2\xa0nbsp"), CHANNEL_OK);                  /* U+00A0: first after C1 */
    CHECK_EQ(val("\xe2\x82\xac \xf0\x9f\x98\x80"), CHANNEL_OK); /* euro, emoji */
    CHECK_EQ(val("~"), CHANNEL_OK);                             /* 0x7E, just below DEL */
    CHECK_EQ(val(" "), CHANNEL_OK);                             /* 0x20, just above C0 */
}

static void test_length(void)
{
    char name[300];
    memset(name, 'x', sizeof(name));
    CHECK_EQ(channel_validate(name, 0), CHANNEL_ERR_EMPTY);
    CHECK_EQ(channel_validate(name, 1), CHANNEL_OK);
    CHECK_EQ(channel_validate(name, 255), CHANNEL_OK);
    CHECK_EQ(channel_validate(name, 256), CHANNEL_ERR_TOO_LONG);
    CHECK_EQ(channel_validate(name, 300), CHANNEL_ERR_TOO_LONG);
    /* Bytes, not characters: 85 three-byte characters are 255 bytes, 86 are too many. */
    for (int i = 0; i < 86; i++)
        memcpy(name + 3 * i, "\xe2\x82\xac", 3);
    CHECK_EQ(channel_validate(name, 255), CHANNEL_OK);
    CHECK_EQ(channel_validate(name, 258), CHANNEL_ERR_TOO_LONG);
    /* Length is checked before content: an empty or long name says so, whatever it holds. */
    name[0] = '\n';
    CHECK_EQ(channel_validate(name, 256), CHANNEL_ERR_TOO_LONG);
}

static void test_utf8(void)
{
    CHECK_EQ(val("\xff"), CHANNEL_ERR_UTF8);
    CHECK_EQ(val("ab\xc3"), CHANNEL_ERR_UTF8);           /* truncated sequence */
    CHECK_EQ(val("\xc0\xaf"), CHANNEL_ERR_UTF8);         /* overlong '/' */
    CHECK_EQ(val("\xed\xa0\x80"), CHANNEL_ERR_UTF8);     /* surrogate U+D800 */
    CHECK_EQ(val("\xf4\x90\x80\x80"), CHANNEL_ERR_UTF8); /* above U+10FFFF */
    CHECK_EQ(val("\x80x"), CHANNEL_ERR_UTF8);            /* stray continuation */
    /* A lone 0xC2 at the end is bad UTF-8, not a C1 control. */
    CHECK_EQ(val("a\xc2"), CHANNEL_ERR_UTF8);
}

static void test_controls(void)
{
    for (int c = 0; c < 0x20; c++) {
        char name[3] = {'a', (char)c, 'b'};
        CHECK_EQ(channel_validate(name, 3), CHANNEL_ERR_CONTROL);
        CHECK_EQ(channel_validate(name + 1, 1), CHANNEL_ERR_CONTROL);
    }
    CHECK_EQ(val("a\x7f"), CHANNEL_ERR_CONTROL);
    /* C1: U+0080..U+009F (0xC2 0x80..0x9F), e.g. NEL and CSI. */
    for (int c = 0x80; c <= 0x9f; c++) {
        char name[4] = {'a', (char)0xc2, (char)c, 'b'};
        CHECK_EQ(channel_validate(name, 4), CHANNEL_ERR_CONTROL);
    }
    /* Neighbours of the C1 range that are fine. */
    CHECK_EQ(val("\xc2\xbf"), CHANNEL_OK);
    CHECK_EQ(val("\xc3\x80"), CHANNEL_OK);     /* U+00C0: continuation 0x80 after 0xC3 */
    CHECK_EQ(val("\xe2\x80\x85"), CHANNEL_OK); /* U+2005 ends in 0x80 0x85 */
}

static void test_err_str(void)
{
    CHECK(strcmp(channel_err_str(CHANNEL_ERR_EMPTY), "channel must be 1-255 bytes") == 0);
    CHECK(strcmp(channel_err_str(CHANNEL_ERR_TOO_LONG), "channel must be 1-255 bytes") == 0);
    CHECK(strcmp(channel_err_str(CHANNEL_ERR_UTF8), "channel must be valid UTF-8") == 0);
    CHECK(strcmp(channel_err_str(CHANNEL_ERR_CONTROL),
                 "channel must not contain control characters") == 0);
    CHECK(channel_err_str(CHANNEL_OK) != NULL);
}

int main(void)
{
    RUN(test_valid_names);
    RUN(test_length);
    RUN(test_utf8);
    RUN(test_controls);
    RUN(test_err_str);
    return unit_report("channel");
}
