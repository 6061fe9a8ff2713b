"""Abuse fixtures: one engine per module (ENGINE_ARGS), plus make_engine for tests that need their
own flags. Every engine must survive (checked after each test), exit 0 on SIGTERM and leave no
sanitizer report. The raw client lives in tests/conformance/wsraw.py."""

import os
import sys

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
import wsraw  # noqa: E402


def _fail(msg):
    pytest.fail(msg, pytrace=False)


def start_engine(args):
    return wsraw.start_engine(args, _fail)


stop_engine = wsraw.stop_engine


@pytest.fixture(scope="module")
def engine(request):
    e = start_engine(getattr(request.module, "ENGINE_ARGS", []))
    yield e
    stop_engine(e)


@pytest.fixture
def make_engine():
    started = []

    def make(args):
        e = start_engine(args)
        started.append(e)
        return e

    yield make
    for e in started:
        stop_engine(e)


@pytest.fixture(autouse=True)
def _engine_survives(request):
    """Pins a crash or sanitizer report on the test that caused it, then restarts the module's
    engine so that the following tests still run against a live one."""
    yield
    if "engine" not in request.fixturenames:
        return
    problem = wsraw.survival_problem(request.getfixturevalue("engine"))
    if problem:
        pytest.fail(problem, pytrace=False)


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
