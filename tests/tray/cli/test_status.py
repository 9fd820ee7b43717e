"""`headway status` says what is wrong when the running instance cannot be asked (instead of "not running"), shows
the engine's listen_error, and `usage` / `analyze` refuse a meaningless --days."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from proxy.config.paths import Paths, write_private_file
from tray.cli.status import format_status

ROOT = Path(__file__).resolve().parents[3]


def run(
    *args: str, drop: tuple[str, ...] = (), env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in drop}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tray", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
        cwd=ROOT,
        start_new_session=True,
        check=False,
    )


@pytest.fixture
def paths(headway_home: Path) -> Paths:
    paths = Paths.from_env()
    paths.ensure()
    return paths


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers: a gateway whose /status hangs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _pretend_running(paths: Paths, port: int) -> None:
    runtime = {
        "pid": os.getpid(),
        "host": "127.0.0.1",
        "port": port,
        "url": f"http://127.0.0.1:{port}",
        "version": "0",
    }
    write_private_file(paths.runtime_file, json.dumps(runtime).encode())


def test_status_of_an_instance_that_does_not_answer(paths: Paths, silent_server: int) -> None:
    write_private_file(paths.settings_file, b'{"secrets": {"backend": "file"}}\n')
    _pretend_running(paths, silent_server)
    started = time.monotonic()
    result = run("status")
    assert time.monotonic() - started < 30
    assert result.returncode == 0, result.stderr
    summary, first, problem = result.stdout.splitlines()[:3]
    assert "not running" not in result.stdout
    assert summary.startswith("? No accounts yet")  # the summary line comes first
    assert f"running at http://127.0.0.1:{silent_server} (pid {os.getpid()})" in first
    assert "did not answer within 5 s" in problem
    data = json.loads(run("status", "--json").stdout)
    assert data["running"] is True and "did not answer" in data["status_error"]


def test_status_when_the_access_key_cannot_be_read(paths: Paths, silent_server: int) -> None:
    _pretend_running(paths, silent_server)  # the default (system) keychain, and no session bus to reach it
    result = run("status", drop=("DBUS_SESSION_BUS_ADDRESS",))
    assert result.returncode == 0, result.stderr
    assert "not running" not in result.stdout
    assert "cannot read the access key" in result.stdout.splitlines()[2]
    assert "Traceback" not in result.stderr


def _running(**problem: str) -> dict[str, object]:
    """A running instance's status, with no accounts, and ``problem`` (a status field) set."""
    return {
        "version": "1",
        "running": True,
        "url": "http://127.0.0.1:4141",
        "pid": 5,
        "routing": "main-first",
        "accounts": [],
        **problem,
    }


def test_status_shows_the_engines_listen_error() -> None:
    data = _running(listen_error="port 8080 on 127.0.0.1 is in use; still serving on 127.0.0.1:4141")
    assert "Gateway port: port 8080 on 127.0.0.1 is in use; still serving on 127.0.0.1:4141" in format_status(
        data
    )


def test_status_shows_a_request_log_that_cannot_be_written() -> None:
    shown = " ".join(format_status(_running(request_log_failing="database or disk is full")).split())
    assert (
        "Request log: cannot be written (database or disk is full); requests are not being recorded" in shown
    )


@pytest.mark.parametrize("days", ["-1", "0", "99999", "nan"])
def test_usage_and_analyze_refuse_meaningless_days(paths: Paths, days: str) -> None:
    for args in (("usage", "--days", days), ("analyze", "cache", "--days", days)):
        result = run(*args)
        assert result.returncode == 2, result.stdout
        assert "Invalid value for '--days'" in result.stderr
        assert "Traceback" not in result.stderr
    assert run("usage", "--days", "0.5").returncode == 0


def test_status_shows_a_failed_live_port_change_of_a_real_serve(paths: Paths) -> None:
    """`headway serve` on gateway.port; the file moves it to a busy port; it keeps serving and status says why."""
    with socket.socket() as free, socket.socket() as busy:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
        free.close()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        settings = {"secrets": {"backend": "file"}, "gateway": {"port": port}}
        write_private_file(paths.settings_file, json.dumps(settings).encode())
        serve = subprocess.Popen(
            [sys.executable, "-m", "tray", "serve"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            from tests.support.gateway import wait_until

            assert wait_until(lambda: paths.runtime_file.exists(), timeout=20)
            settings["gateway"]["port"] = taken
            write_private_file(paths.settings_file, json.dumps(settings).encode())

            def shown() -> bool:
                return "Gateway port:" in run("status").stdout

            assert wait_until(shown, timeout=20, interval=0.3)
            text = run("status").stdout
            assert f"running at http://127.0.0.1:{port}" in text
            assert f"port {taken}" in text and "in use" in text
        finally:
            serve.terminate()
            serve.wait(10)


# --------------------------------------------------------------------------- reading it: 80 columns, colour, help

NOW = 1_800_000_000.0


def _rich_status() -> dict[str, object]:
    from proxy.routing.summary import health_summary

    def window(name: str, left: float, resets_in: float, minutes: int | None) -> dict[str, object]:
        return {
            "name": name,
            "remaining_percent": left,
            "resets_in_seconds": resets_in,
            "resets_at": NOW + resets_in,
            "window_minutes": minutes,
            "current": True,
        }

    def account(account_id: str, kind: str, family: str, **extra: object) -> dict[str, object]:
        return {
            "id": account_id,
            "label": account_id,
            "kind": kind,
            "family": family,
            "enabled": True,
            "health": "healthy",
            "last_ok_at": NOW - 60,
            "quota": None,
            **extra,
        }

    quota = {
        "updated_at": NOW - 300,
        "windows": [window("5h", 30, 4 * 3600, 300), window("weekly", 71, 3 * 86400, 10080)],
    }
    accounts = [
        account("a-very-long-account-label-from-an-email@example.com", "chatgpt", "openai", quota=quota),
        account(
            "claude",
            "anthropic-api-key",
            "anthropic",
            health="cooling_down",
            blocked_for_seconds=300.0,
            blocked_until=NOW + 300,
            detail="429 from upstream: " + "x" * 120,
        ),
        account("fresh", "openai-api-key", "openai", last_ok_at=None),
    ]
    return {
        "version": "1.0",
        "running": True,
        "url": "http://127.0.0.1:7337",
        "pid": 4242,
        "routing": "main-first",
        "listen_error": "port 8080 on 127.0.0.1 is in use; still serving on 127.0.0.1:7337 " + "y" * 40,
        "accounts": accounts,
        "summary": health_summary(accounts, NOW),
    }


def test_status_fits_80_columns_with_the_summary_first_bars_and_countdowns() -> None:
    data = _rich_status()
    text = format_status(data, now=NOW)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(line for line in lines if len(line) > 80)
    summary = data["summary"]
    assert isinstance(summary, dict)
    assert lines[0] == f"● {summary['headline']}"  # the summary's own words, first
    # main runs low, and claude, the only Anthropic account, cools down: the family with none ready leads
    assert summary["state"] == "low"
    assert lines[0] == "● Anthropic blocked · 2/3 ready · 30% left, runs out in ~26m · next back in 5m"
    assert "      5h       ███░░░░░░░  30%  resets in 4h, runs out in ~26m" in lines
    assert "      week     ███████░░░  71%  resets in 3d" in lines
    assert any("rate-limited, back in 5m" in line for line in lines)
    assert "\x1b[" not in text
    colored = format_status(data, color=True, now=NOW)
    assert "\x1b[" in colored and click_unstyle(colored) == text


def click_unstyle(text: str) -> str:
    import click

    return click.unstyle(text)


def _on_a_terminal(args: list[str], env: dict[str, str]) -> str:
    import select

    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tray", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        close_fds=True,
    )
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        proc.wait(30)
    return out.decode()


def test_colour_only_on_a_terminal_and_never_with_no_color(paths: Paths) -> None:
    settings = {
        "secrets": {"backend": "file"},
        "accounts": [{"id": "k", "kind": "openai-api-key", "label": "k"}],
    }
    write_private_file(paths.settings_file, json.dumps(settings).encode())
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    piped = run("status", drop=("NO_COLOR",))
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines()[0] == "? Quota unknown · 1/1 ready — until the first request"
    assert "\x1b[" not in piped.stdout
    assert "\x1b[" in _on_a_terminal(["status"], env)
    assert "\x1b[" not in _on_a_terminal(["status"], {**env, "NO_COLOR": "1"})


def _commands(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    import click

    found: list[tuple[tuple[str, ...], object]] = []
    assert isinstance(group, click.Group)
    for name, command in group.commands.items():
        found.append(((*prefix, name), command))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


def test_every_command_has_help_and_bare_headway_is_the_tray() -> None:
    import tray.cli  # noqa: F401  (registers the commands)
    from tray.cli.root import cli

    missing = [" ".join(path) for path, command in _commands(cli) if not getattr(command, "help", None)]
    assert missing == []
    result = run("--help")
    assert "Run bare `headway` (no command) to start the tray icon" in result.stdout
    for sub in (["settings", "check"], ["settings", "path"], ["settings", "schema"]):
        shown = run(*sub, "--help").stdout
        assert shown.splitlines()[2].strip(), shown  # a line of help under the usage line
