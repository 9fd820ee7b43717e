"""A real gnome-keyring-daemon on a D-Bus session bus of its own, for tests that treat the Secret Service roughly:
kill its clients in the middle of a call (tests/reliability/test_crash_points.py), or take the daemon or the bus away
(tests/proxy/secrets/test_keychain_outage.py).

Those tests used the run's daemon (the one scripts/test starts). gnome-keyring 42 can abort when a client is killed
mid-call (`gkd_secret_service_get_pkcs11_session: assertion 'client' failed`, then GLib's "Bail out"), and once it
stayed alive with its default alias naming a collection that does not exist. Either way the run's daemon was gone or
wrong for every later test, and before the watch replaced it D-Bus activation started a locked one. Here the damage
stays inside the test that did it, and :meth:`PrivateSecretService.mend` restarts the daemon on the same keyring
files, unlocked, so what Headway stored is read back from disk.

The bus has no service activation: a daemon that is gone stays gone until the test starts one (the standard session
bus would start a new, locked daemon on the next call).
"""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from tests.support.keyring_daemon import alive, log_tail, secret_service_problem, start_keyring_daemon

__all__ = [
    "PrivateSecretService",
    "private_secret_service_available",
    "require_private_secret_service",
    "used_by_this_process",
]

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


def private_secret_service_available() -> bool:
    """Whether gnome-keyring-daemon and dbus-daemon are installed. In CI a missing one fails the test
    (scripts/install-test-deps installs both); elsewhere the caller skips or falls back."""
    missing = [name for name in ("gnome-keyring-daemon", "dbus-daemon") if shutil.which(name) is None]
    if missing and os.environ.get("CI") == "true":
        pytest.fail(f"CI must have {' and '.join(missing)} (scripts/install-test-deps installs them)")
    return not missing


def require_private_secret_service() -> None:
    """Skip when gnome-keyring-daemon or dbus-daemon is missing; in CI, fail."""
    if not private_secret_service_available():
        pytest.skip("gnome-keyring-daemon or dbus-daemon is not installed")


class PrivateSecretService:
    """A D-Bus session bus and a gnome-keyring-daemon on it, with their files under ``root``.

    ``address`` is the bus for clients (``DBUS_SESSION_BUS_ADDRESS``); ``mends`` lists what :meth:`mend` found."""

    def __init__(self, root: Path, password: str = "headway-test") -> None:
        self.root = root
        self.password = password
        self.log = root / "gnome-keyring.log"
        self.mends: list[str] = []
        self.address = ""
        self._bus: subprocess.Popen[str] | None = None
        self._daemon: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._mending = threading.Lock()

    def __enter__(self) -> PrivateSecretService:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        bus_dir = self.root / "bus"
        for folder in (bus_dir, self.root / "runtime", self.root / "home", self.root / "data"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        config = self.root / "bus.conf"
        config.write_text(_BUS_CONFIG.format(dir=bus_dir))
        self._bus = subprocess.Popen(
            ["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={config}", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # "Failed to set fd limit" as non-root-in-a-container: noise
            text=True,
            start_new_session=True,
        )
        assert self._bus.stdout is not None
        self.address = self._bus.stdout.readline().strip()
        if not self.address:
            raise RuntimeError(f"dbus-daemon did not start (exit status {self._bus.poll()})")
        self._log_file = self.log.open("ab")
        self.start_daemon()

    def start_daemon(self) -> None:
        """Start a daemon that takes the Secret Service over on this bus and unlocks the same login keyring."""
        old = self._daemon
        assert self._log_file is not None
        self._log_file.write(b"\n--- starting gnome-keyring-daemon ---\n")
        self._log_file.flush()
        env = {k: v for k, v in os.environ.items() if k != "GNOME_KEYRING_CONTROL"}
        env |= {
            "DBUS_SESSION_BUS_ADDRESS": self.address,
            "HOME": str(self.root / "home"),
            "XDG_RUNTIME_DIR": str(self.root / "runtime"),
            "XDG_DATA_HOME": str(self.root / "data"),  # the keyring files
        }
        daemon = start_keyring_daemon(
            self.password,
            self._log_file,
            cwd=self.root,
            timeout=20,
            why=f"gnome-keyring-daemon did not take the Secret Service over; see {self.log}",
            env=env,
            bus=self.address,
        )
        self._daemon = daemon
        if old is not None:
            _stop(old)

    @property
    def daemon_pid(self) -> int | None:
        return self._daemon.pid if self._daemon is not None else None

    def kill_daemon(self) -> None:
        if self._daemon is not None:
            self._daemon.kill()
            self._daemon.wait()

    def stop_bus(self) -> None:
        if self._bus is not None:
            self._bus.kill()
            self._bus.wait()

    def problem(self) -> str | None:
        """What is wrong with the daemon (gone, or its default collection does not answer), or None when sound."""
        if self._daemon is None or not alive(self._daemon.pid):
            status = self._daemon.poll() if self._daemon is not None else None
            return f"gnome-keyring-daemon is gone (exit status {status})"
        try:
            return secret_service_problem(bus=self.address)
        except (OSError, ConnectionError) as exc:
            return f"the bus does not answer: {exc}"

    def mend(self, why: str) -> bool:
        """After a keychain call failed: when the daemon went wrong (gone, or a broken default collection), start a
        fresh one on the same keyring files and return True (read again). False when it is sound: the failure is
        real. Safe from several threads: a second caller finds the fresh daemon sound."""
        with self._mending:
            problem = self.problem()
            if problem is None:
                return False
            self.mends.append(f"{why}: {problem}\n{log_tail(self.log)}")
            self.start_daemon()
            return True

    def close(self) -> None:
        # keyring's Secret Service backend leaves its D-Bus connection to the garbage collector when opening the
        # collection fails (the daemon or the bus gone): collected here, quietly, not in whichever test runs next.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        if self._daemon is not None:
            _stop(self._daemon)
        if self._bus is not None:
            _stop(self._bus)
        if self._log_file is not None:
            self._log_file.close()


@contextmanager
def used_by_this_process(root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateSecretService]:
    """A private Secret Service under ``root``, with this process's session bus and keyring backend pointed at it
    (and both given back after)."""
    import keyring
    from keyring.backends import SecretService

    with PrivateSecretService(root) as service:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", service.address)
        previous = keyring.get_keyring()
        keyring.set_keyring(SecretService.Keyring())  # type: ignore[no-untyped-call]
        try:
            yield service
        finally:
            keyring.set_keyring(previous)


def _stop(process: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
