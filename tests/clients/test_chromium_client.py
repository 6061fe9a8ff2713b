"""Headless Chromium's own WebSocket against the engine: the handshake a browser sends (Origin,
User-Agent, permessage-deflate offer, cookies...) is accepted and a full session works."""

import json
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))


def test_chromium_websocket_full_session(engine, node, chromium):
    p = subprocess.run([node, os.path.join(HERE, "chromium_client.js"), engine.url, "browser-room"],
                       capture_output=True, text=True, timeout=90, cwd=HERE,
                       env=dict(os.environ, CHROMIUM=chromium))
    assert p.stdout.strip(), f"chromium driver printed nothing (rc {p.returncode}): {p.stderr}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0 and "error" not in out, f"chromium session failed: {out}"
    msgs = out["messages"]
    assert msgs[0]["event"] == "session.created"
    sub = next(m for m in msgs if m["type"] == "response" and m["event"] == "subscribe")
    assert len(sub["data"].pop("epoch")) == 16  # issue 11: the room's epoch
    assert sub["data"].pop("seq") == 0  # a new room: no event yet
    assert sub["data"] == {"status": "subscribed", "channel": "browser-room"}
    assert "correlation_id" not in sub
    resp = next(m for m in msgs if m.get("correlation_id") == "browser-pub")
    assert resp["data"]["status"] == "published" and resp["data"]["subscribers"] == 1
    events = [m for m in msgs if m["type"] == "event" and m.get("room") == "browser-room"]
    assert len(events) == 1
    assert events[0]["event"] == "browser.hello"
    assert events[0]["data"] == out["sentPayload"]
    assert "Chrome" in out["browser"] or "Chromium" in out["browser"], out["browser"]
    assert out["closeCode"] == 1000 and out["wasClean"] is True
