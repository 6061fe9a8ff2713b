"""The examples in docs/ are part of the contract: replay them against the real engine.

docs/protocol.md labels each JSON block **client:** or **server:**; every client block is sent
in order on one connection and each server block must match what comes back, byte for byte,
after normalizing the values that differ per run (timestamp, connection_id, seq).
docs/examples/ringcast.ini must start the engine, and the settings it names must take effect.
"""

import asyncio
import json
import os
import re

import websockets

from engine_harness import free_port, run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _norm(s):
    s = re.sub(r'"timestamp":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"', '"timestamp":"T"', s)
    s = re.sub(r'"connection_id":"[^"]*"', '"connection_id":"C"', s)
    s = re.sub(r'"epoch":"[0-9a-f]{16}"', '"epoch":"E"', s)
    return re.sub(r'"seq":\d+', '"seq":N', s)


def test_protocol_md_examples_replay_exactly(engine):
    doc = open(os.path.join(REPO, "docs", "protocol.md")).read()
    blocks = re.findall(r"\*\*(client|server):\*\*\n```json\n(.*?)\n```", doc, re.S)
    assert sum(1 for who, _ in blocks if who == "server") >= 10, "protocol.md lost its examples"

    # Consecutive server blocks after a client message are one group: a publisher's own copy
    # of its event may come before or after its publish response (protocol.md, section 3), so
    # within a group the order is not compared, every message still is.
    groups = []
    for who, text in blocks:
        if who == "client" or not groups or groups[-1][0] == "client":
            groups.append((who, [text]))
        else:
            groups[-1][1].append(text)

    async def replay():
        mismatches = []
        async with websockets.connect(engine.url) as ws:
            for who, texts in groups:
                if who == "client":
                    for text in texts:
                        await ws.send(text)
                    continue
                got = [await asyncio.wait_for(ws.recv(), 3) for _ in texts]
                for g in got:
                    json.loads(g)  # every server message is valid JSON
                if sorted(map(_norm, got)) != sorted(map(_norm, texts)):
                    mismatches.append("doc:  " + "\n      ".join(texts) + "\ngot:  " +
                                      "\n      ".join(got))
        return mismatches

    mismatches = run(replay())
    assert not mismatches, "\n\n".join(mismatches)


def test_example_ini_starts_engine(start_engine, tmp_path):
    ini = open(os.path.join(REPO, "docs", "examples", "ringcast.ini")).read()
    ini = re.sub(r"(?m)^port = \d+$", f"port = {free_port()}", ini)
    path = tmp_path / "ringcast.ini"
    path.write_text(ini)
    # The harness picks its own port and passes --port, which overrides the file: that also
    # proves flags win over the file. max-message-bytes = 64k from the file must be in force.
    e = start_engine("--config", str(path))

    async def welcome():
        async with websockets.connect(e.url) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 3))

    msg = run(welcome())
    assert msg["event"] == "session.created"
    assert msg["data"]["max_message_bytes"] == 65536
    assert msg["data"]["heartbeat_s"] == 25
