"""ringcast-load over wss:// against the real engine's own TLS (--tls-cert/--tls-key): the
per-recipient checks hold exactly over TLS, with --ca, with --tls-insecure and with
--publish-via http; 250 handshakes run at once; every TLS failure (a CA that did not sign the
server's certificate, a certificate for another name, a server that closes mid-handshake, a
cleartext port; the server-side faults come from tls_front.py, a TLS terminator) fails the run with exit 2 and says why, never a PASS."""
import json
import os
import re
import sys

import pytest

from lg_helpers import run_loadgen
from tls_helpers import TlsFront, make_pki

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine"))
from engine_harness import Engine  # noqa: E402

KEY = "lg-tls-key-0123456789"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def eng():
    e = Engine(["--threads", "2", "--api-key", KEY, "--rate-limit", "0"])
    yield e
    e.check_clean_exit()


@pytest.fixture
def front(pki):
    """The engine serving wss:// itself."""
    e = Engine(["--threads", "2", "--api-key", KEY, "--rate-limit", "0",
                "--tls-cert", pki["cert"], "--tls-key", pki["key"]])
    yield e
    e.check_clean_exit()


def lg(tmp_path, url, *extra, conns=20, rooms=10, timeout=90):
    r = run_loadgen(["--url", url, "--connections", conns, "--rooms", rooms, "--publishers", 2,
                     "--rate", 400, "--duration", "1500ms", "--warmup", "300ms",
                     "--connect-timeout", "60s", "--json", tmp_path / "r.json", "--quiet",
                     *extra], timeout=timeout)
    return r, json.load(open(tmp_path / "r.json"))


def exact(j, conns):
    d, p, c = j["deliveries"], j["publishes"], j["connect"]
    assert c["failed"] == 0 and c["established"] == c["attempted"] == conns + 2, c
    assert p["acked"] == p["sent"] > 0 and p["refused"] == 0
    assert d["delivered"] == d["expected"] > 0
    for k in ("lost", "duplicate", "out_of_order", "corrupt", "misrouted", "excess"):
        assert d[k] == 0, (k, d)


def failed_clearly(r, j, words):
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "PASS" not in r.stdout and j["ok"] is False
    assert re.search(r"connections failed: (publisher \d+: )?TLS handshake with", r.stderr), r.stderr
    assert words in r.stderr, r.stderr
    assert words in j["error"]


def test_wss_with_ca_250_concurrent_handshakes_exact(tmp_path, front, pki):
    # localhost: SNI and the DNS name check; 250 subscribers' handshakes at once (no --ramp).
    r, j = lg(tmp_path, "wss://localhost:%d/ws" % front.port, "--ca", pki["ca"], conns=250,
              rooms=25)
    assert r.returncode == 0, r.stderr
    exact(j, 250)
    assert j["scenario"]["url"].startswith("wss://")


def test_wss_ip_literal_checked_against_ip_san(tmp_path, front, pki):
    r, j = lg(tmp_path, "wss://127.0.0.1:%d/ws" % front.port, "--ca", pki["ca"])
    assert r.returncode == 0, r.stderr
    exact(j, 20)


def test_wss_tls_insecure_skips_the_check(tmp_path, front):
    r, j = lg(tmp_path, "wss://127.0.0.1:%d/ws" % front.port, "--tls-insecure")
    assert r.returncode == 0, r.stderr
    exact(j, 20)


def test_wss_publish_via_http(tmp_path, front, pki):
    r, j = lg(tmp_path, "wss://localhost:%d/ws" % front.port, "--ca", pki["ca"],
              "--publish-via", "http", "--api-key", KEY)
    assert r.returncode == 0, r.stderr
    exact(j, 20)


def test_wss_wrong_ca_fails_clearly(tmp_path, front, pki):
    r, j = lg(tmp_path, "wss://localhost:%d/ws" % front.port, "--ca", pki["other_ca"])
    failed_clearly(r, j, "certificate verify failed: unable to get local issuer certificate")
    assert "22 of 22 connections failed" in r.stderr


def test_wss_no_ca_uses_system_store_and_fails(tmp_path, front):
    r, j = lg(tmp_path, "wss://localhost:%d/ws" % front.port)
    failed_clearly(r, j, "certificate verify failed")


def test_wss_certificate_for_another_name_fails(tmp_path, pki):
    f = Engine(["--tls-cert", pki["elsewhere_cert"], "--tls-key", pki["elsewhere_key"]])
    try:
        r, j = lg(tmp_path, "wss://localhost:%d/ws" % f.port, "--ca", pki["ca"])
        failed_clearly(r, j, "certificate verify failed: hostname mismatch")
        r, j = lg(tmp_path, "wss://127.0.0.1:%d/ws" % f.port, "--ca", pki["ca"])
        failed_clearly(r, j, "certificate verify failed: IP address mismatch")
    finally:
        f.check_clean_exit()


def test_wss_server_closes_mid_handshake(tmp_path):
    f = TlsFront(None, fault="mid-handshake")
    try:
        r, j = lg(tmp_path, "wss://127.0.0.1:%d/ws" % f.port, "--tls-insecure")
        failed_clearly(r, j, "failed: the server closed the connection")
    finally:
        f.stop()


def test_wss_to_a_cleartext_port(tmp_path, eng):
    r, j = lg(tmp_path, "wss://127.0.0.1:%d/ws" % eng.port, "--tls-insecure")
    failed_clearly(r, j, "did not answer in TLS")


def test_tls_options_usage(tmp_path):
    r = run_loadgen(["--url", "ws://127.0.0.1:1/ws", "--ca", "x.pem"])
    assert r.returncode == 2 and "for wss:// URLs" in r.stderr
    r = run_loadgen(["--url", "wss://127.0.0.1:1/ws", "--ca", "x.pem", "--tls-insecure"])
    assert r.returncode == 2 and "contradict" in r.stderr
    r = run_loadgen(["--url", "wss://127.0.0.1:1/ws", "--ca", str(tmp_path / "missing.pem")])
    assert r.returncode == 2 and "cannot load CA file" in r.stderr
    r = run_loadgen(["--url", "wws://127.0.0.1:1/ws"])
    assert r.returncode == 2 and "ws:// or wss://" in r.stderr
    r = run_loadgen(["--help"])
    assert "--tls-insecure" in r.stdout and "--ca FILE" in r.stdout
