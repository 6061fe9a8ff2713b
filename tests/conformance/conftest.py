"""Conformance fixtures: one engine per test module, started with the module's ENGINE_ARGS on a
free port; a crash is pinned on the test that caused it; teardown requires a graceful exit 0 and a
stderr free of sanitizer reports. The shared fixtures live in wsraw_fixtures.py."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import wsraw  # noqa: E402
from wsraw_fixtures import _engine_survives, make_engine, module_engine  # noqa: E402,F401

engine = module_engine(["--rate-limit", "0"])


@pytest.fixture
def conn(engine):
    c = wsraw.Conn.open(engine.port)
    yield c
    c.close()
