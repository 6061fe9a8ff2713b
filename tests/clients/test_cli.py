"""ringcast-cli against the real engine: sub prints events as JSON lines, pub prints the response
and its exit status says whether the server refused, and every failure says what happened."""

import base64
import hashlib
import hmac
import json
import signal
import subprocess
import time
import urllib.request

import pytest

from cli_helpers import API_KEY, Sub, cli
from engine_harness import Engine, free_port


def http_publish(engine, body):
    req = urllib.request.Request(f"http://{engine.host}:{engine.port}/api/publish",
                                 data=json.dumps(body).encode(),
                                 headers={"X-API-Key": API_KEY,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_help_names_commands_and_wss():
    p = cli("--help")
    assert p.returncode == 0
    assert "ringcast-cli sub URL ROOM" in p.stdout and "ringcast-cli pub URL ROOM EVENT" in p.stdout
    assert "wss://" in p.stdout and "--ca FILE" in p.stdout and "--insecure" in p.stdout
    assert "--token" in p.stdout
    p = cli()
    assert p.returncode == 2 and "usage:" in p.stderr


def test_sub_prints_events_as_json_lines_and_exits_0_on_sigint(eng):
    sub = Sub(eng.url, "workflow:42", "global")
    sub.wait_stderr("subscribed:", count=2)
    p = cli("pub", eng.url, "workflow:42", "step.done", '{"step":3}')
    assert p.returncode == 0, p.stderr
    resp = json.loads(p.stdout)
    assert resp["type"] == "response" and resp["data"]["status"] == "published"
    assert resp["data"]["subscribers"] == 1
    assert http_publish(eng, {"channel": "global", "event": "hi", "data": [1, "two"]})["seq"] == 1
    lines = sub.lines(2)
    first, second = map(json.loads, lines)
    assert (first["event"], first["room"], first["data"], first["seq"]) == \
        ("step.done", "workflow:42", {"step": 3}, 1)
    assert (second["event"], second["room"], second["data"]) == ("hi", "global", [1, "two"])
    assert sub.stop(signal.SIGINT) == 0
    assert sub.out.decode().count("\n") == 2  # only events on stdout


def test_sub_resolves_host_names_and_sends_since(eng):
    url = f"ws://localhost:{eng.port}/ws"
    sub = Sub(url, "test:run-7", "--since", "0")
    sub.wait_stderr("subscribed:")
    assert cli("pub", url, "test:run-7", "test.started", '{"run_id":"run-7"}').returncode == 0
    ev = json.loads(sub.lines(1)[0])
    assert ev["room"] == "test:run-7" and ev["data"] == {"run_id": "run-7"}
    assert sub.stop(signal.SIGTERM) == 0


def test_sub_reports_server_close_code_and_reason(eng):
    sub = Sub(eng.url, "global")
    sub.wait_stderr("subscribed:")
    eng.signal(signal.SIGTERM)  # the engine drains and closes with 1001
    assert sub.wait(10) == 1
    assert "the server closed the connection: 1001" in sub.err.decode()
    assert eng.wait(10) == 0  # the drain finished on its own; the fixture's stop is a no-op


def test_pub_error_envelope_exits_1_with_its_code(eng):
    p = cli("pub", eng.url, "x" * 300, "e", "1")
    assert p.returncode == 1
    assert json.loads(p.stdout)["data"]["code"] == "INVALID_CHANNEL"
    assert "publish refused: INVALID_CHANNEL" in p.stderr


def test_pub_refuses_invalid_json_payload_before_connecting():
    p = cli("pub", "ws://127.0.0.1:1/ws", "a", "e", "{bad")
    assert p.returncode == 2 and "not valid JSON" in p.stderr


@pytest.mark.parametrize("url, words", [
    ("wss://[::1/ws", "unterminated [IPv6] host"),
    ("http://127.0.0.1:8765/ws", "must start with ws:// or wss://"),
    ("ws://127.0.0.1:99999/ws", "port must be a number"),
    ("ws:///ws", "no host"),
    ("ws://no-such-host.invalid:8765/ws", "cannot resolve no-such-host.invalid"),
])
def test_bad_url_says_why(url, words):
    p = cli("pub", url, "a", "e")
    assert p.returncode == 3 and words in p.stderr, p.stderr


def test_connection_refused():
    port = free_port()
    p = cli("sub", f"ws://127.0.0.1:{port}/ws", "a")
    assert p.returncode == 3
    assert f"connect to 127.0.0.1:{port}: Connection refused" in p.stderr


def test_refused_upgrade_shows_status_and_body(eng):
    p = cli("sub", f"ws://127.0.0.1:{eng.port}/nope", "a")
    assert p.returncode == 3
    assert "upgrade refused: HTTP 404 Not Found: no WebSocket endpoint" in p.stderr, p.stderr


def test_unknown_command_and_missing_rooms_are_usage_errors():
    assert cli("watch", "ws://127.0.0.1:1/ws").returncode == 2
    assert cli("sub", "ws://127.0.0.1:1/ws").returncode == 2
    assert cli("sub", "ws://127.0.0.1:1/ws", "a", "b", "--since", "3",
               "--epoch", "00").returncode == 2
    assert cli("sub", "ws://127.0.0.1:1/ws", "a", "--since", "-1").returncode == 2


SECRET = b"0123456789abcdef0123456789abcdef-cli-secret"


def token(channels, publish):
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    now = int(time.time())
    si = (b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." +
          b64(json.dumps({"sub": "cli", "iat": now, "exp": now + 300, "channels": channels,
                          "publish": publish}).encode()))
    return si + "." + b64(hmac.new(SECRET, si.encode(), hashlib.sha256).digest())


def test_token_is_sent_as_bearer(tmp_path):
    secret = tmp_path / "jwt.secret"
    secret.write_bytes(SECRET)
    e = Engine(["--threads", "2", "--auth", "required", "--jwt-secret-file", str(secret)])
    try:
        p = cli("pub", e.url, "a:1", "e", "1")
        assert p.returncode == 3 and "upgrade refused: HTTP 401" in p.stderr, p.stderr
        tok = token(["a:*"], ["a:*"])
        sub = Sub(e.url, "a:1", "--token", tok)
        sub.wait_stderr("subscribed:")
        p = cli("pub", e.url, "a:1", "e", '"hello"', "--token", tok)
        assert p.returncode == 0, p.stderr
        assert json.loads(sub.lines(1)[0])["data"] == "hello"
        p = cli("pub", e.url, "b:1", "e", "1", "--token", tok)
        assert p.returncode == 1 and "publish refused: FORBIDDEN" in p.stderr
        assert sub.stop() == 0
    finally:
        e.check_clean_exit()


def engine_has_history():
    from engine_harness import BINARY
    out = subprocess.run([BINARY, "--help"], capture_output=True, text=True, timeout=10)
    return "--history-size" in out.stdout + out.stderr


def test_since_and_epoch_resume_from_history():
    if not engine_has_history():
        pytest.skip("this engine has no room history (--history-size, issue 11)")
    e = Engine(["--threads", "2", "--history-size", "100"])
    try:
        live = Sub(e.url, "wf:1")  # keeps the channel (and its history) alive
        err = live.wait_stderr("subscribed:")
        epoch = json.loads(err.split("subscribed: ", 1)[1].splitlines()[0])["epoch"]
        for i in range(1, 5):
            assert cli("pub", e.url, "wf:1", "e", i).returncode == 0
        assert [json.loads(l)["seq"] for l in live.lines(4)] == [1, 2, 3, 4]
        resumed = Sub(e.url, "wf:1", "--since", 2, "--epoch", epoch)
        assert '"recovered":true' in resumed.wait_stderr("subscribed:")
        assert [json.loads(l)["data"] for l in resumed.lines(2)] == [3, 4]
        stale = Sub(e.url, "wf:1", "--since", 2, "--epoch", "0123456789abcdef")
        assert '"recovered":false' in stale.wait_stderr("subscribed:")
        for s in (live, resumed, stale):
            assert s.stop() == 0
    finally:
        e.check_clean_exit()
