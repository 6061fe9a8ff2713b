"""pytest fixtures shared by the conformance and abuse suites (each conftest imports them; the
abuse conftest puts this directory on sys.path): engines started through wsraw that must exit 0
on SIGTERM with no sanitizer report, and a crash pinned on the test that caused it."""

import pytest

import wsraw


def _fail(msg):
    pytest.fail(msg, pytrace=False)


def start_engine(args):
    return wsraw.start_engine(args, _fail)


stop_engine = wsraw.stop_engine


def module_engine(default_args):
    """The engine fixture: one engine per test module, started with the module's ENGINE_ARGS
    (default_args where it has none). Assign it to the name engine in a conftest."""

    @pytest.fixture(scope="module")
    def engine(request):
        e = start_engine(getattr(request.module, "ENGINE_ARGS", default_args))
        yield e
        stop_engine(e)

    return engine


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
