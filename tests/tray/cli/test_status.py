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


def test_status_shows_the_engines_listen_error() -> None:
    data = {
        "version": "1",
        "running": True,
        "url": "http://127.0.0.1:4141",
        "pid": 5,
        "routing": "main-first",
        "accounts": [],
        "listen_error": "port 8080 on 127.0.0.1 is in use; still serving on 127.0.0.1:4141",
    }
    assert "Gateway port: port 8080 on 127.0.0.1 is in use; still serving on 127.0.0.1:4141" in format_status(
        data
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
