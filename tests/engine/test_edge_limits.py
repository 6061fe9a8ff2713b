"""Edge limits at the upgrade (issue 12): the Origin allow-list (403) and the per-IP limits
(429 with Retry-After), against the real binary, with exact statuses and headers."""

import socket
import time

from engine_harness import http_exchange, read_http_head, parse_http_response, upgrade_request


def upgrade(port, extra=(), path="/ws"):
    status, headers, raw = http_exchange(port, upgrade_request(path, extra=extra))
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
    return status, headers, body


def open_upgraded(port):
    """An upgraded raw connection, kept open (the caller closes it)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(upgrade_request())
    status, _ = parse_http_response(read_http_head(s))
    return s, status


# ---- Origin ----

def test_origin_allow_list(start_engine):
    e = start_engine("--threads", "1", "--allowed-origins",
                     "https://app.example.com, *.example.org ,http://*.dev.test:8080")
    p = e.port
    ok = ["https://app.example.com", "HTTPS://APP.EXAMPLE.COM", "https://a.example.org",
          "http://a.b.example.org:3000", "http://x.dev.test:8080"]
    bad = ["https://evil.com", "https://app.example.com.evil.com", "https://example.org",
           "https://app.example.com:8443", "null", "https://xexample.org",
           "https://x.dev.test:8080", "http://x.dev.test:9090", "http://x.dev.test"]
    for o in ok:
        status, _, body = upgrade(p, [f"Origin: {o}"])
        assert status == 101, (o, status, body)
    for o in bad:
        status, _, body = upgrade(p, [f"Origin: {o}"])
        assert status == 403, (o, status, body)
        assert b"Origin not allowed" in body
    # no Origin: not a browser (which always sends one), and a non-browser can forge any Origin
    status, _, _ = upgrade(p)
    assert status == 101
    time.sleep(0.2)
    assert "handshake refused with 403" in e.stderr()


def test_origin_star_and_unset(start_engine):
    e = start_engine("--threads", "1", "--allowed-origins", "*")
    assert upgrade(e.port, ["Origin: https://whatever.net"])[0] == 101
    e2 = start_engine("--threads", "1")
    assert upgrade(e2.port, ["Origin: https://whatever.net"])[0] == 101


def test_origin_does_not_apply_to_http_api(start_engine):
    e = start_engine("--threads", "1", "--allowed-origins", "https://app.example.com")
    status, _, _ = http_exchange(e.port, b"GET /health HTTP/1.1\r\nHost: x\r\n"
                                 b"Origin: https://evil.com\r\nConnection: close\r\n\r\n")
    assert status == 200


# ---- per-IP concurrent ----

def test_max_connections_per_ip_429(start_engine):
    e = start_engine("--threads", "2", "--max-connections-per-ip", "3")
    held = []
    try:
        for _ in range(3):
            s, status = open_upgraded(e.port)
            held.append(s)
            assert status == 101
        status, headers, body = upgrade(e.port)
        assert status == 429, (status, body)
        assert headers.get("retry-after") == "5"
        assert b"max-connections-per-ip" in body
        # one goes away: its place is given back once it is closed
        held.pop().close()
        deadline = time.monotonic() + 3
        while True:
            s, status = open_upgraded(e.port)
            if status == 101:
                held.append(s)
                break
            s.close()
            assert time.monotonic() < deadline, "the freed per-IP place never came back"
            time.sleep(0.1)
    finally:
        for s in held:
            s.close()
    time.sleep(0.2)
    assert "handshake refused with 429" in e.stderr()


def test_refused_upgrades_do_not_leak_per_ip_places(start_engine):
    """Refusals after the per-IP check (404 is before it, 403 after it) give their place back."""
    e = start_engine("--threads", "1", "--max-connections-per-ip", "2", "--allowed-origins",
                     "https://ok.test")
    for _ in range(6):
        assert upgrade(e.port, ["Origin: https://bad.test"])[0] == 403
    time.sleep(0.3)
    a, s1 = open_upgraded(e.port)
    b, s2 = open_upgraded(e.port)
    try:
        assert (s1, s2) == (101, 101)
    finally:
        a.close()
        b.close()


# ---- per-IP rate ----

def test_max_new_connections_per_ip_per_s_429(start_engine):
    e = start_engine("--threads", "2", "--max-new-connections-per-ip-per-s", "4")
    statuses, retry = [], set()
    for _ in range(12):
        status, headers, body = upgrade(e.port)
        statuses.append(status)
        if status == 429:
            retry.add(headers.get("retry-after"))
            assert b"max-new-connections-per-ip-per-s" in body
    # 12 attempts in well under 2 s span at most two one-second windows: at most 8 admitted
    assert statuses.count(101) <= 8 and statuses.count(429) >= 4, statuses
    assert set(statuses) <= {101, 429} and retry == {"1"}
    time.sleep(1.1)
    assert upgrade(e.port)[0] == 101  # a new second, a new allowance


def test_http_api_is_not_per_ip_limited(start_engine):
    e = start_engine("--threads", "1", "--max-new-connections-per-ip-per-s", "1")
    for _ in range(5):
        status, _, _ = http_exchange(e.port, b"GET /health HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
        assert status == 200


def test_per_ip_table_bound_option(start_engine):
    # The smallest table (256 entries) still admits this one address.
    e = start_engine("--threads", "1", "--per-ip-table-size", "256", "--max-connections-per-ip",
                     "1")
    s, status = open_upgraded(e.port)
    try:
        assert status == 101
        assert upgrade(e.port)[0] == 429
    finally:
        s.close()


def test_edge_refusals_in_metrics(start_engine):
    e = start_engine("--threads", "1", "--allowed-origins", "https://ok.test",
                     "--max-connections-per-ip", "100")
    assert upgrade(e.port, ["Origin: https://bad.test"])[0] == 403
    _, _, raw = http_exchange(e.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n", timeout=3)
    s = socket.create_connection(("127.0.0.1", e.port), timeout=3)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    text = data.decode()
    assert 'ringcast_edge_refusals_total{reason="origin"} 1' in text
    assert "ringcast_per_ip_entries 1" in text
