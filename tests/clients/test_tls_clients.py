"""wss:// with the clients people use: Node's `ws` and headless Chromium, both trusting a
throwaway test CA's certificate (tests/engine/tls_certs.py), against an engine speaking TLS."""

import json
import os
import subprocess

import pytest

from engine_harness import BINARY, Engine
from test_chromium_client import HERE
from test_node_client import run_node_client
from tls_certs import CertAuthority, spki_sha256_b64


@pytest.fixture
def tls_engine(tmp_path):
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"engine binary missing: {BINARY}")
    ca = CertAuthority(tmp_path)
    cert, key = ca.issue("server")
    e = Engine(["--threads", "2", "--tls-cert", cert, "--tls-key", key])
    e.wss = f"wss://127.0.0.1:{e.port}/ws"
    e.ca, e.cert = ca, cert
    yield e
    e.check_clean_exit()


def test_node_ws_over_wss(tls_engine, node, monkeypatch):
    # Node reads extra trust anchors from this variable at startup: the client itself is the
    # cleartext test's, unchanged.
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", tls_engine.ca.pem)
    out = run_node_client(node, tls_engine.wss, "node-tls-room")
    msgs = out["messages"]
    assert msgs[0]["event"] == "session.created"
    resp = next(m for m in msgs if m["type"] == "response" and m.get("correlation_id") == 42)
    assert resp["data"]["status"] == "published" and resp["data"]["subscribers"] == 1
    events = [m for m in msgs if m["type"] == "event" and m.get("room") == "node-tls-room"]
    assert len(events) == 1 and events[0]["data"] == out["sentPayload"]
    assert out["pong"] == "node-ping"
    assert out["closeCode"] == 1000


def test_node_ws_refuses_untrusted_certificate(tls_engine, node, monkeypatch):
    monkeypatch.delenv("NODE_EXTRA_CA_CERTS", raising=False)
    p = subprocess.run([node, os.path.join(HERE, "node_client.js"), tls_engine.wss, "r"],
                       capture_output=True, text=True, timeout=30, cwd=HERE)
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 1 and "certificate" in out["error"], out


def test_chromium_over_wss(tls_engine, node, chromium):
    # The test CA's equivalent for a browser: trust exactly this certificate's public key.
    spki = spki_sha256_b64(tls_engine.cert)
    p = subprocess.run([node, os.path.join(HERE, "chromium_client.js"), tls_engine.wss,
                        "browser-tls-room"],
                       capture_output=True, text=True, timeout=90, cwd=HERE,
                       env=dict(os.environ, CHROMIUM=chromium,
                                CHROMIUM_ARGS=f"--ignore-certificate-errors-spki-list={spki}"))
    assert p.stdout.strip(), f"chromium driver printed nothing (rc {p.returncode}): {p.stderr}"
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert p.returncode == 0 and "error" not in out, f"chromium session over wss failed: {out}"
    msgs = out["messages"]
    assert msgs[0]["event"] == "session.created"
    resp = next(m for m in msgs if m.get("correlation_id") == "browser-pub")
    assert resp["data"]["status"] == "published" and resp["data"]["subscribers"] == 1
    events = [m for m in msgs if m["type"] == "event" and m.get("room") == "browser-tls-room"]
    assert len(events) == 1 and events[0]["data"] == out["sentPayload"]
    assert out["closeCode"] == 1000 and out["wasClean"] is True
