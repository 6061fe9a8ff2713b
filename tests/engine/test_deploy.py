"""Deployment: `meson install` puts the three binaries, the systemd unit and the example
configuration in place; the unit passes `systemd-analyze verify` without a warning and keeps
its hardening; the engine speaks sd_notify (READY, RELOADING, STOPPING) to a real notify
socket, as systemd's Type=notify expects."""

import os
import shutil
import signal
import socket
import subprocess

import pytest

from engine_harness import BINARY, BUILD, Engine

UNIT_MUST = ["Type=notify", "LimitNOFILE=", "NoNewPrivileges=yes", "ProtectSystem=strict",
             "ExecReload=/bin/kill -HUP $MAINPID", "[Install]"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = tmp_path_factory.mktemp("install")
    p = subprocess.run(["meson", "install", "-C", BUILD, "--destdir", str(dest), "--no-rebuild",
                        "--quiet"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    return dest


def find(root, name):
    for d, _, files in os.walk(root):
        if name in files:
            return os.path.join(d, name)
    return None


def test_meson_install_layout(installed):
    for exe in ("ringcast", "ringcast-load", "ringcast-mcp"):
        path = find(installed, exe)
        assert path and os.access(path, os.X_OK), f"{exe} not installed"
        assert os.path.basename(os.path.dirname(path)) == "bin"
    unit = find(installed, "ringcast.service")
    assert unit and unit.endswith(os.path.join("lib", "systemd", "system", "ringcast.service"))
    ini = find(installed, "ringcast.ini")
    assert ini and ini.endswith(os.path.join("etc", "ringcast", "ringcast.ini"))
    text = open(unit).read()
    for must in UNIT_MUST:
        assert must in text, must
    assert "@" not in text.split("[Service]")[1].split("ExecReload")[0], "unsubstituted @var@"


def test_unit_passes_systemd_analyze_verify(installed, tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    unit = open(find(installed, "ringcast.service")).read()
    prefix_bin = os.path.dirname(find(installed, "ringcast"))
    # ExecStart must name an executable that exists: the one installed under the destdir.
    install_bin = prefix_bin[len(str(installed)):]
    unit = unit.replace(f"{install_bin}/ringcast ", f"{prefix_bin}/ringcast ")
    path = tmp_path / "ringcast.service"
    path.write_text(unit)
    p = subprocess.run([exe, "verify", "--man=no", str(path)], capture_output=True, text=True,
                       timeout=60)
    out = (p.stdout + p.stderr).strip()
    assert p.returncode == 0 and out == "", out
    # The check has teeth: a typo in a hardening option is reported.
    bad = tmp_path / "ringcast-bad.service"
    bad.write_text(unit.replace("NoNewPrivileges=yes", "NoNewPrivileges=maybe"))
    p = subprocess.run([exe, "verify", "--man=no", str(bad)], capture_output=True, text=True,
                       timeout=60)
    assert "NoNewPrivileges" in p.stdout + p.stderr or "boolean" in p.stdout + p.stderr


def test_engine_sd_notify(tmp_path):
    if b"libsystemd.so" not in open(BINARY, "rb").read():  # its DT_NEEDED entry
        pytest.skip("engine built without libsystemd (meson -Dsystemd=disabled or no "
                    "libsystemd-dev)")
    sock_path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(10)

    def next_msg():
        return dict(line.split("=", 1) for line in s.recv(4096).decode().splitlines())

    e = Engine(["--threads", "2"], env={"NOTIFY_SOCKET": sock_path})
    try:
        m = next_msg()
        assert m["READY"] == "1" and m["STATUS"].startswith("listening on ")
        e.signal(signal.SIGHUP)
        m = next_msg()
        assert m["RELOADING"] == "1" and int(m["MONOTONIC_USEC"]) > 0
        assert next_msg()["READY"] == "1"
        e.signal(signal.SIGTERM)
        m = next_msg()
        assert m["STOPPING"] == "1"
        assert e.wait() == 0
    finally:
        e.stop()
        s.close()
    e.check_clean_exit()
