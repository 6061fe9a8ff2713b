"""WebSocket framing (RFC 6455) against hand-built frames: close codes for each violation,
control frames, fragmentation, the message size limit."""

import json
import struct

import pytest

from engine_harness import (OP_BIN, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWS,
                            close_code_of, close_payload, connect, run)


def expect_close_then_eof(ws, code, timeout=5.0):
    got = ws.expect_close(timeout)
    assert got == code, f"expected close {code}, got {got}"
    # Answer the close as a polite client would; the server must then end the TCP stream.
    try:
        ws.send_frame(OP_CLOSE, close_payload(code))
    except OSError:
        pass
    assert ws.wait_eof(3.0), "server kept the TCP connection open after the close handshake"


def test_binary_frame_closes_1003(engine):
    ws = RawWS(engine.port)
    ws.send_frame(OP_BIN, b"\x00\x01\x02binary")
    expect_close_then_eof(ws, 1003)
    ws.close()


def test_binary_frame_from_library_client_closes_1003(engine):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(b"binary payload")
        return await close_code_of(ws)

    assert run(go()) == 1003


@pytest.mark.parametrize("payload", [
    b"\xff\xfe",                     # never valid
    b'{"type":"ping","x":"\xc3"}',  # truncated 2-byte sequence
    b"\xed\xa0\x80",                 # UTF-16 surrogate encoded in UTF-8
    b"\xc0\xaf",                     # overlong encoding of '/'
    b"\xf4\x90\x80\x80",             # above U+10FFFF
])
def test_invalid_utf8_text_closes_1007(engine, payload):
    ws = RawWS(engine.port)
    ws.send_frame(OP_TEXT, payload)
    expect_close_then_eof(ws, 1007)
    ws.close()


def test_invalid_utf8_split_across_fragments_closes_1007(engine):
    ws = RawWS(engine.port)
    ws.send_frame(OP_TEXT, b'{"type":"ping","x":"\xe2\x82', fin=False)
    ws.send_frame(OP_CONT, b'\x28"}', fin=True)  # 0x28 is no continuation byte
    expect_close_then_eof(ws, 1007)
    ws.close()


def test_valid_utf8_split_across_fragments_accepted(engine):
    ws = RawWS(engine.port)
    msg = '{"type":"request","event":"ping","id":"\u20ac\U0001F600"}'.encode()
    cut = msg.index(b"\xe2") + 1  # inside the euro sign's 3 bytes
    ws.send_frame(OP_TEXT, msg[:cut], fin=False)
    ws.send_frame(OP_CONT, msg[cut:], fin=True)
    r = ws.recv_json()
    assert r["type"] == "response" and r["correlation_id"] == "\u20ac\U0001F600", r
    ws.close()


BAD_FRAMES = {
    "unmasked": dict(opcode=OP_TEXT, payload=b'{"type":"ping"}', mask=False),
    "rsv1": dict(opcode=OP_TEXT, payload=b'{"type":"ping"}', rsv=4),
    "rsv2": dict(opcode=OP_TEXT, payload=b'{"type":"ping"}', rsv=2),
    "rsv3": dict(opcode=OP_TEXT, payload=b'{"type":"ping"}', rsv=1),
    "reserved_data_opcode_3": dict(opcode=0x3, payload=b"x"),
    "reserved_control_opcode_b": dict(opcode=0xB, payload=b"x"),
    "fragmented_ping": dict(opcode=OP_PING, payload=b"x", fin=False),
    "ping_over_125_bytes": dict(opcode=OP_PING, payload=b"p" * 126),
    "continuation_without_start": dict(opcode=OP_CONT, payload=b"x"),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_bad_framing_closes_1002(engine, name):
    ws = RawWS(engine.port)
    kw = dict(BAD_FRAMES[name])
    op = kw.pop("opcode")
    payload = kw.pop("payload")
    ws.send_frame(op, payload, **kw)
    expect_close_then_eof(ws, 1002)
    ws.close()


def test_new_data_frame_inside_fragmented_message_closes_1002(engine):
    ws = RawWS(engine.port)
    ws.send_frame(OP_TEXT, b'{"type":', fin=False)
    ws.send_frame(OP_TEXT, b'"ping"}', fin=True)  # must have been a continuation
    expect_close_then_eof(ws, 1002)
    ws.close()


@pytest.mark.parametrize("payload", [b"hello", b"", bytes(range(125))])
def test_ping_frame_answered_with_pong_same_payload(engine, payload):
    ws = RawWS(engine.port)
    ws.send_frame(OP_PING, payload)
    op, got = ws.recv_frame()
    assert op == OP_PONG, f"expected pong, got opcode {op}"
    assert got == payload
    ws.close()


def test_unsolicited_pong_is_ignored(engine):
    ws = RawWS(engine.port)
    ws.send_frame(OP_PONG, b"unsolicited")
    ws.send_json({"type": "request", "event": "ping", "id": "after-pong"})
    r = ws.recv_json()
    assert r["correlation_id"] == "after-pong"
    ws.close()


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
def test_close_frame_echoed_with_same_code(engine, code):
    ws = RawWS(engine.port)
    ws.send_frame(OP_CLOSE, close_payload(code, b"bye"))
    op, payload = ws.recv_frame()
    assert op == OP_CLOSE
    assert len(payload) >= 2 and struct.unpack("!H", payload[:2])[0] == code
    assert ws.wait_eof(3.0), "server did not end the TCP stream after echoing the close"
    ws.close()


def test_empty_close_frame_answered_with_close(engine):
    ws = RawWS(engine.port)
    ws.send_frame(OP_CLOSE, b"")
    op, payload = ws.recv_frame()
    assert op == OP_CLOSE
    # An empty close carries no code (1005 locally); the reply is empty or says 1000.
    assert payload == b"" or payload[:2] == struct.pack("!H", 1000), payload
    assert ws.wait_eof(3.0)
    ws.close()


@pytest.mark.parametrize("payload", [
    b"\x03\xe8\xff\xfe",   # 1000 with a reason that is not UTF-8
    b"\x03",               # one byte: no room for a code
    struct.pack("!H", 1005),  # reserved: must never be on the wire
    struct.pack("!H", 999),
])
def test_invalid_close_frame_is_a_protocol_error(engine, payload):
    ws = RawWS(engine.port)
    ws.send_frame(OP_CLOSE, payload)
    got = ws.expect_close()
    # RFC 6455 7.4.1/8.1: 1002 for a bad code or length, 1007 for a non-UTF-8 reason.
    assert got in (1002, 1007), f"got {got}"
    ws.close()


def test_fragmented_request_reassembled_with_ping_between_fragments(engine):
    ws = RawWS(engine.port)
    msg = json.dumps({"type": "request", "event": "subscribe", "data": {"channel": "frag"},
                      "id": "frag-1"}).encode()
    a, b, c = msg[:10], msg[10:25], msg[25:]
    ws.send_frame(OP_TEXT, a, fin=False)
    ws.send_frame(OP_PING, b"between")
    ws.send_frame(OP_CONT, b, fin=False)
    ws.send_frame(OP_CONT, c, fin=True)
    op, payload = ws.recv_frame()
    assert op == OP_PONG and payload == b"between", (op, payload)
    r = ws.recv_json()
    assert r["type"] == "response" and r["correlation_id"] == "frag-1", r
    assert len(r["data"].pop("epoch")) == 16
    assert r["data"].pop("seq") == 0  # a new room: no event yet
    assert r["data"] == {"status": "subscribed", "channel": "frag"}
    ws.close()


def test_oversized_message_closes_1009(start_engine):
    e = start_engine("--threads", "1", "--max-message-bytes", "1024")

    async def go():
        ws, _ = await connect(e.url)
        await ws.send(json.dumps({"type": "request", "event": "ping", "id": "x" * 2000}))
        return await close_code_of(ws)

    assert run(go()) == 1009


def test_oversized_fragmented_message_closes_1009(start_engine):
    e = start_engine("--threads", "1", "--max-message-bytes", "1024")
    ws = RawWS(e.port)
    # Each fragment is under the limit; their sum (1801 bytes) is not.
    try:
        for i in range(3):
            ws.send_frame(OP_TEXT if i == 0 else OP_CONT, b"x" * 600, fin=False)
        ws.send_frame(OP_CONT, b"x", fin=True)
    except OSError:
        pass  # the server may close as soon as the total passes the limit
    assert ws.expect_close() == 1009
    ws.close()


def test_oversized_frame_header_alone_closes_1009(start_engine):
    # A 64-bit length field announcing 1 GiB: the server must refuse before buffering.
    e = start_engine("--threads", "1", "--max-message-bytes", "1024")
    ws = RawWS(e.port)
    head = struct.pack("!BBQ", 0x80 | OP_TEXT, 0x80 | 127, 1 << 30) + b"\x01\x02\x03\x04"
    ws.send_raw(head + b"x" * 100)
    assert ws.expect_close() == 1009
    ws.close()


def test_message_of_exactly_max_bytes_accepted(start_engine):
    e = start_engine("--threads", "1", "--max-message-bytes", "1024")
    base = json.dumps({"type": "request", "event": "ping", "id": ""})
    msg = json.dumps({"type": "request", "event": "ping", "id": "y" * (1024 - len(base))})
    assert len(msg) == 1024
    ws = RawWS(e.port)
    ws.send_frame(OP_TEXT, msg)
    r = ws.recv_json()
    assert r["type"] == "response" and r["event"] == "pong", r
    ws.close()
