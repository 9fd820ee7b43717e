"""The test run's gnome-keyring-daemon (scripts/test starts one, unlocked), kept usable for the whole run.

gnome-keyring 42 (Debian 12) can abort while it answers a client that has just gone away (GLib
``invoke_get_property_in_idle_cb: assertion failed``, after ``gkd_secret_service_get_pkcs11_session: assertion
'client' failed``; the same crash is reported upstream against later versions). keyring's Secret Service backend
opens and closes a D-Bus connection for every secret it reads or writes; a loop of such reads and writes here killed
the daemon once in about 550 pairs (and not in 7400 more). A whole run does thousands. Two CI runs lost their daemon
midway; the second kept its log, which showed this abort while test_crash_points killed `headway` processes with
kill -9 in the middle of keychain calls. D-Bus activation then started a second daemon for the next caller, whose
login keyring is locked and which has no prompter, and every keychain test after that point failed: six failures
for one crash.

After every test :class:`KeyringDaemonWatch` checks the daemon is still there. When it is gone, the watch notes the
test during which it went and the tail of its log (scripts/test now keeps it), and starts a fresh daemon that takes
the bus name over (``--replace``) and unlocks the same login keyring with the same password: every stored secret
stays, and the rest of the run means something. The summary reports it. A death does not by itself fail the run: the
test that was using the keychain at that moment fails on its own, and the others are not made to fail for it.

Tests that kill Secret Service clients mid-call or take the daemon away use a daemon of their own
(tests/support/private_keyring.py), so the run's daemon is not exposed to that bug on purpose.

scripts/test passes ``HEADWAY_TEST_KEYRING_PID``, ``HEADWAY_TEST_KEYRING_LOG`` and ``HEADWAY_TEST_KEYRING_PASSWORD``;
without them (pytest run by hand) there is nothing to watch.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

__all__ = [
    "KeyringDaemonWatch",
    "alive",
    "log_tail",
    "owner_pid",
    "secret_service_problem",
    "start_keyring_daemon",
]

_SECRETS = "org.freedesktop.secrets"


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (not gone, not a zombie its parent has yet to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def log_tail(log: Path, lines: int = 15) -> str:
    """The last ``lines`` of a daemon's log, indented, for a report."""
    try:
        text = log.read_text(errors="replace")
    except OSError as exc:
        return f"  (its log {log} cannot be read: {exc})"
    return "\n".join("  " + line for line in text.splitlines()[-lines:])


def owner_pid(name: str = _SECRETS, *, bus: str = "SESSION") -> int | None:
    """The PID of the process that owns ``name`` on the session bus (or the bus at address ``bus``), or None when
    nobody does."""
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    daemon = DBusAddress(
        "/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus"
    )
    with open_dbus_connection(bus) as conn:
        reply = conn.send_and_get_reply(
            new_method_call(daemon, "GetConnectionUnixProcessID", "s", (name,)), timeout=5
        )
    if reply.header.message_type == MessageType.error:
        return None
    return int(reply.body[0])


def secret_service_problem(*, bus: str = "SESSION") -> str | None:
    """What is wrong with the Secret Service's default collection, or None when it answers soundly. (A gnome-keyring
    42 daemon whose client was killed mid-call was seen with its default alias pointing at a collection that does not
    exist, garbage for a name; every caller then got "Prompt dismissed" from an attempt to create it.)"""
    from jeepney import DBusAddress, MessageType, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    service = DBusAddress(
        "/org/freedesktop/secrets", bus_name=_SECRETS, interface="org.freedesktop.Secret.Service"
    )
    with open_dbus_connection(bus) as conn:
        reply = conn.send_and_get_reply(new_method_call(service, "ReadAlias", "s", ("default",)), timeout=5)
        if reply.header.message_type == MessageType.error:
            return f"ReadAlias failed: {reply.body}"
        path = reply.body[0]
        if path == "/":
            return "no default collection"
        props = DBusAddress(path, bus_name=_SECRETS, interface="org.freedesktop.DBus.Properties")
        label = conn.send_and_get_reply(
            new_method_call(props, "Get", "ss", ("org.freedesktop.Secret.Collection", "Label")), timeout=5
        )
        if label.header.message_type == MessageType.error:
            return f"the default alias points at {path}, which does not answer: {label.body}"
    return None


def start_keyring_daemon(
    password: str,
    log_file: IO[bytes],
    *,
    cwd: Path,
    timeout: float,
    why: str,
    env: Mapping[str, str] | None = None,
    bus: str = "SESSION",
) -> subprocess.Popen[bytes]:
    """A gnome-keyring-daemon (secrets only) that takes the Secret Service over on ``bus`` (``--replace``) and unlocks
    the login keyring with ``password``, once it owns the name; RuntimeError(``why``) when it does not in time. Its
    output goes to ``log_file``; ``cwd`` is where a core file it leaves would land, beside its log."""
    child = subprocess.Popen(
        ["gnome-keyring-daemon", "--replace", "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,  # out of reach of any test that signals a process group
    )
    assert child.stdin is not None
    child.stdin.write(password.encode())
    child.stdin.close()
    deadline = time.monotonic() + timeout
    while owner_pid(bus=bus) != child.pid:
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(why)
        time.sleep(0.05)
    return child


@dataclass(eq=False)  # a pytest plugin: hashed by identity
class KeyringDaemonWatch:
    """Keeps the run's Secret Service alive and unlocked (see the module's docstring)."""

    pid: int
    log: Path
    password: str
    deaths: list[str] = field(default_factory=list)
    given_up: bool = False
    _child: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = None

    @classmethod
    def from_environment(cls) -> KeyringDaemonWatch | None:
        pid = os.environ.get("HEADWAY_TEST_KEYRING_PID")
        if not pid:
            return None
        return cls(
            int(pid),
            Path(os.environ["HEADWAY_TEST_KEYRING_LOG"]),
            os.environ["HEADWAY_TEST_KEYRING_PASSWORD"],
        )

    # --- the look after each test

    def check(self, during: str) -> None:
        if self.given_up or alive(self.pid):
            return
        self.deaths.append(f"during or just before {during}: gone{self._exit_status()}\n{log_tail(self.log)}")
        try:
            self.replace()
        except (OSError, RuntimeError) as exc:  # the run goes on; its keychain tests will say the rest
            self.given_up = True
            self.deaths.append(f"no fresh daemon could be started: {exc}")

    def replace(self) -> None:
        """Start a fresh daemon that takes the bus name over and unlocks the same login keyring."""
        old = self._child
        if self._log_file is None:
            self._log_file = self.log.open("ab")
        self._log_file.write(f"\n--- replacing gnome-keyring-daemon {self.pid} ---\n".encode())
        self._log_file.flush()
        child = start_keyring_daemon(
            self.password,
            self._log_file,
            cwd=self.log.parent,
            timeout=15,
            why=f"a fresh gnome-keyring-daemon did not take over the Secret Service; see {self.log}",
        )
        self._child, self.pid = child, child.pid
        if old is not None:  # it exits once replaced; reap it
            try:
                old.wait(timeout=10)
            except subprocess.TimeoutExpired:
                old.kill()
                old.wait()

    def close(self) -> None:
        if self._child is not None:
            self._child.terminate()
            try:
                self._child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
        if self._log_file is not None:
            self._log_file.close()

    def _exit_status(self) -> str:
        if self._child is not None and self._child.poll() is not None:
            return f" (exit status {self._child.returncode})"
        return ""  # scripts/test's own daemon: its parent reaps it and reports how it ended

    # --- pytest hooks

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logfinish(self, nodeid: str) -> None:
        self.check(nodeid)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.deaths:
            terminalreporter.write_line(
                "gnome-keyring-daemon: alive through the run (tests/support/keyring_daemon.py)"
            )
            return
        terminalreporter.write_sep(
            "!", "the test run's gnome-keyring-daemon died; a fresh one took over", red=True
        )
        for death in self.deaths:
            terminalreporter.write_line(death)
        terminalreporter.write_line(f"its whole log: {self.log} (scripts/test keeps a copy)")

    def pytest_unconfigure(self) -> None:
        self.close()
