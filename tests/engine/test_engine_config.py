"""Configuration errors an operator can act on (issue 17) and option ranges at their boundaries
(issue 9): every refusal is one stderr line naming the option, the value and where it came from,
exit status 2; every maximum is accepted and max+1 refused."""

import os
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from engine_harness import BINARY, REPO, free_port, http_exchange, upgrade_request


def refuse(*args, env=None, config=None):
    """Runs the engine expecting a startup error; returns its one stderr line."""
    penv = {k: v for k, v in os.environ.items() if not k.startswith("RINGCAST_")}
    penv.update(env or {})
    argv = [BINARY, "--port", str(free_port())] + [str(a) for a in args]
    path = None
    if config is not None:
        fd, path = tempfile.mkstemp(suffix=".ini")
        with os.fdopen(fd, "w") as f:
            f.write(config)
        argv += ["--config", path]
    try:
        p = subprocess.run(argv, env=penv, capture_output=True, text=True, timeout=10)
    finally:
        if path:
            os.unlink(path)
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0], path


@pytest.mark.parametrize("opt,maximum", [
    ("--ring-entries", 8192),
    ("--max-subscriptions", 65535),
    ("--rate-burst", 32767),
    ("--recv-buffers", 32768),
])
def test_option_range_max_plus_one_is_refused_naming_the_option(opt, maximum):
    line, _ = refuse(opt, maximum + 1)
    name = opt[2:]
    assert line.startswith(f"ringcast: {opt}: {name} '{maximum + 1}' is not a number in"), line
    assert f"..{maximum} " in line, line
    assert "kernel" not in line


@pytest.mark.parametrize("opt,maximum", [
    ("--ring-entries", 8192),
    ("--max-subscriptions", 65535),
    ("--rate-burst", 32767),
])
def test_option_range_max_is_accepted(start_engine, opt, maximum):
    e = start_engine("--threads", "1", opt, maximum)
    status, _, _ = http_exchange(e.port, upgrade_request())
    assert status == 101


def test_recv_buffers_not_power_of_two_names_option_value_and_origin():
    line, _ = refuse("--recv-buffers", "1000")
    assert line == ("ringcast: --recv-buffers: recv-buffers '1000' is not a power of two "
                    "(e.g. 512)"), line


def test_bad_ini_value_is_one_line_with_file_and_line():
    line, path = refuse(config="[ringcast]\nport = 8765\n\nrate-burst = 99999\n")
    assert line == (f"ringcast: {path}:4: rate-burst '99999' is not a number in 1..32767 "
                    "(messages)"), line


def test_bad_ini_key_is_one_line_with_file_and_line():
    line, path = refuse(config="threads = 1\nmax-conections = 5\n")
    assert line == f"ringcast: {path}:2: unknown key 'max-conections' (see ringcast --help)", line


def test_unknown_ringcast_env_var_is_refused_with_a_suggestion():
    line, _ = refuse(env={"RINGCAST_MAX_CONECTIONS": "5"})
    assert line == ("ringcast: RINGCAST_MAX_CONECTIONS: unknown environment variable "
                    "(did you mean RINGCAST_MAX_CONNECTIONS?)"), line


def test_unknown_ringcast_env_var_far_from_any_option():
    line, _ = refuse(env={"RINGCAST_XYZZY_PLUGH": "1"})
    assert line.startswith("ringcast: RINGCAST_XYZZY_PLUGH: unknown environment variable"), line


def test_project_tool_variables_are_not_options(start_engine):
    start_engine("--threads", "1", env={"RINGCAST_BUILD": "/x", "RINGCAST_DEMO_PORT": "1",
                                        "RINGCAST_GATE_STRICT": "1"})


def test_bad_env_value_names_the_variable():
    line, _ = refuse(env={"RINGCAST_RATE_LIMIT": "fast"})
    assert line.startswith("ringcast: RINGCAST_RATE_LIMIT: rate-limit 'fast' is not a number"), line


def test_queue_smaller_than_two_messages_is_refused_naming_both_origins():
    line, _ = refuse("--max-message-bytes", "1M", "--max-queue-bytes", "64k")
    assert line.startswith("ringcast: --max-queue-bytes: max-queue-bytes '65536' is less than "
                           "twice max-message-bytes 1048576 (from --max-message-bytes)"), line
    line, _ = refuse("--max-queue-bytes", "64k", env={"RINGCAST_MAX_MESSAGE_BYTES": "64k"})
    assert "(from RINGCAST_MAX_MESSAGE_BYTES)" in line, line


def test_queue_of_exactly_two_messages_is_accepted(start_engine):
    start_engine("--threads", "1", "--max-message-bytes", "32k", "--max-queue-bytes", "64k")


def test_bind_accepts_a_host_name(start_engine):
    e = start_engine("--threads", "1", "--bind", "localhost")
    status, _, _ = http_exchange(e.port, upgrade_request())
    assert status == 101
    assert e.wait_log("listening on "), e.stderr()
    assert "listening on 127.0.0.1:" in e.stderr() or "listening on [::1]:" in e.stderr()


def test_bind_unresolvable_name_is_a_clear_error():
    penv = {k: v for k, v in os.environ.items() if not k.startswith("RINGCAST_")}
    p = subprocess.run([BINARY, "--bind", "no-such-host.invalid", "--port", str(free_port())],
                       env=penv, capture_output=True, text=True, timeout=20)
    assert p.returncode == 2
    assert "bind 'no-such-host.invalid'" in p.stderr, p.stderr


def test_ipv6_listen_address_is_logged_in_brackets():
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    port = free_port()
    penv = {k: v for k, v in os.environ.items() if not k.startswith("RINGCAST_")}
    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([BINARY, "--threads", "1", "--bind", "::1", "--port", str(port),
                              "--log-level", "debug"], stderr=err, env=penv)
        try:
            deadline = time.monotonic() + 5
            while True:
                try:
                    with socket.create_connection(("::1", port), timeout=1) as s:
                        s.sendall(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
                        s.recv(1000)
                    break
                except OSError:
                    assert time.monotonic() < deadline, "engine did not listen on ::1"
                    time.sleep(0.05)
        finally:
            p.send_signal(signal.SIGTERM)
            assert p.wait(10) == 0
        err.seek(0)
        log = err.read().decode()
    assert f"listening on [::1]:{port} " in log, log
    assert re.search(r"\[::1\]:\d+ \(w0-1\): accepted", log), log


def test_threads_above_cpus_warns(start_engine):
    n = len(os.sched_getaffinity(0))
    e = start_engine("--threads", n + 1)
    assert f"--threads: threads {n + 1} is more than the {n} CPU" in e.stderr(), e.stderr()


def test_example_ini_starts_without_warnings(start_engine):
    e = start_engine("--config", os.path.join(REPO, "docs", "examples", "ringcast.ini"))
    err = e.stderr()
    assert " WARN " not in err and " ERROR " not in err, err
