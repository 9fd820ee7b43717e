"""A first run anywhere (issue 17): `headway`, `headway serve` and the subcommands end in one clear message with the
fix and a non-zero exit code — never a traceback — on each known failure, run as real subprocesses:

- no keychain: no session bus at all (DBUS_SESSION_BUS_ADDRESS removed from the child's environment),
- a busy port (a socket this test holds), with and without a display,
- an invalid settings file with no good settings to fall back on,
- permission denied on HEADWAY_HOME (the CLI run as an unprivileged user with setpriv),
- an unknown error: a short message and a crash report, redacted.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from proxy.config.paths import Paths, write_private_file
from tray.failures import PortBusy, explain, handle

ROOT = Path(__file__).resolve().parents[2]
SECRET = "sk-ant-api03-" + "s" * 30


def run(
    *args: str,
    env: Mapping[str, str] | None = None,
    drop: tuple[str, ...] = (),
    timeout: float = 30,
    prefix: tuple[str, ...] = (),
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in drop}
    environ.update(env or {})
    return subprocess.run(
        [*prefix, sys.executable, "-m", "tray", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        cwd=ROOT,
        start_new_session=True,
        check=False,
        input=input,
    )


def clear_failure(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """A non-zero exit, no traceback anywhere, and each needle in what the user saw."""
    seen = result.stdout + result.stderr
    assert result.returncode != 0, seen
    assert "Traceback" not in seen, seen
    for needle in needles:
        assert needle in seen, seen
    return seen


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


NO_BUS = ("DBUS_SESSION_BUS_ADDRESS",)


# --------------------------------------------------------------------------- no keychain


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("serve",),
        ("key",),
        ("accounts", "add", "anthropic", "--label", "main", "--api-key-stdin"),
        ("configure", "claude-code"),
    ],
    ids=lambda a: " ".join(a) or "headway",
)
def test_no_keychain_is_one_clear_message_naming_the_real_options(
    paths: Paths, args: tuple[str, ...]
) -> None:
    result = run(*args, drop=NO_BUS, input=SECRET + "\n", timeout=30)
    seen = clear_failure(result, "no secure keychain", "gnome-keyring", "headway secrets backend file")
    assert SECRET not in seen
    assert seen.count("no secure keychain") == 1


def test_no_keychain_then_the_file_backend_as_the_message_says(paths: Paths, busy_port: int) -> None:
    chosen = run("secrets", "backend", "file", drop=NO_BUS)
    assert chosen.returncode == 0, chosen.stderr
    assert "NOT encrypted" in chosen.stdout
    assert json.loads(paths.settings_file.read_text())["secrets"]["backend"] == "file"
    key = run("key", drop=NO_BUS)
    assert key.returncode == 0 and key.stdout.startswith("hw-"), key.stderr
    assert stat.S_IMODE(paths.secrets_file.stat().st_mode) == 0o600


def test_doctor_without_a_keychain(paths: Paths) -> None:
    result = run("doctor", "--json", drop=NO_BUS)
    assert result.returncode == 1, result.stderr
    checks = json.loads(result.stdout)
    assert all(set(c) == {"check", "status", "detail", "fix"} for c in checks)
    keychain = next(c for c in checks if c["check"] == "keychain")
    assert keychain["status"] == "fail"
    assert "no secure keychain" in keychain["detail"]
    assert "headway secrets backend file" in keychain["fix"] and "gnome-keyring" in keychain["fix"]
    names = {c["check"] for c in checks}
    assert {
        "settings file",
        "headway home",
        "gateway port",
        "running instance",
        "autostart",
        "accounts",
    } <= names
    notifications = [c for c in checks if c["check"] in ("notifications", "display")]
    assert notifications and all(c["status"] == "warn" for c in notifications)  # no display, no bus here


@pytest.mark.keychain
def test_doctor_probes_the_real_keychain(paths: Paths) -> None:
    from tests.support.gateway import secret_service_available

    if not secret_service_available():
        pytest.skip("no Secret Service on the session bus (run through scripts/test)")
    result = run("doctor")
    line = next(line for line in result.stdout.splitlines() if " keychain " in line)
    assert line.startswith("[ok  ]"), result.stdout
    assert "GNOME Keyring" in line and "probe ok" in line  # the Secret Service here is gnome-keyring


# --------------------------------------------------------------------------- busy port


def test_serve_on_a_busy_port_names_the_port_and_who_holds_it(file_home: Paths, busy_port: int) -> None:
    started = time.monotonic()
    result = run("serve", "--port", str(busy_port))
    assert time.monotonic() - started < 5 + 3  # interpreter start-up included
    seen = clear_failure(
        result, f"port {busy_port} on 127.0.0.1 is already in use", f"pid {os.getpid()}", "--port"
    )
    log = (file_home.log_dir / "headway.log").read_text()
    assert "Traceback" in log and str(busy_port) in log  # the details are in the log file
    assert str(file_home.log_dir / "headway.log") in seen


def test_serve_on_an_address_it_cannot_have(file_home: Paths) -> None:
    # TEST-NET-1: never an address of this machine (and not loopback: allowed explicitly, as for a team gateway)
    result = run("serve", "--host", "192.0.2.1", "--allow-remote")
    clear_failure(result, "cannot listen on 192.0.2.1:", "--host")


def test_tray_launch_on_a_busy_port_without_a_display(file_home: Paths, busy_port: int) -> None:
    write_private_file(
        file_home.settings_file,
        json.dumps({"secrets": {"backend": "file"}, "gateway": {"port": busy_port}}).encode(),
    )
    result = run(drop=("DISPLAY", "WAYLAND_DISPLAY"))
    clear_failure(result, f"port {busy_port}", "already in use")


def test_tray_launch_on_a_busy_port_with_a_display_also_notifies(
    file_home: Paths, busy_port: int, tmp_path: Path
) -> None:
    """A launch at login has no terminal: the failure is also a desktop notification (a recording notify-send)."""
    write_private_file(
        file_home.settings_file,
        json.dumps({"secrets": {"backend": "file"}, "gateway": {"port": busy_port}}).encode(),
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "notified.txt"
    tool = bin_dir / "notify-send"
    tool.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\n')
    tool.chmod(0o755)
    # a display nobody serves: the tray cannot start, Headway goes headless, then meets the busy port; no session
    # bus, so the notification goes through notify-send (the D-Bus path is tested in test_doctor_desktop.py)
    env = {"DISPLAY": ":79", "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = run(env=env, drop=NO_BUS)
    clear_failure(result, f"port {busy_port}")
    shown = record.read_text()
    assert "Headway could not start" in shown and f"port {busy_port}" in shown


def test_doctor_names_the_process_on_a_busy_port(file_home: Paths, busy_port: int) -> None:
    write_private_file(
        file_home.settings_file,
        json.dumps({"secrets": {"backend": "file"}, "gateway": {"port": busy_port}}).encode(),
    )
    result = run("doctor", "--json")
    gateway = next(c for c in json.loads(result.stdout) if c["check"] == "gateway port")
    assert gateway["status"] == "fail"
    assert (
        f"127.0.0.1:{busy_port} is in use by" in gateway["detail"]
        and f"pid {os.getpid()}" in gateway["detail"]
    )
    assert "gateway.port" in gateway["fix"]
    assert result.returncode == 1


# --------------------------------------------------------------------------- invalid settings, no display


def test_invalid_settings_with_nothing_good_to_run_on(paths: Paths) -> None:
    paths.ensure()
    write_private_file(paths.settings_file, b'{"gateway": {"port": "many"}}\n')
    for args in ((), ("serve",)):
        result = run(*args, drop=("DISPLAY", "WAYLAND_DISPLAY"))
        clear_failure(result, "cannot be used", "gateway.port", "headway settings check")
    doctor = run("doctor", "--json")
    assert doctor.returncode == 1
    found = next(c for c in json.loads(doctor.stdout) if c["check"] == "settings file")
    assert found["status"] == "fail" and "gateway.port" in found["detail"]


def test_doctor_without_a_display_warns_and_passes(file_home: Paths) -> None:
    result = run("doctor", drop=("DISPLAY", "WAYLAND_DISPLAY"))
    assert "[warn] display" in result.stdout, result.stdout
    assert "runs headless" in result.stdout
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- permission denied


@pytest.mark.skipif(
    not hasattr(os, "getuid") or os.getuid() != 0 or not shutil.which("setpriv"),
    reason="needs root and setpriv",
)
def test_permission_denied_on_headway_home(tmp_path: Path) -> None:
    """Root ignores file modes, so the CLI runs as `nobody` against a home inside a root-only folder."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    env = {"HEADWAY_HOME": str(locked / "hw"), "HOME": str(locked)}
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    for args in (("serve",), ("accounts", "list")):
        result = run(*args, env=env, prefix=prefix)
        clear_failure(result, "permission denied", "HEADWAY_HOME")
    doctor = run("doctor", "--json", env=env, prefix=prefix)
    home = next(c for c in json.loads(doctor.stdout) if c["check"] == "headway home")
    assert home["status"] == "fail", doctor.stdout


def test_an_upstream_variable_that_would_send_keys_unencrypted_is_explained(file_home: Paths) -> None:
    """Before, a plain http:// HEADWAY_*_BASE_URL to another machine was used; and any bad variable was reported as
    "the settings file environment cannot be used", with a fix about the settings file."""
    result = run("serve", "--port", "0", env={"HEADWAY_OPENAI_BASE_URL": "http://llm-gateway.example/v1"})
    seen = clear_failure(
        result,
        "an environment variable Headway reads cannot be used",
        "HEADWAY_OPENAI_BASE_URL: http:// to llm-gateway.example would send",
        "change the variable, or unset it",
    )
    assert "settings file environment" not in seen


# --------------------------------------------------------------------------- a full disk


def test_a_full_disk_is_explained_and_the_settings_are_left_as_they_were(file_home: Paths) -> None:
    """The kernel's own "file too large" (a 100-byte file size limit; Python ignores SIGXFSZ) stands in for a full
    disk: the same failed write. Before: "unexpected error: OSError: [Errno 28] No space left on device" and a crash
    report, because a failed write names no file."""
    before = file_home.settings_file.read_bytes()
    limited = ("prlimit", "--fsize=100")
    commands = (
        (("dumps", "on"), None),
        (
            ("accounts", "add", "anthropic", "--label", "second", "--api-key-stdin"),
            "sk-ant-api03-" + "x" * 40 + "\n",
        ),
    )
    for args, typed in commands:
        result = run(*args, prefix=limited, input=typed)
        seen = clear_failure(
            result, f"cannot write {file_home.settings_file}: File too large", "free some space"
        )
        assert "unexpected error" not in seen and "crash" not in seen
    assert file_home.settings_file.read_bytes() == before
    assert not [p.name for p in file_home.settings_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_folder_that_cannot_take_the_new_file_is_named_by_the_file_not_written(tmp_path: Path) -> None:
    """Creating the temp file failed (here: its folder is a file; a read-only folder the same way) and the message
    named ``.settings.json.<pid>.tmp``, a file the user never heard of."""
    not_a_folder = tmp_path / "config"
    not_a_folder.write_text("")
    target = not_a_folder / "settings.json"
    with pytest.raises(OSError) as raised:
        write_private_file(target, b"{}")
    assert raised.value.filename == str(target)
    failure = explain(raised.value)
    assert failure is not None and failure.message.startswith(f"cannot use {target}: ")


def test_a_read_only_file_system_is_explained_as_such() -> None:
    """A settings file linked into a read-only store (Home Manager's): the fix used to say "free some space"."""
    error = OSError(errno.EROFS, os.strerror(errno.EROFS), "/nix/store/abc-headway/settings.json")
    failure = explain(error)
    assert failure is not None
    assert failure.message == "cannot write /nix/store/abc-headway/settings.json: Read-only file system"
    assert "read-only file system" in failure.fix and "free some space" not in failure.fix
    assert "the file was left as it was" in failure.fix


# --------------------------------------------------------------------------- unknown errors (in process)


def test_an_unknown_error_is_a_short_message_and_a_redacted_crash_report(file_home: Paths) -> None:
    try:
        raise RuntimeError(f"something odd with key {SECRET}")
    except RuntimeError as exc:
        error = exc
    out = io.StringIO()
    code = handle(error, file_home, stream=out)
    assert code == 2
    text = out.getvalue()
    assert "unexpected error: RuntimeError" in text and "Traceback" not in text and SECRET not in text
    report = Path(text.split("the full report is in ", 1)[1].split(" ", 1)[0])
    assert report.parent == file_home.log_dir
    content = report.read_text()
    assert "Traceback" in content and "test_an_unknown_error" in content and SECRET not in content
    assert stat.S_IMODE(report.stat().st_mode) == 0o600


def test_a_request_log_that_cannot_be_read_does_not_stop_the_gateway(file_home: Paths) -> None:
    """Before: "unexpected error: RequestLogError … file is not a database" and a crash report; agents got nothing."""
    from tests.support.gateway import start_gateway_process

    junk = b"not a database: " + bytes(range(256)) * 16
    file_home.request_log.parent.mkdir(parents=True, exist_ok=True)
    file_home.request_log.write_bytes(junk)
    offline = run("usage")  # a reader says what is wrong and what will mend it, and leaves the file alone
    clear_failure(offline, "file is not a database", "keeps the file aside and starts a new log")
    assert file_home.request_log.read_bytes() == junk
    gateway = start_gateway_process()
    try:
        assert "kept it as" in gateway.output() and "Traceback" not in gateway.output()
        aside = next(file_home.request_log.parent.glob("requests.sqlite3.unreadable-*"))
        assert aside.read_bytes() == junk
        status = run("status")
        assert status.returncode == 0, status.stderr
        shown = " ".join(status.stdout.split())
        assert "Request log: the old one could not be read; it is kept as" in shown
        assert str(aside) in "".join(
            status.stdout.split()
        )  # (a path longer than the line is broken to fit 80)
        data = json.loads(run("status", "--json").stdout)
        assert data["request_log_set_aside"] == str(aside)
    finally:
        assert gateway.stop() == 0


def test_a_request_log_from_a_newer_headway_is_explained(file_home: Paths) -> None:
    import sqlite3

    file_home.request_log.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(file_home.request_log) as conn:
        conn.execute("PRAGMA user_version = 999")
    result = run("serve", "--port", "0")
    seen = clear_failure(
        result, "newer than this Headway understands", "upgrade Headway, or move the file aside"
    )
    assert "unexpected error" not in seen and "crash" not in seen


def test_known_failures_are_explained() -> None:
    busy = explain(PortBusy("127.0.0.1", 7337))
    assert busy is not None and "port 7337 on 127.0.0.1" in busy.message and "--port" in busy.fix
    assert explain(RuntimeError("x")) is None
    denied = explain(PermissionError(13, "Permission denied", "/srv/headway/config"))
    assert denied is not None and "/srv/headway/config" in denied.message and "HEADWAY_HOME" in denied.fix


def test_a_reader_that_goes_away_is_no_crash(paths: Paths) -> None:
    """`headway settings schema | head -1`: the pipe closes early; no crash report, no message."""
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tray", "settings", "schema"],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write)
    assert result.returncode == 1
    assert result.stderr == ""
    assert not list(paths.log_dir.glob("headway-crash-*")) if paths.log_dir.exists() else True
