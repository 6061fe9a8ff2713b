"""The HTTP upgrade: each refusal with its status, connection limits, the handshake timeout."""

import base64
import hashlib
import socket
import time

import pytest

from engine_harness import (RawWS, connect, http_exchange, parse_http_response, read_http_head,
                            run, upgrade_request)

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_valid_upgrade_returns_101_with_accept_key(engine):
    key = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's example key
    status, headers, _ = http_exchange(engine.port, upgrade_request("/ws", key=key))
    assert status == 101
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()
    expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    assert expected == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert headers["sec-websocket-accept"] == expected


def test_unknown_path_is_404(engine):
    status, _, raw = http_exchange(engine.port, upgrade_request("/nope"))
    assert status == 404, raw[:200]


def test_post_is_405(engine):
    status, _, raw = http_exchange(engine.port, upgrade_request("/ws", method="POST"))
    assert status == 405, raw[:200]


def test_wrong_version_is_426_with_supported_version(engine):
    status, headers, raw = http_exchange(engine.port, upgrade_request("/ws", version="8"))
    assert status == 426, raw[:200]
    assert headers.get("sec-websocket-version") == "13", raw[:400]


@pytest.mark.parametrize("key", ["short", "not base64 at all!!", "AAAAAAAAAAAAAAAAAAAAAAAA"[:20],
                                 base64.b64encode(b"x" * 15).decode()])
def test_bad_key_is_400(engine, key):
    status, _, raw = http_exchange(engine.port, upgrade_request("/ws", key=key))
    assert status == 400, raw[:200]


def test_missing_key_is_400(engine):
    req = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    status, _, raw = http_exchange(engine.port, req)
    assert status == 400, raw[:200]


def test_missing_upgrade_header_is_400(engine):
    req = (b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    status, _, raw = http_exchange(engine.port, req)
    assert status in (400, 426), raw[:200]


def test_malformed_request_line_is_400(engine):
    status, _, raw = http_exchange(engine.port, b"HELLO\r\n\r\n")
    assert status == 400, raw[:200]


def test_huge_header_block_is_431(engine):
    req = upgrade_request("/ws", extra=["X-Pad: " + "a" * 9000])
    status, _, raw = http_exchange(engine.port, req)
    assert status == 431, raw[:200]


def test_huge_header_block_without_end_is_431(engine):
    # The block never ends: the server must give up once 8 KiB are buffered.
    req = upgrade_request("/ws")[:-2] + b"X-Pad: " + b"a" * 9000
    status, _, raw = http_exchange(engine.port, req)
    assert status == 431, raw[:200]


def test_max_connections_refuses_with_503(start_engine):
    e = start_engine("--threads", "2", "--max-connections", "3")

    async def go():
        conns = [(await connect(e.url))[0] for _ in range(3)]
        status, _, raw = http_exchange(e.port, upgrade_request("/ws"))
        # A freed slot is reusable (the count is decremented when a connection ends).
        await conns[0].close()
        again = None
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            again, _, _ = http_exchange(e.port, upgrade_request("/ws"))
            if again == 101:
                break
            time.sleep(0.05)
        for c in conns[1:]:
            await c.close()
        return status, raw, again

    status, raw, again = run(go())
    assert status == 503, raw[:200]
    assert again == 101


def test_handshake_timeout_closes_silent_client(start_engine):
    e = start_engine("--threads", "1", "--handshake-timeout-s", "1")
    with socket.create_connection(("127.0.0.1", e.port)) as s:
        t0 = time.monotonic()
        s.settimeout(5)
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        except socket.timeout:
            pytest.fail("silent client still connected after 5 s")
        elapsed = time.monotonic() - t0
    assert data == b"", f"a silent client should get no response, got {data[:100]!r}"
    assert 0.5 <= elapsed <= 2.5, f"closed after {elapsed:.2f} s, expected ~1 s"


def test_handshake_timeout_partial_request_gets_408(start_engine):
    e = start_engine("--threads", "1", "--handshake-timeout-s", "1")
    with socket.create_connection(("127.0.0.1", e.port)) as s:
        t0 = time.monotonic()
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        raw = read_http_head(s, 5)
        elapsed = time.monotonic() - t0
    status, _ = parse_http_response(raw) if raw else (None, {})
    assert status == 408, raw[:200]
    assert 0.5 <= elapsed <= 2.5, f"answered after {elapsed:.2f} s"


def test_completed_handshake_is_not_timed_out(start_engine):
    e = start_engine("--threads", "1", "--handshake-timeout-s", "1")
    ws = RawWS(e.port)
    time.sleep(1.8)
    ws.send_json({"type": "request", "event": "ping", "id": "late"})
    r = ws.recv_json()
    assert r["correlation_id"] == "late"
    ws.close()
