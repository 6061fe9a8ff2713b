"""docs/examples/publisher.py and the publish calls in docs/integration.md, run against the real
engine while ringcast-cli subscribers check that the events arrive: an example that does not run
rots, and so does a catalogue the helpers drift away from."""

import json
import os
import re
import subprocess
import sys

import pytest

from cli_helpers import API_KEY, Sub
from engine_harness import REPO

EXAMPLES = os.path.join(REPO, "docs", "examples")
sys.path.insert(0, EXAMPLES)
import publisher  # noqa: E402  (module import: its test_* helpers must not be collected here)

INTEGRATION = open(os.path.join(REPO, "docs", "integration.md")).read()


def test_demo_events_arrive_in_order(eng):
    sub = Sub(eng.url, "workflow:42", "test:run-7")
    sub.wait_stderr("subscribed:", count=2)
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, "publisher.py"),
                        "--url", f"http://{eng.host}:{eng.port}", "--api-key", API_KEY, "demo"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    answers = [json.loads(l) for l in p.stdout.splitlines()]
    assert len(answers) == 6 and all(a["subscribers"] == 1 for a in answers), answers
    events = [json.loads(l) for l in sub.lines(6)]
    assert [(e["room"], e["event"]) for e in events] == [
        ("workflow:42", "workflow.started"), ("workflow:42", "workflow.stage_completed"),
        ("test:run-7", "test.started"), ("test:run-7", "test.failed"),
        ("test:run-7", "test.completed"), ("workflow:42", "workflow.failed")]
    assert events[3]["data"] == {"run_id": "run-7", "test": "test_login",
                                 "message": "expected 200, got 500",
                                 "file": "tests/test_auth.py", "line": 42}
    assert sub.stop() == 0


def test_every_helper_publishes_over_one_keepalive_connection(eng):
    url = f"http://{eng.host}:{eng.port}"
    pub = publisher.connect(url, api_key=API_KEY)
    try:
        sub = Sub(eng.url, "global", "coverage", "diagram:d-5")
        sub.wait_stderr("subscribed:", count=3)
        publisher.coverage_updated("web", "run-7", 91.5)
        publisher.diagram_updated("d-5", 12, [{"op": "move", "id": "n1"}], "alice")
        publisher.system_announcement("deploy at 14:00 UTC")
        for i in range(20):
            publisher.metrics_snapshot(1, {"i": i})
        assert pub.connects == 1  # keep-alive held across 23 requests
        got = [json.loads(l) for l in sub.lines(3)]
        assert [(e["room"], e["event"]) for e in got] == [
            ("coverage", "coverage.updated"), ("diagram:d-5", "diagram.updated"),
            ("global", "system.announcement")]
        assert got[0]["data"] == {"project": "web", "run_id": "run-7", "lines_pct": 91.5}
        assert sub.stop() == 0
        with pytest.raises(publisher.PublishError) as e:
            pub.publish("", "x")
        assert e.value.status == 400 and e.value.code in ("INVALID_MESSAGE", "INVALID_CHANNEL")
        bad = publisher.Publisher(url, api_key="wrong")
        with pytest.raises(publisher.PublishError) as e:
            bad.publish("global", "x")
        assert e.value.status == 401
        bad.close()
    finally:
        pub.close()


def test_helpers_match_the_integration_catalogue():
    rows = set(re.findall(r"^\| `([^`]+)` \| `([^`]+)`(?: / `([^`]+)`)? \|", INTEGRATION, re.M))
    pairs = {(c, e) for c, e, _ in rows} | {(c, e2) for c, _, e2 in rows if e2}
    assert len(publisher.CATALOGUE) >= 20
    missing = {name: ce for name, ce in publisher.CATALOGUE.items() if ce not in pairs}
    assert not missing, f"helpers whose channel/event docs/integration.md does not list: {missing}"
    for name in ("workflow_started", "workflow_stage_completed", "workflow_completed",
                 "workflow_failed", "test_started", "test_completed", "test_failed"):
        assert callable(getattr(publisher, name))


def test_integration_md_curl_calls_publish(eng):
    calls = re.findall(r"```sh\n(curl .*?)\n```", INTEGRATION, re.S)
    assert len(calls) >= 6, "integration.md lost its curl examples"
    env = dict(os.environ, RINGCAST=f"http://{eng.host}:{eng.port}", RINGCAST_API_KEY=API_KEY)
    for call in calls:
        channel = json.loads(re.search(r"-d '(\{.*\})'", call).group(1))["channel"]
        sub = Sub(eng.url, channel)
        sub.wait_stderr("subscribed:")
        p = subprocess.run(["bash", "-c", call], capture_output=True, text=True, env=env,
                           timeout=15)
        assert p.returncode == 0, call + p.stderr
        assert json.loads(p.stdout)["subscribers"] == 1, p.stdout
        assert json.loads(sub.lines(1)[0])["room"] == channel
        assert sub.stop() == 0


def test_integration_md_websocket_requests_publish(eng):
    reqs = re.findall(r"```json\n(\{\"type\":\"request\",\"event\":\"publish\".*?)\n```",
                      INTEGRATION)
    assert len(reqs) >= 3
    import asyncio

    import websockets

    async def go():
        async with websockets.connect(eng.url) as ws:
            await ws.recv()  # session.created
            for r in reqs:
                await ws.send(r)
            for r in reqs:
                if '"id"' in r:
                    ans = json.loads(await asyncio.wait_for(ws.recv(), 3))
                    assert ans["type"] == "response", ans
                    assert ans["data"]["status"] == "published"

    asyncio.run(asyncio.wait_for(go(), 10))
