"""`headway settings restore` (issue 10.8 follow-up), run as the real CLI in a subprocess.

A missing, empty, unreadable or folder-shaped settings file is an error once a settings file has existed; the fix is
the last-good copy, and every message that says so names the command that puts it back. The CLI prints such an error
once (not again as a raw log record on stderr) and says what is actually wrong instead of "invalid".
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from proxy.config.paths import Paths
from tests.support.gateway import run_cli

pytestmark = pytest.mark.timeout(120)

RESTORE = "headway settings restore"


def _home(tmp_path: Path) -> tuple[Paths, dict[str, str]]:
    home = tmp_path / "cli-home"
    env = {"HEADWAY_HOME": str(home)}
    return Paths.from_env(env), env


def _seed(paths: Paths, env: dict[str, str]) -> bytes:
    """One account written by the CLI itself, on the file keychain (no D-Bus needed); returns the good file."""
    paths.ensure()
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}}))
    r = run_cli(
        "accounts", "add", "openai", "--label", "work", "--api-key-stdin", input="sk-proj-abc\n", env=env
    )
    assert r.returncode == 0, r.stderr
    return paths.settings_file.read_bytes()


def _accounts(paths: Paths) -> list[str]:
    return [a["id"] for a in json.loads(paths.settings_file.read_text())["accounts"]]


def _once(text: str, needle: str) -> None:
    assert text.count(needle) == 1, f"{needle!r} shown {text.count(needle)} times:\n{text}"


def test_restore_puts_the_last_good_settings_back_after_rm(tmp_path: Path) -> None:
    paths, env = _home(tmp_path)
    _seed(paths, env)
    paths.settings_file.unlink()

    refused = run_cli("cache", "mode", "hybrid", env=env)
    assert refused.returncode != 0
    assert "the file is missing" in refused.stderr and RESTORE in refused.stderr
    assert "invalid" not in refused.stderr, "a missing file is not an invalid one"
    _once(refused.stderr, "the file is missing")  # not once more as a raw log record
    assert "keeping the last good settings" not in refused.stderr

    status = run_cli("status", env=env)
    assert RESTORE in status.stdout + status.stderr

    r = run_cli("settings", "restore", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    assert str(paths.settings_file) in r.stdout and str(paths.settings_last_good) in r.stdout
    assert "moved" not in r.stdout  # nothing was in the way
    assert _accounts(paths) == ["work"]
    if os.name == "posix":
        assert paths.settings_file.stat().st_mode & 0o777 == 0o600
    assert run_cli("cache", "mode", "hybrid", env=env).returncode == 0


@pytest.mark.parametrize("breakage", ["empty", "folder", "garbage"])
def test_restore_moves_what_is_in_the_way_aside_and_says_where(tmp_path: Path, breakage: str) -> None:
    paths, env = _home(tmp_path)
    _seed(paths, env)
    if breakage == "empty":
        paths.settings_file.write_text("")
        expected = "the file is empty"
    elif breakage == "folder":
        paths.settings_file.unlink()
        paths.settings_file.mkdir()
        (paths.settings_file / "inside.txt").write_text("keep me")
        expected = "is a folder, not a file"
    else:
        paths.settings_file.write_text('{"accounts": 7}')
        expected = "accounts"

    refused = run_cli("dumps", "on", env=env)
    assert refused.returncode != 0 and expected in refused.stderr and RESTORE in refused.stderr
    if breakage != "garbage":
        assert "invalid" not in refused.stderr

    r = run_cli("settings", "restore", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    aside = [p for p in paths.settings_file.parent.iterdir() if p.name.startswith("settings.json.broken-")]
    assert len(aside) == 1, list(paths.settings_file.parent.iterdir())
    assert str(aside[0]) in r.stdout
    assert paths.settings_file.is_file() and _accounts(paths) == ["work"]
    if breakage == "folder":
        assert (aside[0] / "inside.txt").read_text() == "keep me"
    elif breakage == "garbage":
        assert aside[0].read_text() == '{"accounts": 7}'


def test_restore_asks_first_and_no_changes_nothing(tmp_path: Path) -> None:
    paths, env = _home(tmp_path)
    _seed(paths, env)
    paths.settings_file.write_text("")
    r = run_cli("settings", "restore", input="n\n", env=env)
    assert r.returncode != 0 and "last good" in r.stdout + r.stderr
    assert paths.settings_file.read_bytes() == b""
    assert not [p for p in paths.settings_file.parent.iterdir() if "broken" in p.name]

    r = run_cli("settings", "restore", input="y\n", env=env)
    assert r.returncode == 0, r.stderr
    assert _accounts(paths) == ["work"]


def test_restore_with_nothing_to_restore_says_so(tmp_path: Path) -> None:
    paths, env = _home(tmp_path)
    good = _seed(paths, env)
    r = run_cli("settings", "restore", "--yes", env=env)
    assert r.returncode != 0 and "nothing to restore" in r.stderr
    assert paths.settings_file.read_bytes() == good

    paths.settings_last_good.unlink()
    paths.settings_file.write_text("{")
    r = run_cli("settings", "restore", "--yes", env=env)
    assert r.returncode != 0 and "no usable last-good copy" in r.stderr
    assert paths.settings_file.read_text() == "{"
    assert "Traceback" not in r.stderr


def test_an_unreadable_file_names_the_restore_command(tmp_path: Path) -> None:
    # A file that cannot be decoded stands for every unreadable one here: file modes do not bind root, which runs
    # the suite; permission denied itself is tested at the store (tests/proxy/config/test_store.py).
    paths, env = _home(tmp_path)
    _seed(paths, env)
    paths.settings_file.write_bytes(b'{"accounts": [\xff\xfe]}')
    expected = "is not UTF-8 text"
    r = run_cli("cache", "mode", "hybrid", env=env)
    assert r.returncode != 0 and expected in r.stderr and RESTORE in r.stderr
    r = run_cli("settings", "restore", "--yes", env=env)
    assert r.returncode == 0, r.stderr
    assert _accounts(paths) == ["work"]


def test_the_cli_logs_to_the_log_file_not_to_stderr(tmp_path: Path) -> None:
    paths, env = _home(tmp_path)
    _seed(paths, env)
    paths.settings_file.unlink()
    r = run_cli("accounts", "list", env=env)  # reads fine on the last-good copy; the store logs the error
    assert r.returncode == 0, r.stderr
    assert "the file is missing" not in r.stderr, "a raw log record reached stderr"
    log = (paths.log_dir / "headway.log").read_text()
    assert "the file is missing" in log
    if os.name == "posix":
        assert (paths.log_dir / "headway.log").stat().st_mode & 0o777 == 0o600
