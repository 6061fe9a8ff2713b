"""Fixtures for the real-client tests: one engine per test (the harness lives in tests/engine),
and the paths of node and chromium, skipping only when a tool is truly absent."""

import os
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "engine"))

from engine_harness import BINARY, Engine  # noqa: E402


@pytest.fixture
def engine():
    if not os.access(BINARY, os.X_OK):
        pytest.fail(f"engine binary missing: {BINARY} (ninja -C build, or set RINGCAST_BUILD)")
    e = Engine(["--threads", "2"])
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
