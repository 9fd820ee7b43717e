"""The keychain going away under a running Headway, against a real gnome-keyring-daemon on a D-Bus session bus of the
test's own: every get, set and delete fails as a KeychainError that says what happened (before, the Secret Service
client's own exceptions came out raw when the session bus was gone, and the callers that keep the last good value
on a KeychainError crashed instead), and a keyring daemon that comes back serves what was stored."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.support.python_json import run_python_json

pytestmark = pytest.mark.keychain

# A session bus with no service activation: a daemon that is gone stays gone (the standard session bus would start a
# new, locked one on the next call).
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir={dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

# argv: the bus config file, the daemon's log
_SCRIPT = r"""
import json, os, signal, subprocess, sys, time
from pathlib import Path

config, log = sys.argv[1], Path(sys.argv[2])
bus = subprocess.Popen(
    ["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={config}", "--print-address=1"],
    stdout=subprocess.PIPE, text=True,
)
os.environ["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().strip()

from proxy.secrets.keychain import Keychain, KeychainError
from tests.support.keyring_daemon import owner_pid


def start_daemon():
    daemon = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--replace", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )
    daemon.stdin.write(b"pw"); daemon.stdin.close()
    deadline = time.monotonic() + 20
    while owner_pid() != daemon.pid:
        assert daemon.poll() is None and time.monotonic() < deadline, "the daemon did not start"
        time.sleep(0.05)
    return daemon


def each_call(kc):
    out = {}
    for name, call in (
        ("get", lambda: kc.get("account:work")),
        ("set", lambda: kc.set("account:other", "sk-other")),
        ("delete", lambda: kc.delete("account:work")),
    ):
        try:
            out[name] = ["ok", call()]
        except KeychainError as exc:
            out[name] = ["KeychainError", str(exc)]
        except Exception as exc:  # what must not happen: a raw error from under the keychain
            out[name] = [f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc)]
    return out


daemon = start_daemon()
kc = Keychain("headway-outage-test")
kc.set("account:work", "sk-ant-work-secret")
out = {"before": kc.get("account:work")}

daemon.kill(); daemon.wait()
out["daemon_gone"] = each_call(kc)

daemon = start_daemon()
out["daemon_back"] = kc.get("account:work")

bus.kill(); bus.wait()
out["bus_gone"] = each_call(kc)
daemon.kill(); daemon.wait()
print(json.dumps(out))
"""


def test_every_call_fails_as_a_keychain_error_when_the_keychain_goes_away(tmp_path: Path) -> None:
    if shutil.which("gnome-keyring-daemon") is None or shutil.which("dbus-daemon") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must have gnome-keyring and dbus (scripts/install-test-deps installs them)")
        pytest.skip("gnome-keyring-daemon or dbus-daemon is not installed")
    bus_dir = tmp_path / "bus"
    bus_dir.mkdir(mode=0o700)
    config = tmp_path / "bus.conf"
    config.write_text(_BUS_CONFIG.format(dir=bus_dir))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DBUS_SESSION_BUS_ADDRESS", "GNOME_KEYRING_CONTROL", "PYTHON_KEYRING_BACKEND")
    }
    env |= {
        "HOME": str(tmp_path / "home"),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.SecretService.Keyring",
    }
    log = tmp_path / "gnome-keyring.log"
    out: dict[str, Any] = run_python_json(
        _SCRIPT, str(config), str(log), env=env, timeout=90, more_output=log
    )

    assert out["before"] == "sk-ant-work-secret"
    for outage in ("daemon_gone", "bus_gone"):
        for call, (kind, message) in out[outage].items():
            assert kind == "KeychainError", (outage, call, kind, message)
            assert "keychain" in message, (outage, call, message)
    assert out["bus_gone"]["get"][1].startswith("cannot read 'account:work' from the keychain: ")
    assert out["bus_gone"]["set"][1].startswith("cannot store 'account:other' in the keychain: ")
    assert out["bus_gone"]["delete"][1].startswith("cannot delete 'account:work' from the keychain: ")
    # the daemon's outage lost nothing: the one that came back serves the stored secret from the same keyring
    assert out["daemon_back"] == "sk-ant-work-secret"
