"""Fixtures for the engine's integration tests.

`start_engine(*args)` starts the real binary ($RINGCAST_BUILD/engine/ringcast, default
<repo>/build) on a free loopback port with the given extra options and returns an Engine
(url, port, pid, proc). At teardown every engine the test started gets SIGTERM and must exit 0
within 10 s with no AddressSanitizer/UBSan report in its stderr: that is how the sanitizer run of
the suite turns leaks and undefined behaviour into failures.

`engine` is one engine with the defaults a protocol test wants: two workers and no rate limit.

Tests are plain functions that call engine_harness.run(coro): pytest-asyncio is not part of
Debian's python3-pytest, and one event loop per test keeps the tests independent.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from engine_harness import BINARY, Engine  # noqa: E402


@pytest.fixture
def start_engine():
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"engine binary missing: {BINARY} (ninja -C build, or set RINGCAST_BUILD)")
    started = []

    def start(*args, env=None):
        e = Engine(args, env=env)
        started.append(e)
        return e

    yield start
    errors = []
    for e in started:
        try:
            e.check_clean_exit()
        except AssertionError as err:
            errors.append(str(err))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)


@pytest.fixture
def engine(start_engine):
    return start_engine("--threads", "2", "--rate-limit", "0")
