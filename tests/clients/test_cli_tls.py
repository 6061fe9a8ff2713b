"""ringcast-cli over wss:// against the real engine behind tls_front.py (tests/loadgen): sub and
pub with --ca (host name and IP literal checked, SNI sent) and with --insecure; a CA that did not
sign the certificate, a certificate for another name, a server that closes mid-handshake and a
cleartext port each exit 3 with the reason on stderr."""

import json
import os
import sys

import pytest

from cli_helpers import CLI, Sub, cli

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "loadgen"))
from tls_helpers import TlsFront, make_pki  # noqa: E402


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def front(eng, pki):
    f = TlsFront(pki, eng.port)
    yield f
    f.stop()


def test_sub_and_pub_over_wss_with_ca(front, pki):
    url = f"wss://localhost:{front.port}/ws"
    sub = Sub(url, "workflow:42", "--ca", pki["ca"])
    try:
        sub.wait_stderr("subscribed:")
        p = cli("pub", f"wss://127.0.0.1:{front.port}/ws", "workflow:42", "step.done",
                '{"step":3}', "--ca", pki["ca"])
        assert p.returncode == 0, p.stderr
        resp = json.loads(p.stdout)
        assert resp["type"] == "response" and resp["data"]["subscribers"] == 1
        ev = json.loads(sub.lines(1)[0])
        assert ev["event"] == "step.done" and ev["room"] == "workflow:42"
        assert ev["data"] == {"step": 3}
    finally:
        rc = sub.stop()
    # Ctrl-C: a clean close handshake through TLS, not a transport error.
    assert rc == 0, sub.err
    assert b"1006" not in sub.err and b"TLS" not in sub.err


def test_pub_over_wss_insecure(front):
    p = cli("pub", f"wss://127.0.0.1:{front.port}/ws", "a", "e", "1", "--insecure")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["data"]["status"] == "published"


@pytest.mark.parametrize("ca, host, words", [
    ("other_ca", "localhost",
     "certificate verify failed: unable to get local issuer certificate (--ca FILE"),
    (None, "localhost", "certificate verify failed"),
])
def test_untrusted_certificate_exits_3(front, pki, ca, host, words):
    extra = ["--ca", pki[ca]] if ca else []
    p = cli("sub", f"wss://{host}:{front.port}/ws", "a", *extra)
    assert p.returncode == 3, p.stderr
    assert f"TLS handshake with {host}:{front.port} failed: {words}" in p.stderr, p.stderr
    assert p.stdout == ""


def test_certificate_for_another_name_exits_3(eng, pki):
    f = TlsFront(pki, eng.port, cert="elsewhere_cert", key="elsewhere_key")
    try:
        p = cli("pub", f"wss://localhost:{f.port}/ws", "a", "e", "--ca", pki["ca"])
        assert p.returncode == 3 and "hostname mismatch" in p.stderr, p.stderr
        p = cli("pub", f"wss://127.0.0.1:{f.port}/ws", "a", "e", "--ca", pki["ca"])
        assert p.returncode == 3 and "IP address mismatch" in p.stderr, p.stderr
    finally:
        f.stop()


def test_server_closing_mid_handshake_exits_3():
    f = TlsFront(None, fault="mid-handshake")
    try:
        p = cli("pub", f"wss://127.0.0.1:{f.port}/ws", "a", "e", "--insecure")
        assert p.returncode == 3
        assert (f"TLS handshake with 127.0.0.1:{f.port} failed: the server closed the connection"
                in p.stderr), p.stderr
    finally:
        f.stop()


def test_wss_to_a_cleartext_port_exits_3(eng):
    p = cli("pub", f"wss://127.0.0.1:{eng.port}/ws", "a", "e", "--insecure")
    assert p.returncode == 3 and "did not answer in TLS" in p.stderr, p.stderr


def test_tls_options_usage(pki):
    p = cli("pub", "ws://127.0.0.1:1/ws", "a", "e", "--ca", pki["ca"])
    assert p.returncode == 2 and "for wss:// URLs" in p.stderr
    p = cli("pub", "wss://127.0.0.1:1/ws", "a", "e", "--ca", pki["ca"], "--insecure")
    assert p.returncode == 2 and "contradict" in p.stderr
    p = cli("pub", "wss://127.0.0.1:1/ws", "a", "e", "--ca", "/nonexistent/ca.pem")
    assert p.returncode == 2 and "cannot read --ca /nonexistent/ca.pem" in p.stderr, p.stderr
    # A file that is not PEM fails before any connection is tried (port 1 would be refused).
    p = cli("pub", "wss://127.0.0.1:1/ws", "a", "e", "--ca", CLI)
    assert p.returncode == 3 and f"cannot load CA file {CLI}" in p.stderr, p.stderr
