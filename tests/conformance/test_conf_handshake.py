"""RFC 6455 §4 opening handshake: what is upgraded, what is refused with which status, and what
happens to bytes that arrive with the request or after the handshake timeout."""

import base64
import time

import pytest

from wsraw import (OP_PING, OP_PONG, OP_TEXT, Conn, accept_for, assert_pong, build_frame, connect,
                   handshake_request, http_exchange, parse_http_head, ping_request)

ENGINE_ARGS = ["--rate-limit", "0"]


def exchange(engine, **kw):
    raw, _ = handshake_request(engine.port, **kw)
    return http_exchange(engine.port, raw)


@pytest.mark.parametrize("path", ["/ws", "/", "/ws/session-42", "/ws?x=1"])
def test_upgrade_paths(engine, path):
    c = Conn.open(engine.port, path=path)
    try:
        assert isinstance(c.hello["data"]["connection_id"], str)
        assert_pong(c.request({"type": "request", "event": "ping", "id": "f"}))
    finally:
        c.close()


def test_session_created_contents(conn):
    h = conn.hello
    assert h["data"]["server"] == "ringcast", h
    assert h["data"]["heartbeat_s"] == 25, h
    assert h["data"]["max_message_bytes"] == 65536, h
    assert h["timestamp"].endswith("Z"), h


@pytest.mark.parametrize("upgrade,connection", [
    ("WebSocket", "upgrade"), ("websocket", "keep-alive, Upgrade"), ("WEBSOCKET", "Upgrade, close")])
def test_header_tokens_case_insensitive(engine, upgrade, connection):
    raw, _ = handshake_request(engine.port, upgrade=upgrade, connection=connection)
    s = connect(engine.port)
    try:
        s.sendall(raw)
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
    finally:
        s.close()


def test_header_names_case_insensitive(engine):
    key = base64.b64encode(b"0123456789abcdef").decode()
    raw = ("GET /ws HTTP/1.1\r\nhost: x\r\nUPGRADE: websocket\r\ncOnNeCtIoN: Upgrade\r\n"
           f"sec-websocket-key: {key}\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n").encode()
    s = connect(engine.port)
    try:
        s.sendall(raw)
        status, headers = parse_http_head(s.recv(4096).partition(b"\r\n\r\n")[0])
        assert status == 101
        assert headers["sec-websocket-accept"] == accept_for(key)
    finally:
        s.close()


def test_http10_refused(engine):
    """§4.1: the version MUST be at least HTTP/1.1."""
    status, _, _ = exchange(engine, http="HTTP/1.0")
    assert status == 400


@pytest.mark.parametrize("what", ["upgrade", "connection", "key", "host"])
def test_missing_header(engine, what):
    kw = {"upgrade": {"upgrade": None}, "connection": {"connection": None},
          "key": {"key": False}, "host": {"host": False}}[what]
    status, headers, _ = exchange(engine, **kw)
    assert status == 400
    assert "close" in headers.get("connection", "").lower(), headers


@pytest.mark.parametrize("key", ["abc", "", base64.b64encode(b"x" * 15).decode(),
                                 base64.b64encode(b"x" * 17).decode(), "!" * 24])
def test_bad_key(engine, key):
    """§4.2.1: the key must be the base64 of 16 bytes."""
    status, _, _ = exchange(engine, key=key)
    assert status == 400


def test_upgrade_not_websocket(engine):
    status, _, _ = exchange(engine, upgrade="h2c")
    assert status == 400


def test_connection_without_upgrade_token(engine):
    status, _, _ = exchange(engine, connection="keep-alive")
    assert status == 400


@pytest.mark.parametrize("version", ["8", "7", "12", "14"])
def test_wrong_version_426(engine, version):
    """§4.4: answer with the versions the server speaks."""
    status, headers, _ = exchange(engine, version=version)
    assert status == 426
    assert headers.get("sec-websocket-version") == "13", headers


def test_missing_version(engine):
    status, _, _ = exchange(engine, version=None)
    assert status in (400, 426)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
def test_method_not_get(engine, method):
    status, _, _ = exchange(engine, method=method)
    assert status == 405


@pytest.mark.parametrize("path", ["/nope", "/wsx", "/ws2", "/index.html"])
def test_unknown_path(engine, path):
    status, _, _ = exchange(engine, path=path)
    assert status == 404


def test_header_block_over_8k(engine):
    raw, _ = handshake_request(engine.port, extra=["X-Pad: " + "p" * 9000])
    status, _, _ = http_exchange(engine.port, raw)
    assert status == 431


def test_header_block_over_8k_unterminated(engine):
    """The limit applies before the blank line arrives: 431, not a wait for more."""
    raw, _ = handshake_request(engine.port, extra=["X-Pad: " + "p" * 9000])
    status, _, _ = http_exchange(engine.port, raw[:-4])
    assert status == 431


def test_header_block_just_under_8k(engine):
    raw, _ = handshake_request(engine.port)
    pad = 8192 - len(raw) - len("X-Pad: \r\n") - 64
    raw, _ = handshake_request(engine.port, extra=["X-Pad: " + "p" * pad])
    s = connect(engine.port)
    try:
        s.sendall(raw)
        assert s.recv(4096).startswith(b"HTTP/1.1 101")
    finally:
        s.close()


@pytest.mark.parametrize("raw", [b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET /ws HTTP/1.1\r\nNoColon\r\n\r\n",
                                 b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40 + b"\r\n\r\n"],
                         ids=["garbage", "no-target", "no-colon", "tls-hello"])
def test_malformed_request(engine, raw):
    status, _, _ = http_exchange(engine.port, raw)
    assert status == 400


def test_pipelined_frames_after_handshake(engine):
    """Frames sent in the same packet as the upgrade request are processed, in order."""
    frames = (build_frame(OP_TEXT, ping_request(100, rid="a")) + build_frame(OP_PING, b"pp")
              + build_frame(OP_TEXT, ping_request(100, rid="b")))
    c = Conn.open(engine.port, pipelined=frames)
    try:
        assert_pong(c.recv_json(), rid="a")
        # the pong may come before or after the first response; the order of texts is fixed
        op, data = c.recv_message()
        if op == OP_PONG:
            assert data == b"pp"
            assert_pong(c.recv_json(), rid="b")
        else:
            raise AssertionError(f"expected the pong for the pipelined ping, got {op:#x} {data!r}")
    finally:
        c.close()


def test_request_sent_byte_by_byte(engine):
    raw, _ = handshake_request(engine.port)
    s = connect(engine.port)
    try:
        for i in range(len(raw)):
            s.sendall(raw[i: i + 1])
        assert s.recv(4096).startswith(b"HTTP/1.1 101")
    finally:
        s.close()


# ---- handshake timeout (its own engine: 1 s) --------------------------------------------------

def test_handshake_timeout(make_engine):
    e = make_engine(["--handshake-timeout-s", "1"])
    silent = connect(e.port)
    partial = connect(e.port)
    partial.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    # A normal client completes its handshake meanwhile and is not affected by the timeout.
    ok = Conn.open(e.port)
    try:
        partial.settimeout(5)
        data = b""
        while True:
            chunk = partial.recv(4096)
            if not chunk:
                break
            data += chunk
        took = time.monotonic() - t0
        assert data.startswith(b"HTTP/1.1 408"), data
        assert 0.5 < took < 4.0, took
        silent.settimeout(5)
        try:
            rest = silent.recv(4096)
        except ConnectionResetError:
            rest = b""
        assert rest == b"", f"nothing was received, so nothing should be answered: {rest!r}"
        time.sleep(1.2)
        assert_pong(ok.request({"type": "request", "event": "ping", "id": "f"}))
    finally:
        ok.close()
        silent.close()
        partial.close()

