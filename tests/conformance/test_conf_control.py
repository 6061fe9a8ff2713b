"""RFC 6455 §5.5 control frames: ping/pong (Autobahn 2.x) and the closing handshake (Autobahn 7.x),
adapted to ringcast: close frames are echoed with the peer's code, then the server closes TCP."""

import os
import socket
import struct
import time

import pytest

from wsraw import (OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, assert_pong, build_frame,
                   close_payload, ping_request)

ENGINE_ARGS = ["--rate-limit", "0"]


# ---- ping / pong ------------------------------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125)), os.urandom(125)],
                         ids=["empty", "text", "125-bytes", "125-random-binary"])
def test_ping_answered_with_same_payload(conn, payload):
    conn.send_frame(OP_PING, payload)
    op, data = conn.recv_message()
    assert op == OP_PONG and data == payload


def test_ping_126_bytes_is_protocol_error(conn):
    """§5.5: control frames have a payload of 125 bytes or less."""
    conn.send_frame(OP_PING, b"x" * 126)
    conn.expect_close(1002)


def test_ping_header_claiming_126_bytes(conn):
    """Detected from the header alone: no payload sent."""
    hdr = bytes([0x89, 0x80 | 126]) + struct.pack(">H", 126) + b"\0\0\0\0"
    conn.send(hdr)
    conn.expect_close(1002)


def test_fragmented_ping_is_protocol_error(conn):
    """§5.5: control frames MUST NOT be fragmented."""
    conn.send_frame(OP_PING, b"abc", fin=False)
    conn.expect_close(1002)


def test_fragmented_close_is_protocol_error(conn):
    conn.send_frame(OP_CLOSE, close_payload(1000), fin=False)
    conn.expect_close(1002)


@pytest.mark.parametrize("payload", [b"", b"unsolicited", b"y" * 125])
def test_unsolicited_pong_ignored(conn, payload):
    """§5.5.3: a pong may be sent unsolicited; no response is expected."""
    conn.send_frame(OP_PONG, payload)
    conn.expect_silence(0.2)
    conn.send_text(ping_request(100))
    assert_pong(conn.recv_json())


def test_ten_pings_in_one_write(conn):
    conn.send(b"".join(build_frame(OP_PING, b"p%d" % i) for i in range(10)))
    for i in range(10):
        op, data = conn.recv_message()
        assert op == OP_PONG and data == b"p%d" % i


def test_ping_pong_interleaved_with_requests(conn):
    conn.send(build_frame(OP_PING, b"a") + build_frame(OP_TEXT, ping_request(90))
              + build_frame(OP_PING, b"b"))
    got = [conn.recv_message() for _ in range(3)]
    pongs = [d for op, d in got if op == OP_PONG]
    texts = [d for op, d in got if op == OP_TEXT]
    assert pongs == [b"a", b"b"] and len(texts) == 1, got


# ---- closing handshake ------------------------------------------------------------------------

def test_close_without_payload_is_echoed(conn):
    conn.send_close()
    f, before = conn.expect_close({None, 1000}, echo=False)
    assert before == []


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                                  1013, 1014, 3000, 3999, 4000, 4999])
def test_valid_close_code_echoed(conn, code):
    conn.send_close(code, b"bye")
    conn.expect_close(code, echo=False)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
                                  65535])
def test_invalid_close_code_is_protocol_error(conn, code):
    conn.send_close(code)
    conn.expect_close(1002, echo=False)


def test_close_payload_one_byte(conn):
    conn.send_frame(OP_CLOSE, b"\x03")
    conn.expect_close(1002, echo=False)


def test_close_reason_max_length(conn):
    conn.send_close(1000, b"r" * 123)
    conn.expect_close(1000, echo=False)


def test_close_payload_too_long(conn):
    conn.send_frame(OP_CLOSE, close_payload(1000, b"r" * 124))
    conn.expect_close(1002, echo=False)


def test_close_reason_valid_utf8(conn):
    conn.send_close(1000, "κόσμε €😀".encode())
    conn.expect_close(1000, echo=False)


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc0\xaf", b"\xed\xa0\x80", b"abc\xf0\x9f\x98"],
                         ids=["0xff", "overlong", "surrogate", "truncated"])
def test_close_reason_invalid_utf8(conn, reason):
    conn.send_close(1000, reason)
    conn.expect_close(1007, echo=False)


def test_data_after_close_ignored(conn):
    """§5.5.1: after sending a close frame the endpoint sends no more data; a server must not
    act on what follows (no response envelope for the request after the close)."""
    conn.send(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_TEXT, ping_request(90))
              + build_frame(OP_PING, b"late"))
    f, before = conn.expect_close(1000, echo=False)
    assert before == [], f"server answered frames sent after close: {before!r}"


def test_server_closes_tcp_after_close_handshake(conn):
    """§7.1.1: the server should close the TCP connection first; the client keeps its side
    open and must see EOF without doing anything."""
    conn.send_close(1000)
    op, data = conn.recv_message()
    assert op == OP_CLOSE and struct.unpack(">H", data[:2])[0] == 1000
    conn.expect_eof(3.0)


def test_close_between_fragments(conn):
    """A close inside a fragmented message ends the connection normally; the partial message is
    dropped, not answered."""
    conn.send_frame(OP_TEXT, b'{"type":"request",', fin=False)
    conn.send_close(1000)
    f, before = conn.expect_close(1000, echo=False)
    assert before == []


def test_ping_after_close_not_answered(conn):
    conn.send_close(1001)
    conn.send_frame(OP_PING, b"x")
    f, before = conn.expect_close(1001, echo=False)
    assert before == []


def test_half_close_after_close_frame(conn):
    """Client sends close and shuts down its write side at once: the echo still arrives."""
    conn.send_close(1000)
    conn.sock.shutdown(socket.SHUT_WR)
    conn.expect_close(1000, echo=False)


def test_abrupt_eof_mid_frame(engine):
    """A frame cut off by EOF: the server just drops the connection and keeps serving."""
    from wsraw import Conn
    c = Conn.open(engine.port)
    c.send(build_frame(OP_TEXT, ping_request(1000))[:300])
    c.close()
    time.sleep(0.05)
    c2 = Conn.open(engine.port)
    try:
        c2.send_text(ping_request(100))
        assert_pong(c2.recv_json())
    finally:
        c2.close()


def test_continuation_after_close_not_processed(conn):
    conn.send(build_frame(OP_CLOSE, close_payload(1000)) + build_frame(OP_CONT, b"x"))
    conn.expect_close(1000, echo=False)
