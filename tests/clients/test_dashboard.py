"""The live dashboard (GET /) in headless Chromium: the page loads from the engine, goes live
over the engine's WebSocket ($sys stats events), and its numbers and charts move under a real
load (subscribers, publishes, a slow consumer that gets closed). The screenshot is kept under
the test's tmp dir and its path printed."""

import asyncio
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "engine"))

from engine_harness import Engine, RawWS, connect, reply_for, run, subscribe  # noqa: E402


async def load(e):
    """20 subscribers in load:a, 10 in load:b, 1500 small publishes to them, and a slow consumer
    (tiny receive window, never reads) flooded with 4 KiB events until the engine closes it."""
    slow = RawWS(e.port, rcvbuf=4096)
    slow.send_json({"type": "subscribe", "channel": "slow-room"})
    assert slow.recv_json()["data"]["status"] == "subscribed"
    subs = []
    for i in range(30):
        ws, _ = await connect(e.url, max_queue=None)
        await subscribe(ws, "load:a" if i < 20 else "load:b")
        subs.append(ws)
    pub, _ = await connect(e.url, max_queue=None)
    blob = "z" * 4000
    for i in range(3000):
        room = "slow-room" if i % 2 else ("load:a" if i % 4 == 0 else "load:b")
        data = {"i": i, "blob": blob} if room == "slow-room" else {"i": i}
        await pub.send(json.dumps({"type": "request", "event": "publish", "id": i,
                                   "data": {"channel": room, "event": "tick", "payload": data}}))
        # At most 50 in flight (each held reply is charged ~660 bytes against the 64 KiB
        # --max-queue-bytes that closes the slow consumer), spread over ~3 s so rates show it.
        if i % 50 == 49:
            await reply_for(pub, i, timeout=20)
            await asyncio.sleep(0.05)
    return subs + [pub], slow


def test_dashboard_live_in_chromium(tmp_path, node, chromium):
    e = Engine(["--threads", "2", "--rate-limit", "0", "--max-queue-bytes", "65536",
                "--max-message-bytes", "32k"])
    shot = str(tmp_path / "dashboard.png")

    async def go():
        proc = await asyncio.create_subprocess_exec(
            node, os.path.join(HERE, "dashboard_client.js"), f"http://{e.host}:{e.port}/", shot,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE,
            env=dict(os.environ, CHROMIUM=chromium))
        first = await asyncio.wait_for(proc.stdout.readline(), 100)
        if first.strip() != b"READY":
            out, err = await proc.communicate()
            raise AssertionError(f"dashboard driver: {first!r} {out[-2000:]!r} {err[-2000:]!r}")
        clients, slow = await load(e)
        # The screenshot is taken 2.5 s after DONE, with the load's clients still connected.
        proc.stdin.write(b"DONE\n")
        await proc.stdin.drain()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        for ws in clients:
            await ws.close()
        slow.close()
        return proc.returncode, out.decode(), err.decode()

    try:
        rc, out, err = run(go(), timeout=180)
    finally:
        e.stop()
    e.check_clean_exit()
    res = json.loads(out.strip().splitlines()[-1])
    assert rc == 0 and "error" not in res, (res, err[-2000:])
    print(f"dashboard screenshot: {res['screenshot']}")
    samples = res["samples"]
    if os.environ.get("DASH_DEBUG"):
        for s in samples:
            print({k: s[k] for k in ("t", "events", "connected", "connections", "deliveriesRate",
                                     "latSamples", "latP50us", "latP99us", "topRate")})
    before = samples[0]
    assert before["connections"] <= 3, before  # the page's own WebSocket (and its HTTP load)
    assert max(s["connections"] for s in samples) >= 30
    assert max(s["rooms"] for s in samples) >= 3
    assert max(s["deliveriesRate"] for s in samples) > 200
    assert max(s["publishRate"] for s in samples) > 100
    assert res["final"]["slowCloses"] >= 1
    assert any(any(r["name"] == "load:a" and r["subscribers"] == 20 for r in s["top"])
               for s in samples), "load:a never showed among the top rooms"
    # Publish latency (engine time, publish to last send) moves with the load: samples and a
    # p99 show up in the numbers and the chart; top rooms by rate name the loaded rooms.
    assert max(s["latSamples"] for s in samples) > 100
    assert before["latSamples"] < max(s["latSamples"] for s in samples)
    assert any(0 < s["latP50us"] <= s["latP99us"] < 1e6 for s in samples)
    busy = [r for s in samples for r in s["topRate"]]
    assert any(r["name"] == "load:a" and r["rate"] > 50 and r["subscribers"] == 20
               for r in busy), "load:a never showed among the top rooms by rate"
    assert all(len(s["topRate"]) <= 10 and len(s["top"]) <= 10 for s in samples)
    dom = res["dom"]
    assert dom["latP99"] != "–" and dom["latChartPoints"] >= 5, dom
    # 2.5 s after the load the busiest rooms are still listed (for 10 s), rates falling.
    assert "load:a" in [row[0] for row in dom["topRateRows"]], dom["topRateRows"]
    assert dom["status"] == "live" and dom["slow"] != "–" and int(dom["slow"]) >= 1
    assert dom["chartPoints"] >= 5
    assert not dom["scripts"] and not dom["links"], "the page must be self-contained"
    with open(shot, "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000


def test_dashboard_with_auth_required_uses_its_token(tmp_path, node, chromium):
    """--auth required: /?token=JWT (channels claim allowing "$sys") goes live; the token travels
    as the WebSocket subprotocol and leaves the address bar."""
    import base64
    import hashlib
    import hmac
    import time

    secret = b"dashboard-test-secret-0123456789abcdef"
    (tmp_path / "jwt.secret").write_bytes(secret + b"\n")

    def b64(d):
        return base64.urlsafe_b64encode(d).rstrip(b"=").decode()

    si = (b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "."
          + b64(json.dumps({"sub": "ops", "exp": int(time.time()) + 300,
                            "channels": ["$sys"]}).encode()))
    token = si + "." + b64(hmac.new(secret, si.encode(), hashlib.sha256).digest())
    e = Engine(["--threads", "2", "--auth", "required",
                "--jwt-secret-file", str(tmp_path / "jwt.secret")])
    shot = str(tmp_path / "dashboard-auth.png")

    async def go():
        proc = await asyncio.create_subprocess_exec(
            node, os.path.join(HERE, "dashboard_client.js"),
            f"http://{e.host}:{e.port}/?token={token}", shot,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=HERE,
            env=dict(os.environ, CHROMIUM=chromium))
        first = await asyncio.wait_for(proc.stdout.readline(), 100)
        proc.stdin.write(b"DONE\n")
        await proc.stdin.drain()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        return first, proc.returncode, out.decode(), err.decode()

    try:
        first, rc, out, err = run(go(), timeout=180)
    finally:
        e.stop()
    e.check_clean_exit()
    assert first.strip() == b"READY", (first, out[-2000:], err[-2000:])
    res = json.loads(out.strip().splitlines()[-1])
    assert rc == 0 and res["final"]["events"] >= 2 and res["dom"]["status"] == "live", res
    assert token not in res["dom"]["href"]
