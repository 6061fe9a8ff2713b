"""Helpers for the load generator's integration tests (a uniquely named module: every test
directory has its own conftest.py, and `from conftest import` would pick the wrong one)."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("RINGCAST_BUILD", os.path.join(REPO, "build"))
LOADGEN = os.path.join(BUILD, "loadgen", "ringcast-load")
FANOUT = os.path.join(BUILD, "tests", "loadgen", "fanout_server")
ENGINE = os.path.join(BUILD, "engine", "ringcast")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "engine"))

from engine_harness import free_port  # noqa: E402,F401  (re-exported for the tests)


def start_server(cmd, pattern=r"listening on 127\.0\.0\.1:(\d+)", timeout=10):
    """Starts a server that prints 'listening on 127.0.0.1:PORT' on stderr; returns (proc, port)."""
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        m = re.search(pattern, line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise RuntimeError("server did not start: %s" % " ".join(cmd))


def stop_server(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def faulty():
    """Factory: faulty(fault='drop', count=5, layout='ringcast') -> port."""
    procs = []

    def start(fault="none", count=5, layout="ringcast", start=50, every=37, close_log=None,
              extra=()):
        extra = (["--close-log", str(close_log)] if close_log else []) + [str(e) for e in extra]
        proc, port = start_server([sys.executable, os.path.join(HERE, "faulty_server.py"),
                                   "--port", "0", "--fault", fault, "--count", str(count),
                                   "--layout", layout, "--start", str(start),
                                   "--every", str(every)] + extra)
        procs.append(proc)
        return port

    yield start
    for p in procs:
        stop_server(p)


def engine_fixture(*base_flags):
    """A pytest fixture (assign it to the name engine): a factory engine(*flags) -> port of a real
    build/engine/ringcast with one worker, base_flags, then flags; all stopped at teardown."""

    @pytest.fixture
    def engine():
        procs = []

        def start(*flags):
            if not os.path.exists(ENGINE):
                pytest.skip("engine not built at %s" % ENGINE)
            port = free_port()
            proc, _ = start_server([ENGINE, "--bind", "127.0.0.1", "--port", str(port),
                                    "--threads", "1"] + [str(f) for f in base_flags + flags])
            procs.append(proc)
            return port

        yield start
        for p in procs:
            stop_server(p)

    return engine


def run_loadgen(args, timeout=60, env=None, prefix=()):
    """Runs ringcast-load; returns CompletedProcess."""
    if not os.path.exists(LOADGEN):
        pytest.skip("ringcast-load not built at %s" % LOADGEN)
    return subprocess.run(list(prefix) + [LOADGEN] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout, env=env)
