"""Fixtures of the tray and CLI tests: a Headway home per test, and one whose secrets use the plain-file backend
(subprocesses share it; the in-memory keyring of the other tests does not cross processes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.config.paths import Paths, write_private_file


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
