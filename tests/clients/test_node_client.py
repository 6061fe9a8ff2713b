"""Node.js `ws` (the most used WebSocket library) against the engine: the full session works
and interoperates with a Python subscriber."""

import asyncio
import json
import os
import subprocess

from engine_harness import collect_events, connect, run, subscribe

HERE = os.path.dirname(os.path.abspath(__file__))


def run_node_client(node, url, room):
    p = subprocess.run([node, os.path.join(HERE, "node_client.js"), url, room],
                       capture_output=True, text=True, timeout=30, cwd=HERE)
    assert p.stdout.strip(), f"node client printed nothing (rc {p.returncode}): {p.stderr[-2000:]}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0 and "error" not in out, f"node client failed: {out} {p.stderr}"
    return out


def test_node_ws_client_full_session(engine, node):
    out = run_node_client(node, engine.url, "node-room")
    msgs = out["messages"]
    assert msgs[0]["event"] == "session.created"
    assert msgs[0]["data"]["server"] == "ringcast"
    sub = next(m for m in msgs if m.get("correlation_id") == "node-sub")
    assert len(sub["data"].pop("epoch")) == 16  # issue 11: the room's epoch
    assert sub["data"].pop("seq") == 0  # a new room: no event yet
    assert sub["data"] == {"status": "subscribed", "channel": "node-room"}
    resp = next(m for m in msgs if m["type"] == "response" and m.get("correlation_id") == 42)
    assert resp["data"]["status"] == "published"
    assert resp["data"]["subscribers"] == 1
    events = [m for m in msgs if m["type"] == "event" and m.get("room") == "node-room"]
    assert len(events) == 1
    assert events[0]["event"] == "node.hello"
    assert events[0]["data"] == out["sentPayload"]
    assert events[0]["seq"] == resp["data"]["seq"] == 1
    assert out["pong"] == "node-ping"
    assert out["closeCode"] == 1000


def test_node_publish_reaches_python_subscriber(engine, node):
    async def go():
        ws, _ = await connect(engine.url)
        await subscribe(ws, "mixed-room")
        out = await asyncio.get_running_loop().run_in_executor(
            None, run_node_client, node, engine.url, "mixed-room")
        evs = await collect_events(ws, 1)
        await ws.close()
        return out, evs

    out, evs = run(go(), timeout=40)
    assert evs[0]["data"] == out["sentPayload"]
    resp = next(m for m in out["messages"] if m.get("correlation_id") == 42)
    assert resp["data"]["subscribers"] == 2  # the Python subscriber and node itself
