"""README.md's quickstart, run as written so that it cannot rot.

The first ```sh block under "## Quickstart" is read from README.md and each command is run in
order, in a scratch directory, with only these substitutions: the port 8765 becomes a free one
(other engines may run on this machine), `build/` becomes $RINGCAST_BUILD, and `xdg-open FILE`
(no browser here) becomes a check that FILE is an HTML report. A command ending in `&` is a
background job, waited for until it is ready (the engine accepts, the subscriber is subscribed);
`kill [-SIG] %N` signals job N and expects it to exit 0, as both do on their clean-stop signal.
"""

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time

from cli_helpers import Sub, assert_no_sanitizer
from engine_harness import BUILD, REPO, free_port


def quickstart_commands():
    readme = open(os.path.join(REPO, "README.md")).read()
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```sh\n(.*?)\n```", section, re.S).group(1)
    return [c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip()]


def wait_port(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"background job exited with {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing accepts on {port} within {timeout}s")


def test_readme_quickstart_runs_as_written(tmp_path):
    cmds = quickstart_commands()
    assert any("ringcast-cli sub" in c for c in cmds) and any(c.startswith("curl") for c in cmds)
    assert any("ringcast-load" in c and "--html" in c for c in cmds)
    port = free_port()
    jobs, outputs = [], {}
    try:
        for cmd in cmds:
            cmd = cmd.replace("8765", str(port))
            cmd = re.sub(r"(?<![\w/])build/", BUILD.rstrip("/") + "/", cmd)
            if cmd.startswith("xdg-open "):
                report = tmp_path / cmd.split()[1]
                html = report.read_text()
                assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:500]
                assert len(html) > 2000, "the HTML report is nearly empty"
                continue
            if cmd.endswith("&"):
                argv = ["bash", "-c", "exec " + cmd[:-1].strip()]
                if "ringcast-cli sub" in cmd:
                    job = Sub(None, argv=argv)
                    job.wait_stderr("subscribed:")
                else:
                    proc = subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL)
                    job = proc
                    wait_port(port, proc)
                jobs.append(job)
                continue
            if cmd.startswith("kill "):
                for part in cmd.split(";"):
                    words = shlex.split(part)
                    sig = (getattr(signal, "SIG" + words[1][1:]) if words[1].startswith("-")
                           else signal.SIGTERM)
                    job = jobs[int(words[-1].lstrip("%")) - 1]
                    if isinstance(job, Sub):
                        assert job.stop(sig, timeout=10) == 0, job.err
                    else:
                        job.send_signal(sig)
                        assert job.wait(timeout=15) == 0
                continue
            p = subprocess.run(["bash", "-c", cmd], cwd=tmp_path, capture_output=True, text=True,
                               timeout=180)
            assert p.returncode == 0, f"{cmd}\nstdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}"
            outputs[cmd.split()[0]] = p.stdout
    finally:
        for job in jobs:
            proc = job.proc if isinstance(job, Sub) else job
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    published = json.loads(outputs["curl"])
    assert len(published.pop("epoch")) == 16
    assert published == {"channel": "workflow:42", "seq": 1, "subscribers": 1}
    sub = next(j for j in jobs if isinstance(j, Sub))
    event = json.loads(sub.out.decode().splitlines()[0])
    assert (event["event"], event["room"], event["data"]) == ("step.done", "workflow:42",
                                                              {"step": 3})
    log = (tmp_path / "ringcast.log").read_text()
    assert_no_sanitizer(log)
