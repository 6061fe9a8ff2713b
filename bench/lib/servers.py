"""The servers bench/run compares and how to start and fully stop each one.

Shared by bench/run and bench/peers/smoke.py. Every server takes --bind and --port, logs a line
containing "listening on HOST:PORT" on stderr once it accepts, and exits on SIGTERM. Starting
returns a Server (or raises ServerError with a one-line reason fit for a table row); stopping
leaves no process of the server's process group alive and the port without a listener.
"""

import os
import resource
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEBIAN_PYTHON = "/usr/bin/python3"  # has python3-websockets; the pyenv python3 on PATH does not


class ServerError(Exception):
    """A server that could not be started or found; str() is a one-line reason."""


@dataclass
class Spec:
    name: str  # key used on the command line (--servers)
    label: str  # what the table calls it
    describe: str  # one line for docs/benchmarks.md
    argv: object  # function(build_dir) -> list[str] without --host/--port
    cwd: str = REPO


def _ringcast(build):
    # --rate-limit 0: the benchmark measures fan-out, not the per-connection token bucket.
    return [
        os.path.join(build, "engine", "ringcast"),
        "--threads", "1", "--rate-limit", "0", "--max-connections", "20000",
    ]


def _node(build):
    return ["node", os.path.join(REPO, "bench", "peers", "node", "server.js")]


def _python(build):
    return [DEBIAN_PYTHON, os.path.join(REPO, "bench", "peers", "python", "server.py")]


def _lws(build):
    return [os.path.join(build, "bench", "peers", "lws", "lws-broadcast")]


def _floor(build):
    return [os.path.join(build, "bench", "floor")]


SPECS = {
    "ringcast": Spec("ringcast", "ringcast", "ringcast engine (io_uring), --threads 1", _ringcast),
    "node": Spec("node", "node-ws", "Node.js ws, one process", _node),
    "python": Spec("python", "python-websockets", "Python websockets (asyncio), one process",
                   _python),
    "lws": Spec("lws", "lws", "libwebsockets, single-threaded service loop", _lws),
    # Not a peer: the kernel floor for the same sends (bench/floor.c), for the rooms-100
    # comparison; bench/run runs it only when asked (--servers ringcast,floor).
    "floor": Spec("floor", "floor (raw io_uring)",
                  "bench/floor.c: encode once, one send per subscriber, nothing else", _floor),
}


def check_available(spec, build):
    """Raises ServerError when a server's program or dependency is missing."""
    argv = spec.argv(build)
    if spec.name == "node":
        mod = os.path.join(REPO, "bench", "peers", "node", "node_modules", "ws")
        if not os.path.isdir(mod):
            raise ServerError("bench/peers/node/node_modules missing (run scripts/deps.sh)")
        if not _which("node"):
            raise ServerError("node not installed")
    elif spec.name == "python":
        if not os.path.exists(DEBIAN_PYTHON):
            raise ServerError(DEBIAN_PYTHON + " not found")
    elif not os.access(argv[0], os.X_OK):
        raise ServerError("%s not built" % os.path.relpath(argv[0], REPO))


def _which(prog):
    for d in os.environ.get("PATH", "").split(os.pathsep):
        if os.access(os.path.join(d, prog), os.X_OK):
            return True
    return False


def port_in_use(port, host="127.0.0.1"):
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            return True
        except OSError:
            return False


def _raise_nofile():
    # Runs in the child before exec: 10k connections need more than a 1024 soft limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Server:
    spec: Spec
    proc: subprocess.Popen
    port: int
    log_path: str
    argv: list = field(default_factory=list)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=3):
        """The server's last log lines (its startup banner left out), for a failure row."""
        try:
            with open(self.log_path, errors="replace") as f:
                lines = [ln.strip() for ln in f if ln.strip() and "listening on" not in ln]
        except OSError:
            lines = []
        return " | ".join(lines[-n:])[-300:] or "nothing in its log"


def start(spec, build, port, log_path, cpu=None, host="127.0.0.1", timeout=15.0):
    """Starts spec's server on host:port (pinned to cpu when given) and waits until it logs
    "listening on" and accepts a TCP connection. Raises ServerError on any failure, after making
    sure nothing it started is left running."""
    check_available(spec, build)
    if port_in_use(port, host):
        raise ServerError("port %d already in use before start" % port)
    argv = spec.argv(build) + ["--bind", host, "--port", str(port)]
    if cpu is not None:
        # taskset execs the server, so the pid we get is the server's own (for --server-pid).
        argv = ["taskset", "-c", str(cpu)] + argv
    log = open(log_path, "w")
    try:
        proc = subprocess.Popen(argv, cwd=spec.cwd, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, preexec_fn=_raise_nofile,
                                start_new_session=True)
    except OSError as e:
        raise ServerError("cannot run %s: %s" % (argv[0], e.strerror))
    finally:
        log.close()
    srv = Server(spec, proc, port, log_path, argv)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not srv.alive():
            rc = proc.returncode
            stop(srv)
            raise ServerError("exited with %s at start: %s" % (_rc_str(rc), srv.log_tail()))
        with open(log_path, errors="replace") as f:
            ready = "listening on" in f.read()
        if ready and port_in_use(port, host):
            return srv
        time.sleep(0.05)
    stop(srv)
    raise ServerError("not listening after %.0f s: %s" % (timeout, srv.log_tail()))


def _rc_str(rc):
    if rc is None:
        return "?"
    if rc < 0:
        try:
            return signal.Signals(-rc).name
        except ValueError:
            return "signal %d" % -rc
    return "status %d" % rc


def stop(srv, grace=8.0):
    """SIGTERM, then SIGKILL after grace seconds, to the server's whole process group; waits
    until the group is gone and the port has no listener. Returns the exit status as a string
    ("status 0", "SIGKILL", ...)."""
    pgid = srv.proc.pid  # start_new_session: the server leads its own group
    if srv.alive():
        _killpg(pgid, signal.SIGTERM)
        try:
            srv.proc.wait(grace)
        except subprocess.TimeoutExpired:
            _killpg(pgid, signal.SIGKILL)
            srv.proc.wait(5)
    rc = srv.proc.returncode
    # Children the server may have left (none of ours fork, but be sure) go too.
    _killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and port_in_use(srv.port):
        time.sleep(0.05)
    return _rc_str(rc)


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
