"""Helpers for the ringcast-cli tests (test_cli.py, test_publisher_example.py, test_quickstart.py):
run the CLI, follow a background subscriber's stdout and stderr without blocking forever."""

import os
import select
import signal
import subprocess
import time

from engine_harness import BUILD, SANITIZER_MARKERS

CLI = os.path.join(BUILD, "cli", "ringcast-cli")
API_KEY = "test-api-key-0123456789"


def cli(*args, timeout=15):
    """Runs ringcast-cli to completion: CompletedProcess with text stdout/stderr."""
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert_no_sanitizer(p.stderr)
    return p


def assert_no_sanitizer(text):
    bad = [l for l in text.splitlines() if any(m in l for m in SANITIZER_MARKERS)]
    assert not bad, "sanitizer report from ringcast-cli:\n" + text[-4000:]


class Sub:
    """`ringcast-cli sub` in the background; lines() reads stdout, wait_stderr() stderr."""

    def __init__(self, url, *rooms_and_opts, argv=None):
        argv = argv or [CLI, "sub", url, *map(str, rooms_and_opts)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = b""
        self.err = b""

    def _pump(self, timeout):
        fds = [f for f in (self.proc.stdout, self.proc.stderr) if not f.closed]
        if not fds:
            time.sleep(min(timeout, 0.05))
            return False
        r, _, _ = select.select(fds, [], [], timeout)
        for f in r:
            chunk = os.read(f.fileno(), 65536)
            if f is self.proc.stdout:
                self.out += chunk
            else:
                self.err += chunk
            if not chunk:  # EOF on a pipe is for good
                f.close()
        return bool(r)

    def wait_stderr(self, needle, count=1, timeout=5.0):
        """Waits until stderr holds needle count times; returns stderr text."""
        deadline = time.monotonic() + timeout
        while self.err.decode(errors="replace").count(needle) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"no {needle!r} on ringcast-cli's stderr: {self.err!r}"
            if not self._pump(left) and self.proc.poll() is not None:
                raise AssertionError(f"ringcast-cli exited {self.proc.returncode}: {self.err!r}")
        return self.err.decode()

    def lines(self, n, timeout=5.0):
        """The first n stdout lines, waiting up to timeout for them."""
        deadline = time.monotonic() + timeout
        while self.out.count(b"\n") < n:
            left = deadline - time.monotonic()
            assert left > 0, f"only {self.out!r} on stdout; stderr {self.err!r}"
            if not self._pump(left) and self.proc.poll() is not None:
                raise AssertionError(f"ringcast-cli exited {self.proc.returncode}: {self.err!r}")
        return self.out.decode().splitlines()[:n]

    def stop(self, sig=signal.SIGINT, timeout=5.0):
        """Sends sig and returns the exit status once stdout and stderr are drained."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout=5.0):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None or not (self.proc.stdout.closed and self.proc.stderr.closed):
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"ringcast-cli did not exit: {self.err!r}")
            self._pump(min(left, 0.2))
        assert_no_sanitizer(self.err.decode(errors="replace"))
        return self.proc.returncode
