"""`headway login chatgpt` as a real subprocess against FakeOpenAIAuth, with the plain-file secrets backend."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest

from proxy.config.paths import Paths
from tests.fakes.openai_auth import FakeOpenAIAuth

ROOT = Path(__file__).resolve().parents[3]
CODE_LINE = re.compile(r"enter this code: ([A-Z0-9]{4}-[A-Z0-9]{5})")


@pytest.fixture
def paths(headway_home: Path) -> Paths:
    paths = Paths.from_env()
    paths.ensure()
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}}))
    return paths


@pytest.fixture
def env(auth: FakeOpenAIAuth, paths: Paths) -> dict[str, str]:
    environ = dict(os.environ)
    environ.update(
        {
            "HEADWAY_OPENAI_AUTH_URL": auth.url,
            # Nothing here may reach an OS keychain: fail loudly if anything tries.
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "PYTHONUNBUFFERED": "1",
            "DISPLAY": "",
            "WAYLAND_DISPLAY": "",
        }
    )
    return environ


def headway(*args: str) -> list[str]:
    return [sys.executable, "-m", "tray", *args]


class Running:
    """A subprocess whose output is read on threads, so the test can wait for a given stdout line."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self._queue.put), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self._err.append), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], sink: Callable[[str | None], None]) -> None:
        for line in stream:
            sink(line.rstrip("\n"))
        sink(None)

    def expect(self, pattern: re.Pattern[str], timeout: float = 15.0) -> re.Match[str]:
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern.pattern!r}; got {self.lines}") from None
            if line is None:
                raise AssertionError(f"exited before {pattern.pattern!r}; got {self.lines} {self._err}")
            self.lines.append(line)
            found = pattern.search(line)
            if found:
                return found

    def finish(self, timeout: float = 20.0) -> tuple[int, str, str]:
        try:
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        while (line := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(line)
        return self.proc.returncode, "\n".join(self.lines), "\n".join(x for x in self._err if x is not None)


def device_login(auth: FakeOpenAIAuth, env: dict[str, str], *extra: str) -> tuple[int, str, str]:
    running = Running(headway("login", "chatgpt", "--headless", *extra), env)
    try:
        code = running.expect(CODE_LINE).group(1)
    except BaseException:
        running.proc.kill()
        running.finish()
        raise
    auth.approve_device(code)
    return running.finish()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`headway ARGS` to its end, output captured."""
    return subprocess.run(
        headway(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30, check=False
    )


def accounts_list(env: dict[str, str]) -> list[dict[str, object]]:
    out = run(env, "accounts", "list", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert isinstance(data, list)
    return data


def test_headless_login_adds_then_updates_and_keeps_tokens_out_of_settings(
    auth: FakeOpenAIAuth, env: dict[str, str], paths: Paths
) -> None:
    auth.next_login("acct-personal", plan_type="plus", email="me@example.com")
    code, out, err = device_login(auth, env)
    assert code == 0, err
    assert f"Using the sign-in service at {auth.url}" in out
    assert f"1. On any device, open: {auth.url}/codex/device" in out
    assert "Waiting for the code to be approved…" in out
    assert "signed in as me@example.com (plan plus) — account chatgpt-me added" in out.splitlines()
    assert out.splitlines()[-1] == (
        "Order: #1 of 1 OpenAI accounts (chatgpt-me). It serves every OpenAI request (Codex, OpenCode, Pi)."
    )

    # A second ChatGPT account (a work seat), then the first one again.
    auth.next_login("acct-work", plan_type="team", email="me@work.example")
    code, out, err = device_login(auth, env, "--label", "work")
    assert code == 0, err
    assert "signed in as me@work.example (plan team) — account work added" in out.splitlines()
    # Where the new account sits in the routing order, and how to change it.
    assert out.splitlines()[-2:] == [
        "Order: #2 of 2 OpenAI accounts (chatgpt-me, work).",
        "To make it the main OpenAI account: headway accounts order work",
    ]

    auth.next_login("acct-personal", plan_type="pro", email="me@example.com")
    code, out, err = device_login(auth, env)
    assert code == 0, err
    assert "signed in as me@example.com (plan pro) — account chatgpt-me updated" in out.splitlines()

    listed = accounts_list(env)
    assert [(a["id"], a["kind"], a["label"], a["plan_type"], a["chatgpt_account_id"]) for a in listed] == [
        ("chatgpt-me", "chatgpt", "me@example.com", "pro", "acct-personal"),
        ("work", "chatgpt", "work", "team", "acct-work"),
    ]

    secrets = json.loads(paths.secrets_file.read_text())
    assert set(secrets) == {"account:chatgpt-me", "account:work"}
    settings_text = paths.settings_file.read_text()
    logs_text = "".join(p.read_text(errors="replace") for p in paths.log_dir.rglob("*") if p.is_file())
    for value in secrets.values():
        token_set = json.loads(value)
        for key in ("access_token", "refresh_token", "id_token"):
            assert token_set[key] and token_set[key] not in settings_text
            assert token_set[key] not in logs_text
            assert token_set[key] not in out + err
    assert "token" not in settings_text


def test_device_login_not_enabled_exits_non_zero_with_advice(
    auth: FakeOpenAIAuth, env: dict[str, str]
) -> None:
    auth.device_code_enabled = False
    result = run(env, "login", "chatgpt", "--headless")
    assert result.returncode == 1
    assert (
        "Error: device login is not enabled for this account: enable it in ChatGPT settings → Security, "
        "or use the browser login"
    ) in result.stderr


def test_browser_login_port_busy_exits_non_zero(env: dict[str, str]) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        env["HEADWAY_OAUTH_CALLBACK_PORT"] = str(port)
        result = run(env, "login", "chatgpt", "--no-browser")
    assert result.returncode == 1
    assert (
        f"Error: port {port} is in use — another login may be in progress (a Codex CLI or OpenCode login?); "
        "finish or cancel it and try again"
    ) in result.stderr


def test_invalid_settings_file_stops_the_login_before_it_starts(
    auth: FakeOpenAIAuth, env: dict[str, str], paths: Paths
) -> None:
    paths.settings_file.write_text('{"accounts": [')
    result = run(env, "login", "chatgpt", "--headless")
    assert result.returncode == 1
    assert "the settings file cannot be used, so nothing was changed" in result.stderr
    assert "invalid JSON" in result.stderr
    assert auth.request_count == 0
