"""The subscriber examples in docs/examples/ (Python, browser ES module, C), each run as a real
client against the real engine through a proxy that the test cuts mid-stream (cutproxy.py).

The engine lives on and keeps its rooms' history; only the client's TCP connection dies (RST, no
close frame), once at once and once with new connections refused for a while so the backoff
runs. The publisher keeps publishing over the HTTP API the whole time. Every example prints each
event as one JSON line on stdout; the test asserts that every event arrived exactly once and in
seq order per room, that the connection was really cut (the proxy accepted several), and that
SIGINT ends the client with exit 0 after a close frame with code 1000.

A second test shrinks the history so that the outage outlasts it: the resume answers
"recovered":false and the example must call its resync hook (it says RESYNC on stderr) and go
on with the live events.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from cli_helpers import API_KEY, Sub, assert_no_sanitizer
from cutproxy import CutProxy, client_frames
from engine_harness import BUILD, REPO, Engine

EXAMPLES = os.path.join(REPO, "docs", "examples")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, EXAMPLES)
import issue_token  # noqa: E402
import publisher  # noqa: E402

ROOMS = ("workflow:42", "test:run-7")
BACKOFF = ("--backoff-base", "0.05", "--backoff-cap", "0.5")  # seconds: quick, still jittered


def python_argv(url, rooms, opts=()):
    return [sys.executable, os.path.join(EXAMPLES, "subscriber.py"), "--url", url, *BACKOFF,
            *opts, *rooms]


def c_argv(url, rooms, opts=()):
    exe = os.path.join(BUILD, "docs", "examples", "ringcast-subscriber-example")
    if not os.access(exe, os.X_OK):
        pytest.fail(f"C example missing: {exe} (ninja -C build)")
    return [exe, *BACKOFF, *opts, url, *rooms]


def browser_argv(url, rooms, opts=()):
    node = shutil.which("node")
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if node is None or not os.access(chromium, os.X_OK):
        pytest.skip("node or chromium is not installed")
    if not os.path.isdir(os.path.join(HERE, "node_modules", "ws")):
        pytest.fail("tests/clients/node_modules missing: run scripts/deps.sh (npm ci)")
    return [node, os.path.join(HERE, "browser_example_driver.js"), url, *BACKOFF, *opts, *rooms]


CLIENTS = {"python": python_argv, "c": c_argv, "browser": browser_argv}


def start_engine(*extra):
    return Engine(["--threads", "2", "--api-key", API_KEY, "--rate-limit", "0", *extra])


def events_by_room(lines):
    out = {}
    for l in lines:
        ev = json.loads(l)
        assert ev["type"] == "event", l
        out.setdefault(ev["room"], []).append(ev)
    return out


def wait_lines(sub, n, timeout):
    """All of stdout once it holds at least n lines (the client's own stream, not a prefix)."""
    try:
        sub.lines(n, timeout=timeout)
    except AssertionError:  # say how far it got, not every line it printed
        lines = sub.out.decode(errors="replace").splitlines()
        raise AssertionError(f"{len(lines)} of {n} lines, the last: {lines[-3:]}\n"
                             f"stderr: {sub.err.decode(errors='replace')[-3000:]}") from None
    return sub.out.decode().splitlines()


@contextlib.contextmanager
def engine_and_publisher(*extra):
    """An engine (start_engine(*extra)) and an HTTP publisher to it; the publisher is closed when
    the block succeeds, and the engine must exit cleanly either way."""
    eng = start_engine(*extra)
    try:
        pub = publisher.connect(f"http://{eng.host}:{eng.port}", api_key=API_KEY)
        yield eng, pub
        pub.close()
    finally:
        eng.check_clean_exit()


@contextlib.contextmanager
def example_client(client, url, rooms, opts=()):
    """The example `client` (a CLIENTS key) subscribed to rooms at url, in the background, as a
    Sub; killed on the way out if the block left it running."""
    sub = Sub(None, argv=CLIENTS[client](url, rooms, opts))
    try:
        yield sub
    finally:
        if sub.proc.poll() is None:
            sub.proc.kill()
            sub.proc.wait()


@contextlib.contextmanager
def cut_example(client, eng, rooms, opts=()):
    """example_client() connected through a CutProxy in front of eng: yields (proxy, sub)."""
    with CutProxy(eng.port) as proxy:
        with example_client(client, f"ws://127.0.0.1:{proxy.port}/ws", rooms, opts) as sub:
            yield proxy, sub


def last_close_code(proxy):
    """The close code in the last close frame the proxy's last client connection sent."""
    frames = client_frames(proxy.client_bytes(proxy.accepted - 1))
    closes = [p for op, p in frames if op == 0x8]
    assert closes, f"the client sent no close frame: {frames[-3:]}"
    return int.from_bytes(closes[-1][:2], "big")


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_example_resumes_across_cuts_exactly_once(client):
    n = 240
    with engine_and_publisher("--history-size", "1000") as (eng, pub), \
            cut_example(client, eng, ROOMS) as (proxy, sub):
        sub.wait_stderr("subscribed", count=len(ROOMS), timeout=60)
        for i in range(n):
            if i in (n // 3, 2 * n // 3):
                # Cut once events are flowing on this connection: the client must
                # resume from the middle of the stream, not from the start.
                wait_lines(sub, i // 2, timeout=30)
                proxy.cut(refuse_s=0 if i == n // 3 else 1.0)
            pub.publish(ROOMS[i % 2], "step.done", {"i": i})
            sub._pump(0)
            time.sleep(0.004)
        lines = wait_lines(sub, n, timeout=60)
        time.sleep(0.5)  # anything extra (a duplicate) would arrive now
        sub._pump(0.1)
        lines = sub.out.decode().splitlines()
        rooms = events_by_room(lines)
        for k, room in enumerate(ROOMS):
            got = rooms.get(room, [])
            assert [e["seq"] for e in got] == list(range(1, n // 2 + 1)), (room, sub.err)
            assert [e["data"]["i"] for e in got] == list(range(k, n, 2))
        assert len(lines) == n
        assert proxy.accepted >= 3, "the proxy saw no reconnect"
        err = sub.err.decode()
        assert "RESYNC" not in err, err
        assert sub.stop(signal.SIGINT, timeout=15) == 0, sub.err.decode()
        assert last_close_code(proxy) == 1000


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_example_calls_resync_when_history_is_gone(client):
    room = "workflow:7"
    with engine_and_publisher("--history-size", "8") as (eng, pub), \
            cut_example(client, eng, [room]) as (proxy, sub):
        sub.wait_stderr("subscribed", timeout=60)
        for i in range(3):
            pub.publish(room, "step.done", {"i": i})
        wait_lines(sub, 3, timeout=30)
        proxy.cut(refuse_s=None)  # down until we have published past the history
        for i in range(3, 23):
            pub.publish(room, "step.done", {"i": i})
        proxy.allow()
        sub.wait_stderr("RESYNC " + room, timeout=30)
        sub.wait_stderr("subscribed", count=2, timeout=30)
        pub.publish(room, "workflow.failed", {"workflow_id": "7", "error": "boom"})
        lines = wait_lines(sub, 4, timeout=30)
        evs = [json.loads(l) for l in lines]
        assert [e["data"]["i"] for e in evs[:3]] == [0, 1, 2]
        assert evs[3]["event"] == "workflow.failed" and evs[3]["seq"] == 24, lines
        assert len(evs) == 4, lines
        assert sub.stop(signal.SIGINT, timeout=15) == 0, sub.err.decode()


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_example_resumes_from_the_subscribe_response_seq(client):
    """Cut before any event reached the client: it resumes from the subscribe response's seq,
    so it gets exactly what was published while it was away, not the room's older kept events."""
    room = "workflow:9"
    with engine_and_publisher("--history-size", "1000") as (eng, pub):
        for i in range(5):  # kept, but from before the client subscribed
            pub.publish(room, "step.done", {"i": i})
        with cut_example(client, eng, [room]) as (proxy, sub):
            sub.wait_stderr("subscribed", timeout=60)
            proxy.cut(refuse_s=None)
            for i in range(5, 8):
                pub.publish(room, "step.done", {"i": i})
            proxy.allow()
            sub.wait_stderr("subscribed", count=2, timeout=30)
            lines = wait_lines(sub, 3, timeout=30)
            time.sleep(0.5)  # anything extra (an older event) would arrive now
            sub._pump(0.1)
            evs = [json.loads(l) for l in sub.out.decode().splitlines()]
            assert [(e["seq"], e["data"]["i"]) for e in evs] == [(6, 5), (7, 6), (8, 7)], lines
            assert "RESYNC" not in sub.err.decode(), sub.err.decode()
            assert sub.stop(signal.SIGINT, timeout=15) == 0, sub.err.decode()


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_example_with_token_reports_forbidden_room_and_keeps_the_rest(client, tmp_path):
    """--auth required: the example sends its token (a header, or the browser's bearer
    subprotocol); a room outside its channels claim is refused with FORBIDDEN, reported and
    not retried, and the allowed room still gets its events."""
    secret = b"examples-test-secret-0123456789abcdef"
    (tmp_path / "jwt.secret").write_bytes(secret)
    token = issue_token.issue(secret, "viewer", 300, channels=["workflow:42", "global"])
    rooms, opts = ["secret:1", "workflow:42"], ["--token", token]
    with engine_and_publisher("--auth", "required",
                              "--jwt-secret-file", str(tmp_path / "jwt.secret")) as (eng, pub), \
            cut_example(client, eng, rooms, opts) as (proxy, sub):
        sub.wait_stderr("subscribed", timeout=60)
        err = sub.wait_stderr("error FORBIDDEN", timeout=10)
        assert "subscribed secret:1" not in err, err
        pub.publish("workflow:42", "workflow.started", {"workflow_id": "42"})
        proxy.cut()
        sub.wait_stderr("subscribed", count=2, timeout=30)  # workflow:42 resumed
        pub.publish("workflow:42", "workflow.completed", {"workflow_id": "42"})
        lines = wait_lines(sub, 2, timeout=30)
        assert [json.loads(l)["event"] for l in lines] == ["workflow.started",
                                                           "workflow.completed"]
        assert sub.stop(signal.SIGINT, timeout=15) == 0, sub.err.decode()
        err = sub.err.decode()
        assert err.count("error FORBIDDEN") == 1, "the refused room was retried: " + err


@pytest.mark.parametrize("client", ["c", "python"])
def test_example_gives_up_on_a_refused_token(client, tmp_path):
    """A 401 at the upgrade will not fix itself: the example says so and exits 1 instead of
    retrying forever. (A browser is not shown the status of a refused upgrade, only a close
    1006, so browser-client.js keeps retrying with backoff; its page should fetch a new token.)"""
    (tmp_path / "jwt.secret").write_bytes(b"examples-test-secret-0123456789abcdef")
    eng = start_engine("--auth", "required", "--jwt-secret-file", str(tmp_path / "jwt.secret"))
    try:
        bad = issue_token.issue(b"another-secret-entirely-0123456789", "x", 300, ["workflow:42"])
        p = subprocess.run(CLIENTS[client](eng.url, ["workflow:42"], ["--token", bad]),
                           capture_output=True, text=True, timeout=30)
        assert_no_sanitizer(p.stderr)
        assert p.returncode == 1, p.stderr
        assert "401" in p.stderr and "reconnecting" not in p.stderr, p.stderr
    finally:
        eng.check_clean_exit()


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_example_answers_the_engines_heartbeat(client):
    """An idle example answers the engine's pings (a browser does so by itself) and is not
    closed with 4000: with a 1 s heartbeat and 1 s timeout, 4 s of silence would do it."""
    with engine_and_publisher("--heartbeat-s", "1", "--heartbeat-timeout-s", "1") as (eng, pub), \
            example_client(client, eng.url, ["workflow:42"]) as sub:
        sub.wait_stderr("subscribed", timeout=60)
        time.sleep(4)
        pub.publish("workflow:42", "workflow.started", {"workflow_id": "42"})
        assert json.loads(wait_lines(sub, 1, timeout=30)[0])["event"] == "workflow.started"
        err = sub.err.decode()
        assert "reconnecting" not in err and "4000" not in err, err
        assert sub.stop(signal.SIGINT, timeout=15) == 0, sub.err.decode()


# ---- docs/integration.md: the polling example, replayed ----

def poll_example():
    """The poll() function that docs/integration.md shows, executed as written."""
    doc = open(os.path.join(REPO, "docs", "integration.md")).read()
    section = doc.split("## Clients that cannot keep a socket", 1)[1]
    block = section.split("```python\n", 1)[1].split("```", 1)[0]
    ns = {}
    exec(compile(block, "integration.md:poll", "exec"), ns)
    return ns["poll"]


def test_integration_poll_example_replays():
    poll = poll_example()
    with engine_and_publisher() as (eng, pub):
        base = f"http://{eng.host}:{eng.port}"
        for i in range(3):
            pub.publish("workflow:42", "workflow.stage_completed", {"index": i})
        state = {}
        events, recovered = poll(base, "workflow:42", API_KEY, state, wait=1)
        assert recovered and [e["seq"] for e in events] == [1, 2, 3]
        assert [e["data"]["index"] for e in events] == [0, 1, 2]
        assert state["since"] == 3 and len(state["epoch"]) == 16

        # A long poll is answered as soon as the next event is published.
        t = threading.Timer(0.5, lambda: publisher.connect(base, api_key=API_KEY).publish(
            "workflow:42", "workflow.completed", {"result": "ok"}))
        t.start()
        t0 = time.monotonic()
        events, recovered = poll(base, "workflow:42", API_KEY, state, wait=20)
        t.join()
        assert recovered and [(e["seq"], e["event"]) for e in events] == [(4, "workflow.completed")]
        assert time.monotonic() - t0 < 15, "the long poll waited out its time"

        # The curl form, with this channel's epoch in place of the doc's: the events after 17.
        doc = open(os.path.join(REPO, "docs", "integration.md")).read()
        curl = re.search(r"```sh\n# the same long poll with curl.*?\n(curl .*?)\n```", doc,
                         re.S).group(1).replace("9f3ac10b5e7d2264", state["epoch"])
        for i in range(5, 19):
            pub.publish("workflow:42", "workflow.stage_completed", {"index": i})
        env = dict(os.environ, RINGCAST=base, RINGCAST_API_KEY=API_KEY)
        p = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, env=env,
                           timeout=40)
        answer = json.loads(p.stdout)
        assert answer["recovered"] and [e["seq"] for e in answer["events"]] == [18], p.stdout

        # Another epoch (the engine restarted, the channel was forgotten): resync.
        events, recovered = poll(base, "workflow:42", API_KEY, {"since": 2, "epoch": "1234"}, wait=1)
        assert recovered is False and events == []


def test_poll_after_recovered_false_catches_up():
    poll = poll_example()
    with engine_and_publisher("--history-size", "4") as (eng, pub):
        base = f"http://{eng.host}:{eng.port}"
        for i in range(8):
            pub.publish("workflow:42", "step.done", {"i": i})
        state = {}
        events, recovered = poll(base, "workflow:42", API_KEY, state, wait=1)
        assert recovered is False  # seq 1-4 are gone: resync from the service ...
        pub.publish("workflow:42", "step.done", {"i": 8})
        events, recovered = poll(base, "workflow:42", API_KEY, state, wait=1)
        # ... and the next poll goes on from where the channel was
        assert recovered and [e["seq"] for e in events] == [9]
