"""Running the `headway` command as a real subprocess (`python -m tray ...`) in a test's HEADWAY_HOME."""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from proxy.config.accounts import add_api_key_account
from proxy.config.paths import Paths
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import Keychain

ROOT = Path(__file__).resolve().parents[3]
ANTHROPIC_KEY = "sk-ant-api03-" + "k" * 24
OPENAI_KEY = "sk-proj-" + "o" * 24


# --------------------------------------------------------------------------- helpers


def file_keychain(paths: Paths) -> Keychain:
    return Keychain(paths.keychain_service, backend="file", file_path=paths.secrets_file)


def read_secrets(paths: Paths) -> dict[str, str]:
    return json.loads(paths.secrets_file.read_text())  # type: ignore[no-any-return]


def read_settings(paths: Paths) -> dict[str, Any]:
    return json.loads(paths.settings_file.read_text())  # type: ignore[no-any-return]


def argv(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "tray", *args]


def cli(
    *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # a session of its own: no controlling terminal, so nothing can prompt on the developer's tty
    return subprocess.run(
        argv(args),
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
            argv(args),
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
        results.append(subprocess.CompletedProcess(argv(args), proc.returncode, out, err))
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
        argv(args), stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, start_new_session=True, close_fds=True
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


def mode_of(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def seed_accounts(paths: Paths) -> None:
    store = SettingsStore(paths.settings_file)
    store.load()
    keychain = file_keychain(paths)
    add_api_key_account(store, keychain, "anthropic-api-key", "Work", ANTHROPIC_KEY)
    add_api_key_account(store, keychain, "openai-api-key", "Personal", OPENAI_KEY)
    add_api_key_account(store, keychain, "anthropic-api-key", "Spare", ANTHROPIC_KEY + "-2")
