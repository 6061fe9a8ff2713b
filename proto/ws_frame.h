/* ws_frame.h - RFC 6455 §5 framing: a parser that enforces every framing rule, and encoders.
 *
 * The parser works on whole frames in the caller's buffer: it returns the frame's total size
 * once all of it is there, WS_NEED_MORE (with the size it needs, as soon as the header tells)
 * until then, or WS_ERROR with one enum ws_err that maps to one close code. It unmasks the
 * payload in place and never allocates; reassembling fragments is the caller's job, but the
 * parser tracks the fragmentation state, the message size and UTF-8 across fragments.
 */
#ifndef RINGCAST_PROTO_WS_FRAME_H
#define RINGCAST_PROTO_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "span.h"
#include "utf8.h"

#define WS_NEED_MORE (-2)
#define WS_ERROR     (-1)

/* Largest frame header: 2 bytes + 8-byte length + 4-byte mask. */
#define WS_MAX_HEADER 14
/* Largest header of an unmasked (server-to-client) frame. */
#define WS_MAX_HEADER_UNMASKED 10
/* Largest control frame payload (RFC 6455 §5.5). */
#define WS_MAX_CONTROL_PAYLOAD 125

enum ws_opcode {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* Close codes this library produces or names (RFC 6455 §7.4.1, plus ringcast's own 4xxx). */
enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005, /* never on the wire: "close frame had no code" */
    WS_CLOSE_ABNORMAL = 1006,  /* never on the wire */
    WS_CLOSE_INVALID_PAYLOAD = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
    WS_CLOSE_TRY_AGAIN = 1013,
};

/* Every way a peer can break the framing rules. Each maps to exactly one close code. */
enum ws_err {
    WS_OK = 0,
    WS_ERR_RSV,                /* 1002: RSV1-3 set, no extension negotiated */
    WS_ERR_OPCODE,             /* 1002: reserved opcode 3-7 or B-F */
    WS_ERR_MASK,               /* 1002: client frame unmasked, or server frame masked */
    WS_ERR_LENGTH,             /* 1002: 64-bit length with the top bit set, or not minimal */
    WS_ERR_CONTROL_TOO_LONG,   /* 1002: control payload over 125 bytes */
    WS_ERR_CONTROL_FRAGMENTED, /* 1002: control frame without FIN */
    WS_ERR_UNEXPECTED_CONT,    /* 1002: continuation frame with no message open */
    WS_ERR_EXPECTED_CONT,      /* 1002: new text/binary frame while a message is open */
    WS_ERR_CLOSE_PAYLOAD,      /* 1002: close payload of exactly 1 byte */
    WS_ERR_CLOSE_CODE,         /* 1002: close code not allowed on the wire */
    WS_ERR_BINARY,             /* 1003: binary message and the parser was told to refuse it */
    WS_ERR_UTF8,               /* 1007: text message or close reason not valid UTF-8 */
    WS_ERR_TOO_BIG,            /* 1009: message (all fragments) over max_message bytes */
};

/* The close code to send for err (1002, 1003, 1007 or 1009; 1000 for WS_OK). */
uint16_t ws_err_close_code(enum ws_err err);
/* A short, human-readable description of err, suitable as a close reason and a log line. */
const char *ws_err_str(enum ws_err err);

enum ws_role {
    WS_ROLE_SERVER, /* parses client frames: they must be masked */
    WS_ROLE_CLIENT, /* parses server frames: they must not be masked */
};

struct ws_parser {
    /* configuration, set by ws_parser_init */
    enum ws_role role;
    uint64_t max_message; /* largest message (sum of fragments) accepted */
    bool allow_binary;
    bool caller_checks_utf8; /* set by ws_parser_caller_checks_utf8 */
    /* message state */
    uint8_t msg_opcode; /* opcode of the open fragmented message, 0 when none */
    uint64_t msg_len;   /* bytes of the open message so far */
    struct utf8_state utf8;
};

/* One parsed frame. payload points into the caller's buffer, already unmasked. */
struct ws_frame {
    uint8_t opcode; /* as on the wire (WS_OP_CONT for continuations) */
    bool fin;
    uint8_t msg_opcode; /* data frames: WS_OP_TEXT or WS_OP_BINARY of the message */
    bool msg_start;     /* data frames: first frame of a message */
    bool msg_end;       /* data frames: last frame of a message (fin) */
    uint8_t *payload;
    size_t len;
    uint16_t close_code;      /* close frames: the code, or WS_CLOSE_NO_STATUS when absent */
    struct span close_reason; /* close frames: the reason (validated UTF-8) */
};

/* Sets up a parser for role, refusing messages over max_message bytes (1009) and, unless
 * allow_binary, binary messages (1003). */
void ws_parser_init(struct ws_parser *p, enum ws_role role, uint64_t max_message,
                    bool allow_binary);

/* Leaves the UTF-8 check of text messages to the caller, who must run utf8_valid over every
 * complete message before trusting it (and fail the connection with WS_ERR_UTF8 when it is not
 * valid). For a client that sees the same broadcast bytes many times and checks only what it
 * has not seen before; close reasons are still checked here. */
void ws_parser_caller_checks_utf8(struct ws_parser *p);

/* Parses the frame at buf[0..len). Returns its total size (header + payload) when it is all
 * there, filling *f and unmasking the payload in place; WS_NEED_MORE when it is not, with *need
 * (if not NULL) set to the total size needed once the header is complete, or to a lower bound
 * before that; WS_ERROR with *err set on any rule broken. Enforces: RSV bits, opcodes, masking
 * by role, minimal lengths, control frame size and FIN, fragmentation sequencing with control
 * frames allowed between fragments, max_message over all fragments (checked from the header,
 * before the payload arrives), UTF-8 of text across fragments, close payload rules.
 * Message state in *p changes only when a whole frame is returned. A frame whose total size
 * would not fit the int return value is refused as WS_ERR_TOO_BIG. */
int ws_frame_parse(struct ws_parser *p, uint8_t *buf, size_t len, struct ws_frame *f,
                   enum ws_err *err, size_t *need);

/* True when code may appear in a close frame on the wire: 1000-1003, 1007-1014, 3000-4999. */
bool ws_close_code_valid(uint16_t code);

/* Size of the header for a payload of len bytes, masked or not. */
size_t ws_frame_header_len(uint64_t len, bool masked);

/* Writes a frame header for a payload of len bytes into out (at least WS_MAX_HEADER bytes).
 * mask is NULL for server frames, else the 4-byte key (the caller masks the payload with
 * ws_mask). Returns the header length. */
size_t ws_frame_header_write(uint8_t *out, uint8_t opcode, bool fin, uint64_t len,
                             const uint8_t *mask);

/* Writes an unmasked header so that it ends exactly at payload: the caller reserved
 * WS_MAX_HEADER_UNMASKED bytes before payload and the frame is one contiguous buffer starting
 * at the returned pointer. This is how a broadcast frame is encoded once. */
uint8_t *ws_frame_header_prepend(uint8_t *payload, uint8_t opcode, uint64_t len);

/* XORs data with key, as if data began offset bytes into the masked payload. */
void ws_mask(uint8_t *data, size_t len, const uint8_t key[4], size_t offset);

/* Writes a close payload (code + reason) into out (at least WS_MAX_CONTROL_PAYLOAD bytes); the
 * reason is cut at a UTF-8 boundary to fit 123 bytes. Returns the payload length.
 * The reason is also cut before its first invalid UTF-8 byte, if any; code WS_CLOSE_NO_STATUS
 * writes the empty payload (0), the wire form of "no status". */
size_t ws_close_payload_write(uint8_t *out, uint16_t code, const char *reason, size_t reason_len);

#endif
