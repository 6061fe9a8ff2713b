"""RFC 6455 §5.2-5.3 framing: payload length boundaries and encodings, masking, RSV bits,
reserved opcodes, binary refusal. Autobahn sections 1-4, adapted: a broadcast server has no echo,
so the "echo" of a text message is its response envelope (a pong for a ping request of the exact
size under test, or INVALID_MESSAGE for text that is not JSON)."""

import struct
import time

import pytest

from wsraw import (OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT, Conn, assert_error, assert_pong,
                   build_frame, frame_header, mask_bytes, ping_request)

MAX = 65536
ENGINE_ARGS = ["--rate-limit", "0", "--max-message-bytes", str(MAX)]


# ---- text frames of every interesting size ----------------------------------------------------

@pytest.mark.parametrize("size", [64, 125, 126, 127, 128, 1000, 65535, MAX])
def test_text_single_frame_sizes(conn, size):
    """7-bit, 16-bit and 64-bit length encodings at their boundaries, up to the max message."""
    conn.send_text(ping_request(size))
    assert_pong(conn.recv_json())


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, MAX])
def test_non_json_text_sizes(conn, size):
    """Text that is not a JSON request is answered with INVALID_MESSAGE and the connection
    stays usable (0-length text included)."""
    conn.send_text(b"x" * size)
    assert_error(conn.recv_json(), "INVALID_MESSAGE")
    assert_pong(conn.request({"type": "request", "event": "ping", "id": "f"}))


def test_zero_length_text_then_request(conn):
    conn.send_text(b"")
    assert_error(conn.recv_json(), "INVALID_MESSAGE")
    conn.send_text(ping_request(100))
    assert_pong(conn.recv_json())


def test_frame_trickled_byte_by_byte(conn):
    """The parser must cope with a frame arriving one byte per TCP segment."""
    data = build_frame(OP_TEXT, ping_request(300))
    for i in range(len(data)):
        conn.send(data[i: i + 1])
        if i % 16 == 0:
            time.sleep(0.001)
    assert_pong(conn.recv_json())


def test_many_frames_in_one_write(conn):
    """Pipelined frames in one segment are each processed, in order."""
    data = b"".join(build_frame(OP_TEXT, ping_request(80, rid=f"r{i}")) for i in range(50))
    conn.send(data)
    for i in range(50):
        assert_pong(conn.recv_json(), rid=f"r{i}")


def test_mask_key_zero_is_legal(conn):
    conn.send_frame(OP_TEXT, ping_request(100), key=b"\0\0\0\0")
    assert_pong(conn.recv_json())


def test_id_echoed_as_sent(conn):
    conn.send_text(b'{"type":"request","event":"ping","id":12345}')
    m = conn.recv_json()
    assert m["event"] == "pong" and m["correlation_id"] == 12345, m
    conn.send_text(b'{"type":"request","event":"ping","correlation_id":"abc"}')
    m = conn.recv_json()
    assert m["event"] == "pong" and m["correlation_id"] == "abc", m


def test_short_ping(conn):
    conn.send_text(b'{"type":"ping"}')
    assert conn.recv_json()["type"] == "pong"


# ---- length encoding --------------------------------------------------------------------------

@pytest.mark.parametrize("size,form", [(0, 16), (125, 16), (125, 64), (126, 64), (65535, 64)])
def test_non_minimal_length_is_protocol_error(conn, size, form):
    """§5.2: "the minimal number of bytes MUST be used to encode the length"."""
    conn.send_frame(OP_TEXT, b"x" * size, len_form=form)
    conn.expect_close(1002)


def test_length_top_bit_set_is_protocol_error(conn):
    """§5.2: the most significant bit of a 64-bit length MUST be 0."""
    b0 = 0x81
    conn.send(bytes([b0, 0x80 | 127]) + struct.pack(">Q", (1 << 63) | 10) + b"\1\2\3\4")
    conn.expect_close({1002, 1009})


# ---- masking ----------------------------------------------------------------------------------

@pytest.mark.parametrize("op,payload", [(OP_TEXT, b'{"type":"ping"}'), (OP_PING, b"hi"),
                                        (OP_TEXT, b"")])
def test_unmasked_client_frame(conn, op, payload):
    """§5.1: a server MUST close the connection on an unmasked client frame."""
    conn.send_frame(op, payload, mask=False)
    conn.expect_close(1002)


# ---- reserved bits ----------------------------------------------------------------------------

@pytest.mark.parametrize("rsv", [1, 2, 3, 4, 5, 6, 7])
def test_rsv_bits_on_text(conn, rsv):
    """§5.2: RSV1-3 MUST be 0 without a negotiated extension (rsv is the 3-bit field:
    4=RSV1, 2=RSV2, 1=RSV3)."""
    conn.send_frame(OP_TEXT, b'{"type":"ping"}', rsv=rsv)
    conn.expect_close(1002)


@pytest.mark.parametrize("rsv", [4, 2, 1])
def test_rsv_bits_on_ping(conn, rsv):
    conn.send_frame(OP_PING, b"x", rsv=rsv)
    conn.expect_close(1002)


@pytest.mark.parametrize("rsv", [4, 2, 1])
def test_rsv_bits_on_continuation(conn, rsv):
    conn.send_frame(OP_TEXT, b'{"type":', fin=False)
    conn.send_frame(OP_CONT, b'"ping"}', rsv=rsv)
    conn.expect_close(1002)


def test_rsv_after_valid_frame(conn):
    """A valid request is answered first, then the bad frame fails the connection."""
    conn.send(build_frame(OP_TEXT, ping_request(90)) + build_frame(OP_TEXT, b"{}", rsv=4))
    _, before = conn.expect_close(1002)
    assert len(before) == 1, before


# ---- opcodes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode(conn, op):
    conn.send_frame(op, b"")
    conn.expect_close(1002)


@pytest.mark.parametrize("op", [3, 0xB])
def test_reserved_opcode_with_payload(conn, op):
    conn.send_frame(op, b"payload")
    conn.expect_close(1002)


def test_binary_message_refused(conn):
    """ringcast speaks text only: binary is "a type of data it cannot accept" (§7.4.1, 1003)."""
    conn.send_frame(OP_BINARY, b"\x00\x01\x02")
    conn.expect_close(1003)


def test_binary_empty_refused(conn):
    conn.send_frame(OP_BINARY, b"")
    conn.expect_close(1003)


def test_binary_fragment_refused(conn):
    conn.send_frame(OP_BINARY, b"\x00", fin=False)
    conn.expect_close(1003)


def test_header_split_across_writes(conn):
    """A 64-bit length header arriving in pieces."""
    payload = ping_request(65000)
    hdr, key = frame_header(OP_TEXT, len(payload))
    body = mask_bytes(payload, key)
    for piece in (hdr[:1], hdr[1:3], hdr[3:], body[:1000], body[1000:]):
        conn.send(piece)
        time.sleep(0.01)
    assert_pong(conn.recv_json())


def test_pong_frame_allowed_any_time(conn):
    conn.send_frame(OP_PONG, b"")
    conn.send_text(ping_request(100))
    assert_pong(conn.recv_json())


def test_new_connection_after_errors(engine):
    """The server keeps serving after all of the above."""
    c = Conn.open(engine.port)
    try:
        assert_pong(c.request({"type": "request", "event": "ping", "id": "f"}))
    finally:
        c.close()
