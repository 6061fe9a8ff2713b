"""Fixtures for the real-client tests: one engine per test (the harness lives in tests/engine), eng
(one with an API key, for the ringcast-cli tests), and the paths of node and chromium, skipping only
when a tool is truly absent."""

import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "engine"))

from cli_helpers import API_KEY, CLI  # noqa: E402
from engine_harness import BINARY, Engine  # noqa: E402


@pytest.fixture
def engine():
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"engine binary missing: {BINARY} (ninja -C build, or set RINGCAST_BUILD)")
    e = Engine(["--threads", "2"])
    yield e
    e.check_clean_exit()


@pytest.fixture
def eng():
    """An engine for the ringcast-cli tests: two workers and API_KEY for the HTTP publish API."""
    if not os.access(CLI, os.X_OK):
        pytest.fail(f"ringcast-cli missing: {CLI} (ninja -C build, or set RINGCAST_BUILD)")
    e = Engine(["--threads", "2", "--api-key", API_KEY])
    yield e
    e.check_clean_exit()


@pytest.fixture
def node():
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not installed")
    if not os.path.isdir(os.path.join(HERE, "node_modules", "ws")):
        pytest.fail("tests/clients/node_modules missing: run scripts/deps.sh (npm ci)")
    return exe


@pytest.fixture
def chromium(node):
    exe = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(exe, os.X_OK):
        pytest.skip(f"chromium is not installed ({exe})")
    return exe
