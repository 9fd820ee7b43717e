"""The `headway` command as a real subprocess (`python -m tray ...`) in the test's HEADWAY_HOME.

The in-memory keyring of the other tests does not cross processes, so these runs use a home whose settings opt into
the file backend; one test (marked ``keychain``) adds an account through the real Secret Service instead.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import stat
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config.accounts import add_api_key_account, set_account_enabled
from proxy.config.paths import Paths, write_private_file
from proxy.config.settings import json_schema
from proxy.config.store import SettingsStore
from proxy.features.request_log import RequestLog
from proxy.routing.quota import Window
from proxy.routing.state import RuntimeState
from proxy.secrets.keychain import ACCESS_KEY, Keychain
from tests.fakes import Behavior, FakeAnthropic, anthropic_ratelimit_headers
from tests.support.gateway import start_gateway_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
ANTHROPIC_KEY = "sk-ant-api03-" + "k" * 24
OPENAI_KEY = "sk-proj-" + "o" * 24


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def paths(headway_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """This test's Headway home, with a HOME of its own so that stray writes outside HEADWAY_HOME show up."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return Paths.from_env()


@pytest.fixture
def file_home(paths: Paths) -> Paths:
    """A home whose settings opt into the plain-file secrets backend (subprocesses share it)."""
    paths.ensure()
    write_private_file(paths.settings_file, b'{"secrets": {"backend": "file"}}\n')
    return paths


def _file_keychain(paths: Paths) -> Keychain:
    return Keychain(paths.keychain_service, backend="file", file_path=paths.secrets_file)


def _secrets(paths: Paths) -> dict[str, str]:
    return json.loads(paths.secrets_file.read_text())  # type: ignore[no-any-return]


def _settings(paths: Paths) -> dict[str, Any]:
    return json.loads(paths.settings_file.read_text())  # type: ignore[no-any-return]


def _argv(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "tray", *args]


def cli(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # a session of its own: no controlling terminal, so nothing can prompt on the developer's tty
    return subprocess.run(
        _argv(args),
        input=input,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        start_new_session=True,
        check=False,
    )


def cli_parallel(
    *commands: Sequence[str] | tuple[Sequence[str], str],
) -> list[subprocess.CompletedProcess[str]]:
    """Run independent commands side by side (each costs ~0.5 s of interpreter start-up).

    A command is its arguments, or ``(arguments, stdin text)``.
    """
    started = []
    for command in commands:
        args, text = command if isinstance(command, tuple) else (command, None)
        proc = subprocess.Popen(
            _argv(args),
            stdin=subprocess.PIPE if text is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            start_new_session=True,
        )
        started.append((args, text, proc))
    results = []
    for args, text, proc in started:
        out, err = proc.communicate(text, timeout=30)
        results.append(subprocess.CompletedProcess(_argv(args), proc.returncode, out, err))
    return results


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{result.args[3:]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def fails(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (
        f"{result.args[3:]} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stderr


def run_with_tty(args: Sequence[str], reply: str, timeout: float = 20.0) -> tuple[int, str]:
    """Run the CLI on a pseudo-terminal; type ``reply`` once the terminal's echo is off (the hidden prompt)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        _argv(args), stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, start_new_session=True, close_fds=True
    )
    os.close(slave)
    output = b""
    sent = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sent and b"API key" in output and not termios.tcgetattr(master)[3] & termios.ECHO:
                os.write(master, reply.encode() + b"\n")
                sent = True
            ready, _, _ = select.select([master], [], [], 0.05)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    data = b""
                if not data:
                    break
                output += data
            elif proc.poll() is not None:
                break
        else:
            raise AssertionError(f"the CLI did not finish in {timeout}s; output so far:\n{output.decode()}")
        return proc.wait(5), output.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# --------------------------------------------------------------------------- accounts add


def test_add_reads_the_key_from_stdin_and_keeps_it_out_of_the_settings(file_home: Paths) -> None:
    out = ok(
        cli("accounts", "add", "anthropic", "--label", "Work", "--api-key-stdin", input=ANTHROPIC_KEY + "\n")
    )
    assert "added work (Work, anthropic-api-key)" in out
    assert ANTHROPIC_KEY not in out

    settings_text = file_home.settings_file.read_text()
    assert ANTHROPIC_KEY not in settings_text and "sk-ant" not in settings_text
    assert _settings(file_home)["accounts"] == [
        {"id": "work", "kind": "anthropic-api-key", "label": "Work", "enabled": True}
    ]
    assert _secrets(file_home) == {"account:work": ANTHROPIC_KEY}
    assert _mode(file_home.secrets_file) == 0o600 and _mode(file_home.data_dir) == 0o700
    assert _mode(file_home.settings_file) == 0o600 and _mode(file_home.config_dir) == 0o700

    # There is no way to put a key on the command line (argv is visible to every user on the machine).
    err = fails(cli("accounts", "add", "openai", "--label", "X", "--api-key", OPENAI_KEY), code=2)
    assert "No such option" in err
    assert [a["id"] for a in _settings(file_home)["accounts"]] == ["work"]


def test_add_with_a_hidden_prompt_on_a_terminal(file_home: Paths) -> None:
    code, output = run_with_tty(["accounts", "add", "openai", "--label", "Personal"], OPENAI_KEY)
    assert code == 0, output
    assert "OpenAI API key:" in output
    assert OPENAI_KEY not in output, "the key was echoed to the terminal"
    assert "added personal (Personal, openai-api-key)" in output
    assert _secrets(file_home) == {"account:personal": OPENAI_KEY}
    assert OPENAI_KEY not in file_home.settings_file.read_text()


def test_add_warns_about_an_odd_key_and_refuses_an_empty_one(file_home: Paths) -> None:
    odd, empty = cli_parallel(
        (["accounts", "add", "anthropic", "--label", "Odd", "--api-key-stdin"], "not-a-key\n"),
        (["accounts", "add", "anthropic", "--label", "Empty", "--api-key-stdin"], "\n"),
    )
    ok(odd)
    assert "does not look like an Anthropic API key" in odd.stderr
    assert "no key given" in fails(empty)
    assert [a["id"] for a in _settings(file_home)["accounts"]] == ["odd"]


@pytest.mark.parametrize(
    "backend",
    ["keyring.backends.fail.Keyring", "keyrings.alt.file.PlaintextKeyring"],
    ids=["none", "plaintext"],
)
def test_add_is_refused_without_a_secure_keychain(paths: Paths, tmp_path: Path, backend: str) -> None:
    result = cli(
        "accounts", "add", "anthropic", "--label", "Work", "--api-key-stdin",
        input=ANTHROPIC_KEY + "\n", env={"PYTHON_KEYRING_BACKEND": backend},
    )  # fmt: skip
    err = fails(result)
    assert "no secure keychain" in err.lower()
    assert backend in err
    assert "gnome-keyring" in err and "headway secrets backend file" in err  # the ways out, spelled out
    assert not paths.settings_file.exists() or _settings(paths).get("accounts", []) == []
    assert not paths.secrets_file.exists()
    leaked = [p for p in _files_under(tmp_path) if ANTHROPIC_KEY.encode() in p.read_bytes()]
    assert leaked == [], "the key was written in plain text"


# --------------------------------------------------------------------------- managing accounts


def _seed(paths: Paths) -> None:
    store = SettingsStore(paths.settings_file)
    store.load()
    keychain = _file_keychain(paths)
    add_api_key_account(store, keychain, "anthropic-api-key", "Work", ANTHROPIC_KEY)
    add_api_key_account(store, keychain, "openai-api-key", "Personal", OPENAI_KEY)
    add_api_key_account(store, keychain, "anthropic-api-key", "Spare", ANTHROPIC_KEY + "-2")


def test_list_order_disable_enable(file_home: Paths) -> None:
    _seed(file_home)
    text, as_json = cli_parallel(["accounts", "list"], ["accounts", "list", "--json"])
    lines = ok(text).splitlines()
    assert [line.split()[:2] for line in lines] == [["1.", "work"], ["2.", "personal"], ["3.", "spare"]]
    items = json.loads(ok(as_json))
    assert [(a["id"], a["label"], a["kind"], a["family"], a["enabled"]) for a in items] == [
        ("work", "Work", "anthropic-api-key", "anthropic", True),
        ("personal", "Personal", "openai-api-key", "openai", True),
        ("spare", "Spare", "anthropic-api-key", "anthropic", True),
    ]
    assert "sk-" not in as_json.stdout

    assert ok(cli("accounts", "order", "spare", "Personal")).strip() == "order: spare, personal, work"
    assert ok(cli("accounts", "disable", "work")).strip() == "work disabled"
    assert [(a["id"], a["enabled"]) for a in _settings(file_home)["accounts"]] == [
        ("spare", True),
        ("personal", True),
        ("work", False),
    ]

    listed, bad_order = cli_parallel(["accounts", "list"], ["accounts", "order", "nobody"])
    lines = ok(listed).splitlines()
    assert [line.split()[1] for line in lines] == ["spare", "personal", "work"]
    assert lines[2].endswith("[disabled]") and not lines[0].endswith("[disabled]")
    err = fails(bad_order)
    assert "no account 'nobody'" in err and "work (Work)" in err
    assert [a["id"] for a in _settings(file_home)["accounts"]] == ["spare", "personal", "work"]

    assert ok(cli("accounts", "enable", "Work")).strip() == "work enabled"
    assert [a["enabled"] for a in _settings(file_home)["accounts"]] == [True, True, True]


def test_set_key_and_remove(file_home: Paths) -> None:
    _seed(file_home)
    new_key = "sk-ant-api03-" + "n" * 24
    set_key, declined, unknown = cli_parallel(
        (["accounts", "set-key", "work", "--api-key-stdin"], new_key + "\n"),
        (["accounts", "remove", "work"], "n\n"),
        ["accounts", "remove", "nobody", "--yes"],
    )
    assert "replaced the key of work (Work)" in ok(set_key)
    assert _secrets(file_home)["account:work"] == new_key
    assert new_key not in file_home.settings_file.read_text()
    assert "Aborted" in fails(declined)
    assert "no account 'nobody'" in fails(unknown)
    assert "work" in [a["id"] for a in _settings(file_home)["accounts"]]

    assert ok(cli("accounts", "remove", "work", "--yes")).strip() == "removed work (Work)"
    assert "work" not in [a["id"] for a in _settings(file_home)["accounts"]]
    assert "account:work" not in _secrets(file_home), "the secret outlived its account"
    assert set(_secrets(file_home)) == {"account:personal", "account:spare"}


def test_access_key_is_stable_until_rotated(file_home: Paths) -> None:
    first = ok(cli("key")).strip()
    second = ok(cli("key")).strip()
    assert first == second
    assert first.startswith("hw-") and len(first) > 30
    assert _secrets(file_home)[ACCESS_KEY] == first
    rotated = ok(cli("key", "--rotate")).strip()
    assert rotated != first and rotated.startswith("hw-")
    assert _secrets(file_home)[ACCESS_KEY] == rotated


# --------------------------------------------------------------------------- settings


def test_settings_path_schema_and_check(file_home: Paths) -> None:
    path, schema, check = cli_parallel(["settings", "path"], ["settings", "schema"], ["settings", "check"])
    assert ok(path).strip() == str(file_home.settings_file)
    assert json.loads(ok(schema)) == json_schema()
    assert ok(check).strip() == f"{file_home.settings_file}: valid"

    file_home.settings_file.write_text(
        '{"secrets": {"backend": "file"}, "routing": {"mode": "random"}, "gatway": {}}'
    )
    check, status = cli_parallel(["settings", "check"], ["status", "--json"])
    err = fails(check)
    assert f"{file_home.settings_file}: routing.mode: Input should be" in err and "(got 'random')" in err
    assert f"{file_home.settings_file}: gatway: unknown setting" in err
    data = json.loads(ok(status))
    assert data["running"] is False
    assert any(p.startswith("routing.mode:") for p in data["settings_error"])

    # commands that write refuse to overwrite a broken file
    err = fails(
        cli("accounts", "add", "anthropic", "--label", "W", "--api-key-stdin", input=ANTHROPIC_KEY + "\n")
    )
    assert "the settings file cannot be used, so nothing was changed" in err and "routing.mode" in err
    assert "gatway" in file_home.settings_file.read_text()


# --------------------------------------------------------------------------- status and usage


def test_status_offline_from_settings_and_persisted_state(file_home: Paths) -> None:
    _seed(file_home)
    set_account_enabled(SettingsStore(file_home.settings_file), "spare", False)
    now = time.time()
    state = RuntimeState()
    state.quota.update("work", [Window("tokens", limit=100_000, remaining=25_000, resets_at=now + 3600)], now)
    state.health.cool_down("personal", now + 600, "429 rate_limit_error")
    state.save(file_home.state_file)

    as_json, text = cli_parallel(["status", "--json"], ["status"])
    data = json.loads(ok(as_json))
    assert data["running"] is False and data["url"] is None
    assert data["settings_file"] == str(file_home.settings_file)
    accounts = {a["id"]: a for a in data["accounts"]}
    assert [a["id"] for a in data["accounts"]] == ["work", "personal", "spare"]
    assert accounts["work"]["health"] == "healthy"
    (window,) = accounts["work"]["quota"]["windows"]
    assert (window["name"], window["remaining"], window["limit"], window["remaining_percent"]) == (
        "tokens", 25_000, 100_000, 25.0,
    )  # fmt: skip
    assert 3500 < window["resets_in_seconds"] <= 3600
    assert accounts["personal"]["health"] == "cooling_down"
    assert accounts["personal"]["detail"] == "429 rate_limit_error"
    assert 500 < accounts["personal"]["blocked_for_seconds"] <= 600
    assert accounts["spare"]["health"] == "disabled"

    out = ok(text)
    assert "not running" in out
    assert (
        "tokens: 25% left (25000/100000), resets in 59m" in out
        or "tokens: 25% left (25000/100000), resets in 1h" in out
    )
    assert "Personal [personal, openai-api-key]: cooling down for" in out
    assert "Spare [spare, anthropic-api-key]: disabled" in out


def test_status_online_usage_and_headway_home(file_home: Paths, tmp_path: Path) -> None:
    headers = anthropic_ratelimit_headers(
        requests_limit=50, requests_remaining=40, tokens_limit=100_000, tokens_remaining=25_000, reset_in=600
    )
    with FakeAnthropic(default=Behavior(headers=headers)) as upstream:
        ok(
            cli(
                "accounts",
                "add",
                "anthropic",
                "--label",
                "Work",
                "--api-key-stdin",
                input=ANTHROPIC_KEY + "\n",
            )
        )
        gateway = start_gateway_process(env={"HEADWAY_ANTHROPIC_BASE_URL": upstream.url})
        try:
            assert gateway.key == _secrets(file_home)[ACCESS_KEY]
            response = httpx.post(
                f"{gateway.url}/v1/messages",
                headers={"x-api-key": gateway.key, "anthropic-version": "2023-06-01"},
                json={
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                timeout=10,
            )
            assert response.status_code == 200, response.text
            assert upstream.last_request.headers["x-api-key"] == ANTHROPIC_KEY
            # /status is behind the access key: the CLI must be presenting it
            assert httpx.get(f"{gateway.url}/status", timeout=5).status_code == 401

            log = RequestLog(file_home.request_log)
            assert wait_until(lambda: bool(log.summary(since=0)), timeout=5), (
                "the request never reached the log"
            )

            as_json, text, usage, usage_json = cli_parallel(
                ["status", "--json"], ["status"], ["usage"], ["usage", "--json"]
            )
            data = json.loads(ok(as_json))
            assert data["running"] is True
            assert data["pid"] == gateway.proc.pid
            assert data["url"] == gateway.url
            (account,) = data["accounts"]
            assert account["id"] == "work" and account["health"] == "healthy"
            windows = {w["name"]: w for w in account["quota"]["windows"]}
            assert windows["tokens"]["remaining"] == 25_000 and windows["tokens"]["remaining_percent"] == 25.0
            assert windows["requests"]["remaining"] == 40 and windows["requests"]["remaining_percent"] == 80.0
            assert 500 < windows["tokens"]["resets_in_seconds"] <= 600

            out = ok(text)
            assert f"running at {gateway.url} (pid {gateway.proc.pid})" in out
            assert "requests: 80% left (40/50)" in out
            assert "tokens: 25% left (25000/100000), resets in" in out

            table = ok(usage)
            row = next(line for line in table.splitlines() if "claude-sonnet-4-5" in line)
            assert row.split()[:3] == ["Work", "claude-sonnet-4-5", "1"]
            (summary,) = json.loads(ok(usage_json))
            assert (summary["account_id"], summary["model"], summary["requests"]) == (
                "work",
                "claude-sonnet-4-5",
                1,
            )
        finally:
            code = gateway.stop()
        assert code == 0, gateway.output()

    # Stopped: the quota it saw was persisted, and status falls back to it.
    data = json.loads(ok(cli("status", "--json")))
    assert data["running"] is False
    (account,) = data["accounts"]
    assert {w["name"] for w in account["quota"]["windows"]} == {"requests", "tokens"}

    # Everything Headway wrote is under HEADWAY_HOME: config, data, logs, lock.
    home = file_home.home
    assert home is not None
    assert file_home.settings_file.is_file() and file_home.request_log.is_file()
    assert file_home.state_file.is_file() and file_home.lock_file.exists()
    assert _files_under(file_home.log_dir), "no log file in HEADWAY_HOME/logs"
    outside = [
        p
        for folder in ("xdg-config", "xdg-data", "xdg-state", "home")
        for p in _files_under(tmp_path / folder)
    ]
    assert outside == [], f"written outside HEADWAY_HOME: {outside}"


# --------------------------------------------------------------------------- the real Secret Service


def _secret_service_problem() -> str | None:
    """Why the real Secret Service cannot be used here, or None when it can."""
    try:
        from keyring.backends import SecretService

        SecretService.Keyring.priority  # noqa: B018 - raises when no daemon is reachable
    except Exception as exc:
        return f"no Secret Service reachable on D-Bus: {exc}"
    if shutil.which("secret-tool") is None:
        return "secret-tool (libsecret-tools) is not installed"
    return None


def _secret_tool_lookup(service: str, name: str) -> str | None:
    result = subprocess.run(
        ["secret-tool", "lookup", "service", service, "username", name],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None


@pytest.mark.keychain
def test_add_and_remove_through_the_real_secret_service(headway_home: Path) -> None:
    problem = _secret_service_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"CI must run the keychain tests against a real Secret Service (scripts/test): {problem}"
            )
        pytest.skip(problem)
    paths = Paths.from_env()
    key = f"sk-ant-api03-{uuid.uuid4().hex}"
    name = "account:work"
    try:
        out = ok(cli("accounts", "add", "anthropic", "--label", "Work", "--api-key-stdin", input=key + "\n"))
        assert "added work" in out
        assert _secret_tool_lookup(paths.keychain_service, name) == key
        assert key not in paths.settings_file.read_text()
        assert not paths.secrets_file.exists()
        ok(cli("accounts", "remove", "work", "--yes"))
        assert _secret_tool_lookup(paths.keychain_service, name) is None
    finally:
        Keychain(paths.keychain_service).delete(name)
