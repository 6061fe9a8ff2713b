"""TLS on the engine's port (wss://, https://): real clients, a throwaway CA (tls_certs.py).

What each test pins down: the WebSocket session and the HTTP API work unchanged over TLS; every
way a client can get TLS wrong (plaintext, an old protocol, no common ALPN, a truncated or
silent handshake) ends in a clean close and a log line while others are served; SIGHUP swaps the
certificate for new connections only; a non-reading TLS subscriber is bounded like a cleartext
one; messages larger than a TLS record survive in both directions.
"""

import asyncio
import http.client
import json
import os
import signal
import socket
import ssl
import struct
import time

import pytest

from engine_harness import (RawWS, collect_events, connect, parse_http_response, publish,
                            read_http_head, reply_for, run, subscribe, upgrade_request)
from tls_certs import CertAuthority

pytestmark = pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")


@pytest.fixture
def ca(tmp_path):
    return CertAuthority(tmp_path)


@pytest.fixture
def tls_engine(start_engine, ca):
    """(engine, ca): an engine with a CA-issued certificate; engine.wss is its wss:// URL."""
    cert, key = ca.issue("server")

    def start(*args):
        e = start_engine("--threads", "2", "--rate-limit", "0", "--tls-cert", cert,
                         "--tls-key", key, *args)
        e.wss = f"wss://127.0.0.1:{e.port}/ws"
        e.cert, e.key = cert, key
        return e

    return start


def tls_raw_ws(port, ctx, rcvbuf=None):
    """RawWS over a TLS socket: hand-made frames through the engine's TLS."""
    ws = RawWS(port, handshake=False, rcvbuf=rcvbuf)
    ws.sock = ctx.wrap_socket(ws.sock, server_hostname="127.0.0.1")
    ws.handshake()
    return ws


def peer_cert_serial(port, ctx):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            return t.getpeercert()["serialNumber"]


def health(port, ctx):
    c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
    c.request("GET", "/health")
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, json.loads(body)


def test_wss_subscribe_publish_broadcast(tls_engine, ca):
    e = tls_engine()
    ctx = ca.client_context()

    async def go():
        subs = [(await connect(e.wss, ssl=ctx))[0] for _ in range(3)]
        pub, welcome = await connect(e.wss, ssl=ctx)
        for s in subs:
            await subscribe(s, "tls-room")
        resp = await publish(pub, "tls-room", {"n": 1, "text": "h\u00e9llo"})
        assert resp["type"] == "response" and resp["data"]["subscribers"] == 3, resp
        for s in subs:
            ev = (await collect_events(s, 1))[0]
            assert ev["room"] == "tls-room" and ev["data"] == {"n": 1, "text": "h\u00e9llo"}
        # Bursts: many events in one iteration coalesce into shared records, in order.
        for i in range(200):
            await pub.send(json.dumps({"type": "request", "event": "publish", "id": f"b{i}",
                                       "data": {"channel": "tls-room", "payload": {"i": i}}}))
        for s in subs:
            evs = await collect_events(s, 200, timeout=10)
            assert [ev["data"]["i"] for ev in evs] == list(range(200))
        for i in range(200):  # unread replies would stall the library's close
            assert (await reply_for(pub, f"b{i}"))["type"] == "response"
        for ws in subs + [pub]:
            await ws.close()
            assert ws.close_code == 1000
        return welcome

    welcome = run(go())
    assert welcome["data"]["server"] == "ringcast"


def test_https_health_api_and_dashboard(tls_engine, ca):
    e = tls_engine("--api-key", "k" * 32)
    ctx = ca.client_context()
    ctx.set_alpn_protocols(["http/1.1"])
    c = http.client.HTTPSConnection("127.0.0.1", e.port, context=ctx, timeout=5)
    # Keep-alive: three requests on one TLS connection, answered in order.
    c.request("GET", "/health")
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read())["status"] == "healthy"
    assert c.sock.selected_alpn_protocol() == "http/1.1"
    c.request("POST", "/api/publish", body=json.dumps({"channel": "api-room", "payload": {"a": 1}}),
              headers={"X-API-Key": "k" * 32, "Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.read()
    assert json.loads(r.read())["seq"] == 1
    c.request("GET", "/")
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and b"<html" in body.lower()
    c.close()


def test_plaintext_to_tls_port_answered_and_logged(tls_engine, ca):
    e = tls_engine()
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_http_head(s, 5)
        status, _ = parse_http_response(raw)
        assert status == 400 and b"https://" in raw
        s.settimeout(5)
        rest = b""
        try:
            while chunk := s.recv(4096):
                rest += chunk
        except ConnectionResetError:
            pass  # closed: either ending is clean
    # A plaintext WebSocket upgrade too.
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
        s.sendall(upgrade_request())
        raw = read_http_head(s, 5)
        assert parse_http_response(raw)[0] == 400
    assert e.wait_log("plaintext HTTP sent to the TLS port")
    assert health(e.port, ca.client_context())[0] == 200


def client_hello_bytes():
    """A real ClientHello, from Python's TLS client over memory BIOs."""
    ctx = ssl.create_default_context()
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return out.read()


def test_truncated_and_silent_handshakes_time_out(tls_engine, ca):
    e = tls_engine("--handshake-timeout-s", "1")
    hello = client_hello_bytes()
    assert len(hello) > 100
    half = socket.create_connection(("127.0.0.1", e.port), timeout=5)
    half.sendall(hello[: len(hello) // 2])
    silent = socket.create_connection(("127.0.0.1", e.port), timeout=5)
    t0 = time.monotonic()
    for s in (half, silent):
        s.settimeout(6)
        try:
            assert s.recv(4096) == b""  # EOF: the engine closed it, nothing was sent
        except ConnectionResetError:
            pass
    assert time.monotonic() - t0 < 5.5
    assert e.wait_log("TLS handshake timed out: not completed in 1s")
    # Half a hello, then the client goes away: closed at once, logged as truncated.
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
        s.sendall(hello[:40])
        time.sleep(0.2)
    assert e.wait_log("TLS handshake truncated")
    half.close()
    silent.close()
    assert health(e.port, ca.client_context())[0] == 200


def test_old_protocol_refused(tls_engine, ca):
    e = tls_engine()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca.pem)
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        peer_cert_serial(e.port, ctx)
    # The engine saw a real TLS 1.1 hello and said why it refused it.
    assert e.wait_log("TLS handshake failed: unsupported protocol")
    # TLS 1.2 (the minimum) and 1.3 both work.
    for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ca.client_context(minimum_version=v, maximum_version=v)
        with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
            with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                assert t.version() == {ssl.TLSVersion.TLSv1_2: "TLSv1.2",
                                       ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[v]
                if v == ssl.TLSVersion.TLSv1_2:
                    name, _, bits = t.cipher()
                    assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA" in name), name


def test_tls12_cbc_only_client_refused(tls_engine, ca):
    e = tls_engine()
    ctx = ca.client_context(maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA:AES128-SHA")
    with pytest.raises(ssl.SSLError):
        peer_cert_serial(e.port, ctx)
    assert e.wait_log("TLS handshake failed: no shared cipher")


def test_alpn(tls_engine, ca):
    e = tls_engine()
    ctx = ca.client_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
            assert t.selected_alpn_protocol() == "http/1.1"
    ctx = ca.client_context()
    ctx.set_alpn_protocols(["h2"])
    with pytest.raises(ssl.SSLError, match="NO_APPLICATION_PROTOCOL|no application protocol"):
        peer_cert_serial(e.port, ctx)
    # No ALPN at all (curl --no-alpn, old clients) is fine.
    ctx = ca.client_context()
    assert peer_cert_serial(e.port, ctx)


def test_sighup_reloads_certificate_for_new_connections(tls_engine, ca):
    e = tls_engine()
    ctx = ca.client_context()
    first = peer_cert_serial(e.port, ctx)

    async def go():
        old_sub, _ = await connect(e.wss, ssl=ctx)
        old_pub, _ = await connect(e.wss, ssl=ctx)
        await subscribe(old_sub, "reload-room")
        # A renewed certificate under the same file names.
        cert2, key2 = ca.issue("renewed", cn="localhost")
        os.replace(cert2, e.cert)
        os.replace(key2, e.key)
        e.signal(signal.SIGHUP)
        assert await asyncio.to_thread(e.wait_log, "reload: TLS: new connections get")
        second = await asyncio.to_thread(peer_cert_serial, e.port, ctx)
        assert second != first
        # Connections made before the reload carry on with the old session.
        resp = await publish(old_pub, "reload-room", {"after": "reload"})
        assert resp["data"]["subscribers"] == 1
        assert (await collect_events(old_sub, 1))[0]["data"] == {"after": "reload"}
        # A broken certificate is refused and the one in use stays.
        with open(e.cert, "w") as f:
            f.write("not a certificate\n")
        e.signal(signal.SIGHUP)
        assert await asyncio.to_thread(e.wait_log, "keeping the certificate in use")
        assert await asyncio.to_thread(peer_cert_serial, e.port, ctx) == second
        new_ws, _ = await connect(e.wss, ssl=ctx)
        await subscribe(new_ws, "reload-room")
        resp = await publish(old_pub, "reload-room", {"n": 2})
        assert resp["data"]["subscribers"] == 2
        for ws in (old_sub, old_pub, new_ws):
            await ws.close()

    run(go())


def test_non_reading_wss_subscriber_closed_as_slow_consumer(tls_engine, ca):
    e = tls_engine("--max-queue-bytes", "524288", "--max-message-bytes", "65536")
    ctx = ca.client_context()
    slow = tls_raw_ws(e.port, ctx, rcvbuf=4096)
    slow.send_json({"type": "request", "event": "subscribe", "id": "s",
                    "data": {"channel": "flood"}})
    assert slow.recv_json()["type"] == "response"
    rss0 = e_rss_kb(e)
    N = 1000

    async def go():
        pub, _ = await connect(e.wss, ssl=ctx)
        fast, _ = await connect(e.wss, ssl=ctx)
        await subscribe(fast, "flood")
        got = []

        async def drain():  # the subscriber that keeps up reads everything
            while len(got) < N:
                got.append(json.loads(await fast.recv()))

        reader = asyncio.create_task(drain())
        blob = "x" * 16000
        for i in range(N):  # 16 MB for a client that reads nothing
            await pub.send(json.dumps({"type": "request", "event": "publish", "id": f"f{i}",
                                       "data": {"channel": "flood", "payload": {"i": i,
                                                                                "b": blob}}}))
            await reply_for(pub, f"f{i}", timeout=10)
            while len(got) < i - 8:  # paced by the subscriber that reads: it is never slow
                await asyncio.sleep(0.002)
        await asyncio.wait_for(reader, 20)
        assert [m["data"]["i"] for m in got] == list(range(N))
        await pub.close()
        await fast.close()

    run(go(), timeout=60)
    assert e.wait_log("slow consumer: queue over its cap", timeout=5)
    growth = e_rss_kb(e) - rss0
    if not sanitized():  # ASan's quarantine keeps freed memory resident
        assert growth < 12 * 1024, f"engine RSS grew {growth} KiB for one slow TLS subscriber"
    # The engine gives up on it within its close wait (it never reads our close).
    slow.sock.settimeout(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if health(e.port, ctx)[1]["connections"] <= 1:
            break
        time.sleep(0.2)
    assert health(e.port, ctx)[1]["connections"] <= 1
    slow.close()


def sanitized():
    from engine_harness import BINARY
    with open(BINARY, "rb") as f:
        return b"__asan_init" in f.read()


def e_rss_kb(engine):
    with open(f"/proc/{engine.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_big_messages_across_records(tls_engine, ca):
    mib = 1 << 20
    e = tls_engine("--max-message-bytes", str(2 * mib), "--max-queue-bytes", str(8 * mib))
    ctx = ca.client_context()

    async def go():
        sub, _ = await connect(e.wss, ssl=ctx)
        pub, _ = await connect(e.wss, ssl=ctx)
        await subscribe(sub, "big")
        blob = "".join(chr(0x61 + (i % 26)) for i in range(mib))
        resp = await publish(pub, "big", {"blob": blob})
        assert resp["type"] == "response", resp
        ev = (await collect_events(sub, 1, timeout=15))[0]
        assert ev["data"]["blob"] == blob
        # Fragmented by the client too: continuation frames across records.
        msg = json.dumps({"type": "request", "event": "publish", "id": "frag",
                          "data": {"channel": "big", "payload": {"blob": blob[: mib // 2]}}})
        await pub.send([msg[i:i + 70000] for i in range(0, len(msg), 70000)])
        assert (await reply_for(pub, "frag", timeout=15))["type"] == "response"
        ev = (await collect_events(sub, 1, timeout=15))[0]
        assert ev["data"]["blob"] == blob[: mib // 2]
        await sub.close()
        await pub.close()

    run(go(), timeout=60)


def test_tls_options_go_together(tmp_path):
    import subprocess
    from engine_harness import BINARY
    p = subprocess.run([BINARY, "--tls-cert", str(tmp_path / "c.pem")], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 2 and "tls-cert and tls-key go together" in p.stderr
    (tmp_path / "c.pem").write_text("garbage\n")
    (tmp_path / "k.pem").write_text("garbage\n")
    p = subprocess.run([BINARY, "--tls-cert", str(tmp_path / "c.pem"), "--tls-key",
                        str(tmp_path / "k.pem")], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "tls-cert" in p.stderr and "c.pem" in p.stderr


def test_shutdown_drains_wss_clients_with_1001(tls_engine, ca):
    e = tls_engine()
    ctx = ca.client_context()

    async def go():
        ws, _ = await connect(e.wss, ssl=ctx)
        await subscribe(ws, "drain-room")
        e.signal(signal.SIGTERM)
        with pytest.raises(Exception):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        return ws.close_code

    assert run(go()) == 1001
    assert e.wait(10) == 0


def test_close_notify_before_fin(tls_engine, ca):
    """A graceful close sends close_notify: the client sees a clean TLS EOF, not a truncation
    (Python raises SSLEOFError for a FIN without it)."""
    e = tls_engine()
    ctx = ca.client_context()
    ctx.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)  # Python's default ignores it
    with socket.create_connection(("127.0.0.1", e.port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as t:
            t.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := t.recv(65536):  # b"" only after close_notify
                data += chunk
            assert data.startswith(b"HTTP/1.1 200")
    ws = RawWS(e.port, handshake=False)
    ws.sock = ctx.wrap_socket(ws.sock, server_hostname="127.0.0.1", suppress_ragged_eofs=False)
    ws.handshake()
    ws.send_frame(0x8, struct.pack("!H", 1000))
    assert ws.expect_close() == 1000
    ws.sock.settimeout(5)
    assert ws.sock.recv(65536) == b""
    ws.close()


def test_tls_from_config_file(start_engine, ca, tmp_path):
    cert, key = ca.issue("ini")
    ini = tmp_path / "ringcast.ini"
    ini.write_text(f"[ringcast]\ntls-cert = {cert}\ntls_key = {key}\n")
    e = start_engine("--config", str(ini))
    assert health(e.port, ca.client_context())[0] == 200
    assert e.wait_log("TLS: serving " + cert)


def test_abrupt_disconnects_at_every_stage(tls_engine, ca):
    """Clients that vanish (RST) mid-hello, right after the handshake, mid-upgrade and while
    a broadcast is being sent to them: the engine frees each (the ASan run checks), keeps serving
    and ends with no connection left."""
    e = tls_engine()
    ctx = ca.client_context()
    hello = client_hello_bytes()

    def rst(s):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    async def go():
        pub, _ = await connect(e.wss, ssl=ctx)
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", e.port), timeout=5)
            s.sendall(hello[: 10 + i * 7])
            rst(s)
            raw = socket.create_connection(("127.0.0.1", e.port), timeout=5)
            t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
            if i % 2:
                t.sendall(upgrade_request()[:30])
            rst(t)
            ws = tls_raw_ws(e.port, ctx, rcvbuf=4096)
            ws.send_json({"type": "request", "event": "subscribe", "id": "s",
                          "data": {"channel": "vanish"}})
            ws.recv_json()
            await publish(pub, "vanish", {"blob": "z" * 50000, "i": i})
            rst(ws.sock)
        resp = await publish(pub, "vanish", {"end": True})
        await pub.close()
        return resp

    run(go(), timeout=60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and health(e.port, ctx)[1]["connections"] > 1:
        time.sleep(0.1)
    assert health(e.port, ctx)[1]["connections"] == 1  # the /health request itself


def test_subscriber_that_keeps_up_under_a_small_queue_cap(tls_engine, ca):
    """--max-queue-bytes near a send batch: a wss subscriber that reads (through a small receive
    buffer, so sends stay in flight) gets every event. The cap counts the ciphertext not yet
    sent, not the session's buffers (a batch's worth each), which refused frames while a large
    batch was in flight and closed a reader that kept up with 4008."""
    e = tls_engine("--max-queue-bytes", "65536", "--max-message-bytes", "16k")
    ctx = ca.client_context()
    sub = tls_raw_ws(e.port, ctx, rcvbuf=4096)
    sub.send_json({"type": "request", "event": "subscribe", "id": "s",
                   "data": {"channel": "steady"}})
    assert sub.recv_json()["data"]["status"] == "subscribed"
    n = 60
    got = []

    def reader():
        while len(got) < n:
            got.append(sub.recv_json(timeout=20)["data"]["i"])

    import threading
    t = threading.Thread(target=reader)
    t.start()

    async def go():
        pub, _ = await connect(e.wss, ssl=ctx, max_queue=None)
        blob = "q" * 12000
        for i in range(n):  # 2-3 events queued at a time: ~30 KB, under the cap
            await pub.send(json.dumps({"type": "request", "event": "publish", "id": i,
                                       "data": {"channel": "steady",
                                                "payload": {"i": i, "b": blob}}}))
            if i % 3 == 2:
                await reply_for(pub, i, timeout=15)
                await asyncio.sleep(0.01)
        await pub.close()

    run(go(), timeout=60)
    t.join(30)
    sub.close()
    assert got == list(range(n)), got[-5:]
    assert "slow consumer" not in e.stderr()
