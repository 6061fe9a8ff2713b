"""JWT authentication at the upgrade (issue 12), against the real binary.

Every refusal is checked with its exact status (401 before the upgrade), close code (4001 at
exp) or error code (FORBIDDEN, the connection staying open). HS256 tokens are made with Python's
hmac (docs/examples/issue_token.py, which docs/security.md shows); RS256 and ES256 tokens are
signed with the openssl command line, so no third-party Python package is needed.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time

import pytest
import websockets

from engine_harness import (REPO, http_exchange, run, connect, request, recv_json,
                            upgrade_request)

sys.path.insert(0, os.path.join(REPO, "docs", "examples"))
import issue_token  # noqa: E402

SECRET = b"0123456789abcdef0123456789abcdef-test-secret"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_token(claims, alg="HS256", key=SECRET, header=None, sign=None):
    """A compact JWS. sign(signing_input_bytes) -> signature bytes overrides the HMAC."""
    h = header if header is not None else {"alg": alg, "typ": "JWT"}
    si = b64url(json.dumps(h).encode()) + "." + b64url(json.dumps(claims).encode())
    if sign is not None:
        sig = sign(si.encode())
    else:
        sig = hmac.new(key, si.encode(), hashlib.sha256).digest()
    return si + "." + b64url(sig)


def claims(ttl=300, **kw):
    c = {"sub": "alice", "exp": int(time.time()) + ttl, "channels": ["a:*"], "publish": ["a:*"]}
    c.update(kw)
    return c


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "jwt.secret"
    p.write_bytes(SECRET + b"\n")
    return str(p)


@pytest.fixture
def hs_engine(start_engine, secret_file):
    return start_engine("--threads", "2", "--rate-limit", "0", "--auth", "required",
                        "--jwt-secret-file", secret_file, "--jwt-leeway-s", "0")


def upgrade_status(port, path="/ws", extra=()):
    status, headers, raw = http_exchange(port, upgrade_request(path, extra=extra))
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
    return status, headers, body


def refused_401(port, token=None, why=None, via="header"):
    extra = [f"Authorization: Bearer {token}"] if token is not None and via == "header" else []
    path = f"/ws?token={token}" if via == "query" else "/ws"
    status, headers, body = upgrade_status(port, path, extra)
    assert status == 401, (status, body)
    assert headers.get("www-authenticate") == "Bearer"
    if why:
        assert why.encode() in body, body
    return body


# ---- refusals before the upgrade ----

def test_missing_token_is_401(hs_engine):
    refused_401(hs_engine.port, why="a token is required")


def test_malformed_tokens_are_401(hs_engine):
    p = hs_engine.port
    refused_401(p, "not-a-jwt", "not three base64url parts")
    refused_401(p, "a.b", "not three base64url parts")
    refused_401(p, "a.b.c.d", "not three base64url parts")
    refused_401(p, "@@@.e30.AAAA", "not three base64url parts")
    good = make_token(claims())
    refused_401(p, good[:-1] + ("A" if good[-1] != "A" else "B") + "=", "base64url")
    # header not an object, claims not an object, repeated claim, mistyped claim
    refused_401(p, b64url(b"[]") + ".e30." + b64url(b"x" * 32), "header")
    refused_401(p, make_token([1, 2]), "claims are not a JSON object")
    si = b64url(b'{"alg":"HS256"}') + "." + b64url(b'{"exp":1,"exp":99999999999}')
    refused_401(p, si + "." + b64url(hmac.new(SECRET, si.encode(), hashlib.sha256).digest()),
                "repeats")
    refused_401(p, make_token(claims(channels="a:*")), "mistyped")
    refused_401(p, make_token(claims(exp="soon")), "mistyped")
    refused_401(p, "Basic", None)  # "Bearer Basic": garbage
    status, headers, body = upgrade_status(p, extra=["Authorization: Basic dXNlcjpwYXNz"])
    assert status == 401 and b"Bearer" in body


def test_alg_none_and_empty_signature_are_401(hs_engine):
    p = hs_engine.port
    si = b64url(b'{"alg":"none"}') + "." + b64url(json.dumps(claims()).encode())
    refused_401(p, si + ".", "not three base64url parts")  # empty signature
    refused_401(p, si + "." + b64url(b"x" * 32), "algorithm not accepted")
    refused_401(p, make_token(claims(), header={"alg": "HS256", "crit": ["exp"]}), "crit")


def test_bad_signature_expired_nbf_no_exp_are_401(hs_engine):
    p = hs_engine.port
    refused_401(p, make_token(claims(), key=b"another-secret-of-32-bytes-or-more!!"),
                "signature does not verify")
    refused_401(p, make_token(claims(ttl=-5)), "token expired")
    refused_401(p, make_token(claims(nbf=int(time.time()) + 120)), "not yet valid")
    c = claims()
    del c["exp"]
    refused_401(p, make_token(c), "no exp claim")
    # the query string carries the same checks
    refused_401(p, make_token(claims(ttl=-5)), "token expired", via="query")


def test_refusal_logs_never_show_the_token(hs_engine):
    tok = make_token(claims(ttl=-5))
    refused_401(hs_engine.port, tok, via="query")
    refused_401(hs_engine.port, tok)
    time.sleep(0.2)
    log = hs_engine.stderr()
    assert "handshake refused with 401: token expired" in log
    assert tok not in log and tok.split(".")[2] not in log


# ---- accepted tokens, three ways in ----

def test_token_from_header_query_and_subprotocol(hs_engine):
    tok = make_token(claims())

    async def go():
        ws, _ = await connect(hs_engine.url, extra_headers={"Authorization": "Bearer " + tok})
        await ws.close()
        ws, _ = await connect(hs_engine.url + "?x=1&token=" + tok)
        await ws.close()
        ws, _ = await connect(hs_engine.url, subprotocols=["bearer", tok])
        assert ws.subprotocol == "bearer"  # echoed in the 101
        await ws.close()
    run(go())


def test_raw_101_echoes_bearer_subprotocol(hs_engine):
    tok = make_token(claims())
    status, headers, _ = upgrade_status(hs_engine.port,
                                        extra=[f"Sec-WebSocket-Protocol: bearer, {tok}"])
    assert status == 101 and headers.get("sec-websocket-protocol") == "bearer"
    status, _, body = upgrade_status(hs_engine.port, extra=["Sec-WebSocket-Protocol: bearer"])
    assert status == 401 and b"not followed by a token" in body


def test_issue_token_example_from_docs(hs_engine, secret_file):
    """The docs' backend example (standard hmac only) mints a token the engine accepts."""
    out = subprocess.run([sys.executable, os.path.join(REPO, "docs", "examples", "issue_token.py"),
                          secret_file, "bob", "60", "--channels", "workflow:*",
                          "--publish", "workflow:42"],
                         check=True, capture_output=True, text=True).stdout.strip()

    async def go():
        ws, _ = await connect(hs_engine.url, extra_headers={"Authorization": "Bearer " + out})
        r = await request(ws, "subscribe", {"channel": "workflow:7"})
        assert r["type"] == "response" and r["data"]["status"] == "subscribed", r
        r = await request(ws, "publish", {"channel": "workflow:42", "event": "e", "payload": 1})
        assert r["type"] == "response", r
        await ws.close()
    run(go())


# ---- permissions ----

def test_token_for_a_cannot_subscribe_or_publish_to_b(hs_engine):
    tok = make_token(claims(channels=["a:*"], publish=["a:1"]))

    async def go():
        ws, _ = await connect(hs_engine.url, extra_headers={"Authorization": "Bearer " + tok})
        r = await request(ws, "subscribe", {"channel": "b:1"})
        assert r["type"] == "error" and r["data"]["code"] == "FORBIDDEN", r
        # the short form too
        await ws.send(json.dumps({"type": "subscribe", "channel": "b:1", "id": "s2"}))
        m = await recv_json(ws)
        assert m["type"] == "error" and m["data"]["code"] == "FORBIDDEN", m
        r = await request(ws, "publish", {"channel": "b:1", "event": "e", "payload": 1})
        assert r["type"] == "error" and r["data"]["code"] == "FORBIDDEN", r
        r = await request(ws, "publish", {"channel": "a:2", "event": "e", "payload": 1})
        assert r["type"] == "error" and r["data"]["code"] == "FORBIDDEN", r  # publish: a:1 only
        # the connection stays, and what the token allows works
        r = await request(ws, "subscribe", {"channel": "a:1"})
        assert r["type"] == "response" and r["data"]["status"] == "subscribed", r
        r = await request(ws, "publish", {"channel": "a:1", "event": "e", "payload": 1})
        assert r["type"] == "response", r
        await ws.close()
    run(go())


def test_absent_claims_grant_nothing(hs_engine):
    tok = make_token({"sub": "x", "exp": int(time.time()) + 60})

    async def go():
        ws, _ = await connect(hs_engine.url, extra_headers={"Authorization": "Bearer " + tok})
        r = await request(ws, "subscribe", {"channel": "a:1"})
        assert r["data"]["code"] == "FORBIDDEN", r
        r = await request(ws, "publish", {"channel": "a:1", "payload": 1})
        assert r["data"]["code"] == "FORBIDDEN", r
        await ws.close()
    run(go())


# ---- expiry on a live connection ----

def test_live_connection_closed_4001_at_exp(hs_engine):
    tok = make_token(claims(ttl=2))

    async def go():
        ws, _ = await connect(hs_engine.url, extra_headers={"Authorization": "Bearer " + tok})
        t0 = time.monotonic()
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 6)
        assert ws.close_code == 4001 and ws.close_reason == "token expired"
        assert time.monotonic() - t0 < 4.5
    run(go())


def test_expiry_closes_without_heartbeat(start_engine, secret_file):
    e = start_engine("--threads", "1", "--auth", "required", "--jwt-secret-file", secret_file,
                     "--jwt-leeway-s", "0", "--heartbeat-s", "0")
    tok = make_token(claims(ttl=2))

    async def go():
        ws, _ = await connect(e.url, extra_headers={"Authorization": "Bearer " + tok})
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), 6)
        assert ws.close_code == 4001
    run(go())


# ---- modes and keys ----

def test_optional_mode(start_engine, secret_file):
    e = start_engine("--threads", "1", "--auth", "optional", "--jwt-secret-file", secret_file)

    async def go():
        ws, _ = await connect(e.url)  # no token: unrestricted, as with auth off
        r = await request(ws, "subscribe", {"channel": "b:1"})
        assert r["type"] == "response", r
        await ws.close()
        tok = make_token(claims())
        ws, _ = await connect(e.url, extra_headers={"Authorization": "Bearer " + tok})
        r = await request(ws, "subscribe", {"channel": "b:1"})
        assert r["data"]["code"] == "FORBIDDEN", r  # a token restricts
        await ws.close()
    run(go())
    refused_401(e.port, make_token(claims(), key=b"w" * 40), "signature does not verify")


def test_auth_off_ignores_tokens(engine):
    status, _, _ = upgrade_status(engine.port, "/ws?token=garbage")
    assert status == 101


def test_startup_errors(tmp_path):
    from engine_harness import BINARY
    short = tmp_path / "short"
    short.write_bytes(b"too-short\n")

    def start(*args):
        return subprocess.run([BINARY, "--port", "1", *args], capture_output=True, text=True,
                              timeout=10)
    r = start("--auth", "required")
    assert r.returncode == 2 and "needs a key" in r.stderr
    r = start("--auth", "maybe", "--jwt-secret-file", str(short))
    assert r.returncode == 2
    r = start("--auth", "required", "--jwt-secret-file", str(short))
    assert r.returncode == 2 and "at least 32" in r.stderr and "too-short" not in r.stderr
    r = start("--auth", "required", "--jwt-secret-file", str(tmp_path / "missing"))
    assert r.returncode == 2


def test_secret_on_command_line_warns_and_is_redacted(start_engine):
    e = start_engine("--threads", "1", "--auth", "required", "--jwt-secret", SECRET.decode())
    refused_401(e.port, make_token(claims(), key=b"x" * 40))
    tok = make_token(claims())
    status, _, _ = upgrade_status(e.port, extra=[f"Authorization: Bearer {tok}"])
    assert status == 101
    log = e.stderr()
    assert "jwt-secret given as an option" in log
    assert SECRET.decode() not in log


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def der_to_jose(der):
    """ECDSA-Sig-Value (DER) -> r||s, 32 bytes each."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(32, b"\0")
        i += 2 + n
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    rsa, ec = str(d / "rsa.pem"), str(d / "ec.pem")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", rsa)
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", ec)
    openssl("pkey", "-in", rsa, "-pubout", "-out", rsa + ".pub")
    openssl("pkey", "-in", ec, "-pubout", "-out", ec + ".pub")
    return {"rsa": rsa, "ec": ec}


def rs256(priv):
    return lambda si: openssl("dgst", "-sha256", "-sign", priv, data=si)


def es256(priv):
    return lambda si: der_to_jose(openssl("dgst", "-sha256", "-sign", priv, data=si))


def test_rs256(start_engine, keys):
    e = start_engine("--threads", "1", "--auth", "required", "--jwt-public-key",
                     keys["rsa"] + ".pub")
    ok = make_token(claims(), alg="RS256", sign=rs256(keys["rsa"]))
    status, _, _ = upgrade_status(e.port, extra=[f"Authorization: Bearer {ok}"])
    assert status == 101
    # a signature by another key, and a tampered payload
    other = make_token(claims(), alg="RS256", sign=rs256(keys["ec"]))
    refused_401(e.port, other, "signature does not verify")
    h, p, s = ok.split(".")
    forged = h + "." + b64url(json.dumps(claims(channels=["*"])).encode()) + "." + s
    refused_401(e.port, forged, "signature does not verify")
    # algorithm confusion: an HS256 token whose HMAC key is the server's public key PEM
    pem = open(keys["rsa"] + ".pub", "rb").read()
    refused_401(e.port, make_token(claims(), key=pem), "not accepted")
    refused_401(e.port, make_token(claims(), alg="ES256", sign=es256(keys["ec"])), "expects RS256")


def test_es256(start_engine, keys):
    e = start_engine("--threads", "1", "--auth", "required", "--jwt-public-key",
                     keys["ec"] + ".pub")
    ok = make_token(claims(), alg="ES256", sign=es256(keys["ec"]))

    async def go():
        ws, _ = await connect(e.url, extra_headers={"Authorization": "Bearer " + ok})
        r = await request(ws, "subscribe", {"channel": "a:5"})
        assert r["type"] == "response", r
        await ws.close()
    run(go())
    h, p, s = ok.split(".")
    bad = bytearray(base64.urlsafe_b64decode(s + "=="))
    bad[40] ^= 1
    refused_401(e.port, h + "." + p + "." + b64url(bytes(bad)), "signature does not verify")
    refused_401(e.port, h + "." + p + "." + b64url(bytes(bad[:63])), "signature does not verify")
    pem = open(keys["ec"] + ".pub", "rb").read()
    refused_401(e.port, make_token(claims(), key=pem), "not accepted")
    refused_401(e.port, make_token(claims(), alg="RS256", sign=rs256(keys["rsa"])), "expects ES256")


def test_public_key_startup_errors(tmp_path):
    from engine_harness import BINARY
    small = str(tmp_path / "small.pem")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out", small)
    openssl("pkey", "-in", small, "-pubout", "-out", small + ".pub")
    r = subprocess.run([BINARY, "--port", "1", "--auth", "required", "--jwt-public-key",
                        small + ".pub"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "at least 2048" in r.stderr
    junk = tmp_path / "junk.pem"
    junk.write_text("hello\n")
    r = subprocess.run([BINARY, "--port", "1", "--auth", "required", "--jwt-public-key",
                        str(junk)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "not a PEM public key" in r.stderr


def test_debug_log_redacts_token_in_url(start_engine, secret_file):
    e = start_engine("--threads", "1", "--auth", "required", "--jwt-secret-file", secret_file,
                     "--log-level", "debug")
    tok = make_token(claims(sub="carol"))
    status, _, _ = upgrade_status(e.port, f"/ws?a=1&token={tok}&b=2")
    assert status == 101
    time.sleep(0.2)
    log = e.stderr()
    assert "/ws?a=1&token=[redacted]&b=2 as carol" in log, log[-2000:]
    assert tok not in log and tok.split(".")[2] not in log


# ---- the HTTP API with a backend's JWT ----

def api_post(port, path, body, auth):
    data = json.dumps(body).encode()
    req = (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           f"Authorization: Bearer {auth}\r\nContent-Length: {len(data)}\r\n"
           f"Connection: close\r\n\r\n").encode() + data
    status, headers, raw = http_exchange(port, req)
    return status, raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""


def test_http_api_jwt_publish_claim(start_engine, secret_file):
    e = start_engine("--threads", "2", "--auth", "required", "--jwt-secret-file", secret_file,
                     "--api-key", "static-key-for-admins")
    backend = make_token(claims(sub="backend", channels=[], publish=["a:*"]))
    status, body = api_post(e.port, "/api/publish", {"channel": "a:1", "data": 1}, backend)
    assert status == 200, body
    status, body = api_post(e.port, "/api/publish", {"channel": "b:1", "data": 1}, backend)
    assert status == 403 and b"FORBIDDEN" in body, body
    # one forbidden channel refuses the whole broadcast
    status, body = api_post(e.port, "/api/broadcast", {"channels": ["a:1", "b:1"], "data": 1},
                            backend)
    assert status == 403 and b"FORBIDDEN" in body, body
    # a JWT is for publishing only, and a bad one is 401 with its reason
    status, _, raw = http_exchange(e.port, (f"GET /api/status HTTP/1.1\r\nHost: x\r\n"
                                            f"Authorization: Bearer {backend}\r\n"
                                            f"Connection: close\r\n\r\n").encode())
    assert status == 401
    status, body = api_post(e.port, "/api/publish", {"channel": "a:1"},
                            make_token(claims(ttl=-100, publish=["a:*"])))  # past the 30 s leeway
    assert status == 401 and b"token expired" in body, body
    # the static key still has full rights
    status, body = api_post(e.port, "/api/publish", {"channel": "b:1"}, "static-key-for-admins")
    assert status == 200, body


def test_security_md_example_is_the_tested_code():
    """docs/security.md shows issue(): it must be the code test_issue_token_example runs."""
    doc = open(os.path.join(REPO, "docs", "security.md")).read()
    src = open(os.path.join(REPO, "docs", "examples", "issue_token.py")).read()
    block = doc.split("```python\n", 1)[1].split("```", 1)[0]
    fn = block[block.index("def b64url"):].strip()
    assert fn.split("def issue")[1] in src and "def b64url(data: bytes) -> str:" in src
