/* utf8.c - incremental UTF-8 validation: a byte-class table feeding a small state machine.
 *
 * Every byte is first mapped to one of 12 classes that capture exactly the distinctions
 * RFC 3629 draws (which continuation range a lead byte allows next), then one table lookup moves
 * the state. States are stored premultiplied by the number of classes so a transition is a single
 * index, and ACCEPT is 0 so "at a character boundary" is the zero test the header promises.
 * ASCII runs, the common case for JSON chat traffic, skip the machine entirely 8 bytes at a time.
 */
#include "utf8.h"

#include <string.h>

/* Byte classes. Continuation bytes are split in three ranges because E0, ED, F0 and F4 each
 * restrict their second byte to a sub-range (overlong, surrogate and > U+10FFFF exclusions). */
enum {
    C_ASCII, /* 00..7F */
    C_C80,   /* 80..8F */
    C_C90,   /* 90..9F */
    C_CA0,   /* A0..BF */
    C_BAD,   /* C0, C1 (overlong 2-byte), F5..FF (beyond U+10FFFF) */
    C_L2,    /* C2..DF: 2-byte lead */
    C_E0,    /* E0: second byte A0..BF (else overlong) */
    C_L3,    /* E1..EC, EE, EF: 3-byte lead, any continuation */
    C_ED,    /* ED: second byte 80..9F (else a surrogate) */
    C_F0,    /* F0: second byte 90..BF (else overlong) */
    C_L4,    /* F1..F3: 4-byte lead, any continuation */
    C_F4,    /* F4: second byte 80..8F (else beyond U+10FFFF) */
    NCLASS
};

/* States, premultiplied by NCLASS. The names say what the next byte must be. */
enum {
    S_ACCEPT = 0 * NCLASS, /* at a boundary */
    S_CONT1 = 1 * NCLASS,  /* one more continuation, any range */
    S_CONT2 = 2 * NCLASS,  /* two more, any range */
    S_E0 = 3 * NCLASS,     /* A0..BF then one more */
    S_ED = 4 * NCLASS,     /* 80..9F then one more */
    S_CONT3 = 5 * NCLASS,  /* three more, any range */
    S_F0 = 6 * NCLASS,     /* 90..BF then two more */
    S_F4 = 7 * NCLASS,     /* 80..8F then two more */
    S_REJECT = 8 * NCLASS, /* sink: once invalid, always invalid */
};

#define R S_REJECT

/* Written out in full (not with GNU range initializers) so the file stays ISO C. */
#define X2(c)  c, c
#define X4(c)  X2(c), X2(c)
#define X8(c)  X4(c), X4(c)
#define X16(c) X8(c), X8(c)

// clang-format off
static const uint8_t byte_class[256] = {
    X16(C_ASCII), X16(C_ASCII), X16(C_ASCII), X16(C_ASCII),    /* 00..3F */
    X16(C_ASCII), X16(C_ASCII), X16(C_ASCII), X16(C_ASCII),    /* 40..7F */
    X16(C_C80), X16(C_C90), X16(C_CA0), X16(C_CA0),            /* 80..BF */
    X2(C_BAD), X16(C_L2), X8(C_L2), X4(C_L2), X2(C_L2),        /* C0..DF */
    C_E0, X8(C_L3), X4(C_L3), C_ED, X2(C_L3),                  /* E0..EF */
    C_F0, X2(C_L4), C_L4, C_F4, X8(C_BAD), X2(C_BAD), C_BAD,   /* F0..FF */
};

/* transition[state + class] -> next state; rows in the order of the S_ enum. */
static const uint8_t transition[9 * NCLASS] = {
    /*            ASCII     80..8F    90..9F    A0..BF    bad L2       E0    L3       ED    F0    L4       F4 */
    /* ACCEPT */  S_ACCEPT, R,        R,        R,        R,  S_CONT1, S_E0, S_CONT2, S_ED, S_F0, S_CONT3, S_F4,
    /* CONT1  */  R,        S_ACCEPT, S_ACCEPT, S_ACCEPT, R,  R,       R,    R,       R,    R,    R,       R,
    /* CONT2  */  R,        S_CONT1,  S_CONT1,  S_CONT1,  R,  R,       R,    R,       R,    R,    R,       R,
    /* E0     */  R,        R,        R,        S_CONT1,  R,  R,       R,    R,       R,    R,    R,       R,
    /* ED     */  R,        S_CONT1,  S_CONT1,  R,        R,  R,       R,    R,       R,    R,    R,       R,
    /* CONT3  */  R,        S_CONT2,  S_CONT2,  S_CONT2,  R,  R,       R,    R,       R,    R,    R,       R,
    /* F0     */  R,        R,        S_CONT2,  S_CONT2,  R,  R,       R,    R,       R,    R,    R,       R,
    /* F4     */  R,        S_CONT2,  R,        R,        R,  R,       R,    R,       R,    R,    R,       R,
    /* REJECT */  R,        R,        R,        R,        R,  R,       R,    R,       R,    R,    R,       R,
};
// clang-format on

#undef R
#undef X2
#undef X4
#undef X8
#undef X16

#define HIGH_BITS 0x8080808080808080ull

enum utf8_result utf8_feed(struct utf8_state *s, const uint8_t *buf, size_t len, size_t *bad)
{
    uint32_t st = s->state;
    size_t i = 0;

    if (st == S_REJECT) {
        /* Already invalid from an earlier call: nothing in this buffer is to blame. */
        if (bad)
            *bad = 0;
        return UTF8_INVALID;
    }
    while (i < len) {
        if (st == S_ACCEPT) {
            /* Only at a boundary can ASCII be skipped without consulting the machine: inside a
             * sequence an ASCII byte is an error that must be reported at its own offset. */
            while (len - i >= 16) {
                uint64_t a, b;
                memcpy(&a, buf + i, 8);
                memcpy(&b, buf + i + 8, 8);
                if ((a | b) & HIGH_BITS)
                    break;
                i += 16;
            }
            while (i < len && buf[i] < 0x80)
                i++;
            if (i == len)
                break;
        }
        st = transition[st + byte_class[buf[i]]];
        if (st == S_REJECT) {
            s->state = S_REJECT;
            if (bad)
                *bad = i;
            return UTF8_INVALID;
        }
        i++;
    }
    s->state = st;
    return st == S_ACCEPT ? UTF8_OK : UTF8_PARTIAL;
}

bool utf8_valid(const uint8_t *buf, size_t len)
{
    struct utf8_state s;
    utf8_init(&s);
    return utf8_feed(&s, buf, len, NULL) == UTF8_OK;
}
