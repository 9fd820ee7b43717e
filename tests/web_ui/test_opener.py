"""The opener page: the browser's command line names a private file, never the one-time sign-in token."""

from __future__ import annotations

import os
import time
import webbrowser
from pathlib import Path

import pytest

from proxy.config.paths import Paths
from web_ui.opener import open_signed_in, opener_dir, write_opener

URL = "http://127.0.0.1:7338/login?token=abc&x=<b>"


def test_the_opener_is_private_and_forwards_without_script(tmp_path: Path) -> None:
    folder = tmp_path / "web-open"
    page = write_opener(folder, URL)
    text = page.read_text()
    assert (
        '<meta http-equiv="refresh" content="0;url=http://127.0.0.1:7338/login?token=abc&amp;x=&lt;b&gt;">'
        in text
    )
    assert "<script" not in text and "<b>" not in text
    if os.name == "posix":
        assert page.stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700


def test_old_openers_are_cleared_when_the_next_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "web-open"
    old = write_opener(folder, URL)
    recent = write_opener(folder, URL)
    past = time.time() - 600
    os.utime(old, (past, past))
    newest = write_opener(folder, URL)
    assert not old.exists() and recent.exists() and newest.exists()


def test_open_signed_in_puts_only_the_file_on_the_command_line(
    headway_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = Paths.from_env()
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    assert open_signed_in(paths, URL) is True
    (argument,) = opened
    assert argument.startswith("file://") and "token" not in argument
    assert [p.as_uri() for p in opener_dir(paths).iterdir()] == [argument]

    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: False)  # no browser: the file goes at once
    assert open_signed_in(paths, URL) is False
    assert [p.as_uri() for p in opener_dir(paths).iterdir()] == [argument]
