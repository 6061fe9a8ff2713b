"""Conformance fixtures: one engine per test module, started with the module's ENGINE_ARGS on a
free port; a crash is pinned on the test that caused it; teardown requires a graceful exit 0 and a
stderr free of sanitizer reports."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import wsraw  # noqa: E402


def start_engine(args):
    e = wsraw.Engine(args)
    try:
        e.start()
    except RuntimeError as exc:
        e.cleanup()
        pytest.fail(str(exc), pytrace=False)
    return e


def stop_engine(e):
    try:
        rc, err = e.stop()
        report = e.sanitizer_report()
        assert report is None, f"sanitizer report in engine stderr:\n{report}"
        assert rc == 0, f"engine exit status {rc} after SIGTERM; stderr tail:\n{err[-3000:]}"
    finally:
        e.cleanup()


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
    e = request.getfixturevalue("engine")
    problem = None
    if not e.alive():
        problem = f"engine died (status {e.proc.returncode}) during this test; stderr tail:\n" \
                  f"{e.stderr()[-4000:]}"
    elif e.sanitizer_report():
        problem = f"sanitizer report during this test:\n{e.sanitizer_report()}"
        e.stop()
    if problem:
        e.cleanup()
        try:
            e.start()
        except RuntimeError as exc:
            problem += f"\n(restart failed: {exc})"
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
