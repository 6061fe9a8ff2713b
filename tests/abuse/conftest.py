"""Abuse fixtures: one engine per module (ENGINE_ARGS), plus make_engine for tests that need their
own flags. Every engine must survive (checked after each test), exit 0 on SIGTERM and leave no
sanitizer report. The raw client lives in tests/conformance/wsraw.py, the fixtures shared with
tests/conformance in wsraw_fixtures.py next to it."""

import os
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
from wsraw_fixtures import _engine_survives, make_engine, module_engine  # noqa: E402,F401

engine = module_engine([])


@pytest.fixture
def own():
    """Starts engines with their own flags (and environment) that a test kills and checks
    itself (abuseutil.finish); whatever is left is killed at teardown."""
    from abuseutil import kill_engine, start_own_engine

    started = []

    def start(args, env=None):
        e = start_own_engine(args, env)
        started.append(e)
        return e

    yield start
    for e in started:
        kill_engine(e)
