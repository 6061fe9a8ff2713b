"""Conformance fixtures: one engine per test module, started with the module's ENGINE_ARGS on a
free port; a crash is pinned on the test that caused it; teardown requires a graceful exit 0 and a
stderr free of sanitizer reports."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import wsraw  # noqa: E402


def _fail(msg):
    pytest.fail(msg, pytrace=False)


def start_engine(args):
    return wsraw.start_engine(args, _fail)


stop_engine = wsraw.stop_engine


@pytest.fixture(scope="module")
def engine(request):
    e = start_engine(getattr(request.module, "ENGINE_ARGS", ["--rate-limit", "0"]))
    yield e
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
def conn(engine):
    c = wsraw.Conn.open(engine.port)
    yield c
    c.close()


@pytest.fixture
def make_engine():
    """Factory for extra engines with their own flags, stopped and checked after the test."""
    started = []

    def make(args):
        e = start_engine(args)
        started.append(e)
        return e

    yield make
    for e in started:
        stop_engine(e)
