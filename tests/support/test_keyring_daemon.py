"""The run's keyring-daemon watch (tests/support/keyring_daemon.py) against a real gnome-keyring-daemon on a D-Bus
session of its own: a daemon that aborts is reported with the test during which it died, and a fresh one takes over
the same login keyring, unlocked (before, D-Bus activation started a locked one and every later keychain test
failed)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.python_json import run_python_json

# Runs inside its own `dbus-run-session`. argv: the log path, then "replace" or "no-daemon-binary".
_SCRIPT = r"""
import json, os, pathlib, signal, subprocess, sys, time
from keyring.backends import SecretService
from tests.support.keyring_daemon import KeyringDaemonWatch, alive, owner_pid

log, how = pathlib.Path(sys.argv[1]), sys.argv[2]
daemon = subprocess.Popen(
    ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
    stdin=subprocess.PIPE, stdout=log.open("ab"), stderr=subprocess.STDOUT,
)
daemon.stdin.write(b"pw"); daemon.stdin.close()
while owner_pid() != daemon.pid:
    assert daemon.poll() is None, "the daemon did not start"
    time.sleep(0.05)
watch = KeyringDaemonWatch(daemon.pid, log, "pw")
kr = SecretService.Keyring()
kr.set_password("watch-test", "key", "s3cret")
out = {"first": daemon.pid}
watch.check("a test that left it alone")
out["deaths_while_alive"] = list(watch.deaths)
with log.open("a") as said:  # stands in for the daemon's last words, which its log keeps
    said.write("gnome-keyring-daemon: last words\n")
os.kill(daemon.pid, signal.SIGKILL)  # the real ones abort; no core file here
daemon.wait()  # reaped here; under scripts/test it stays a zombie until pytest ends, which alive() also sees
out["alive_after_abort"] = alive(daemon.pid)
if how == "no-daemon-binary":
    os.environ["PATH"] = "/nonexistent"
    watch.check("the test that killed it")
    watch.check("the next test")  # given up: no second try, no second report
    out["deaths"], out["given_up"] = watch.deaths, watch.given_up
    print(json.dumps(out))
    sys.exit(0)
watch.check("the test that killed it")
out["replacement"] = watch.pid
out["after"] = kr.get_password("watch-test", "key")
out["owner"] = owner_pid()
out["deaths"] = watch.deaths
watch.close()
print(json.dumps(out))
"""


def _run(tmp_path: Path, how: str = "replace") -> dict[str, Any]:
    if shutil.which("gnome-keyring-daemon") is None or shutil.which("dbus-run-session") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have gnome-keyring and dbus (scripts/install-test-deps installs them)")
        pytest.skip("gnome-keyring-daemon or dbus-run-session is not installed")
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {
        k: v for k, v in os.environ.items() if k not in ("DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL")
    }
    env |= {
        "HOME": str(tmp_path / "home"),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    log = tmp_path / "gnome-keyring.log"
    return run_python_json(
        _SCRIPT, str(log), how, env=env, timeout=90, prefix=("dbus-run-session", "--"), more_output=log
    )


def test_a_daemon_that_dies_is_reported_with_its_test_and_replaced_unlocked(tmp_path: Path) -> None:
    out = _run(tmp_path)
    assert out["deaths_while_alive"] == [] and out["alive_after_abort"] is False
    assert len(out["deaths"]) == 1
    death = out["deaths"][0]
    assert death.startswith("during or just before the test that killed it: gone")
    assert death.endswith("gnome-keyring-daemon: last words")  # the tail of the daemon's log
    # the fresh daemon owns the name and opened the same login keyring, unlocked: the secret reads back
    assert out["owner"] == out["replacement"] != out["first"]
    assert out["after"] == "s3cret"


def test_a_daemon_that_cannot_be_replaced_is_reported_once_and_the_run_goes_on(tmp_path: Path) -> None:
    out = _run(tmp_path, "no-daemon-binary")
    assert out["given_up"] is True and len(out["deaths"]) == 2
    assert out["deaths"][0].startswith("during or just before the test that killed it: gone")
    assert out["deaths"][1].startswith("no fresh daemon could be started: ")


def test_alive_tells_a_running_process_from_a_zombie_and_from_none() -> None:
    from tests.support.keyring_daemon import alive

    running = subprocess.Popen(["sleep", "30"])
    ended = subprocess.Popen(["true"])
    try:
        assert alive(running.pid)
        while Path(f"/proc/{ended.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            pass  # not reaped yet: a zombie, as scripts/test's daemon is when it dies mid-run
        assert not alive(ended.pid)
        ended.wait()
        assert not alive(ended.pid)
    finally:
        running.kill()
        running.wait()
        ended.wait()


def test_the_run_is_watched_under_scripts_test(request: pytest.FixtureRequest) -> None:
    watched = request.config.pluginmanager.get_plugin("headway-keyring-daemon") is not None
    if os.environ.get("CI") != "true" and not watched:
        pytest.skip("pytest was not started by scripts/test")
    assert watched, "CI runs the tests through scripts/test, which has the keyring daemon watched"
