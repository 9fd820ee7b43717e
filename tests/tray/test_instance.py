"""A second launch's request to the running instance: request files in the private run folder."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from proxy.config.paths import Paths
from tray.instance import OPEN_SETTINGS, Inbox, request, requests_dir


@pytest.fixture
def paths(headway_home: Path) -> Paths:
    paths = Paths.from_env()
    paths.ensure()
    return paths


def test_a_listening_instance_takes_the_request(paths: Paths) -> None:
    inbox = Inbox(paths)
    taken: list[str] = []

    def listen() -> None:
        deadline = time.monotonic() + 3
        while not taken and time.monotonic() < deadline:
            taken.extend(inbox.take())
            time.sleep(0.02)

    thread = threading.Thread(target=listen)
    thread.start()
    assert request(paths, OPEN_SETTINGS, timeout=3) is True
    thread.join(3)
    assert taken == [OPEN_SETTINGS]
    assert list(requests_dir(paths).iterdir()) == []


def test_nobody_listening_means_false_and_no_leftovers(paths: Paths) -> None:
    started = time.monotonic()
    assert request(paths, OPEN_SETTINGS, timeout=0.3) is False
    assert time.monotonic() - started < 1.0
    assert list(requests_dir(paths).iterdir()) == []


def test_the_folder_and_files_are_private(paths: Paths) -> None:
    Inbox(paths)
    assert requests_dir(paths).stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError):
        request(paths, "rm -rf", timeout=0.1)


def test_bad_requests_are_dropped(paths: Paths) -> None:
    inbox = Inbox(paths)
    folder = requests_dir(paths)

    def put(name: str, data: object, mode: int = 0o600, age: float = 0.0) -> Path:
        path = folder / name
        path.write_text(json.dumps(data))
        os.chmod(path, mode)
        if age:
            then = time.time() - age
            os.utime(path, (then, then))
        return path

    put("unknown.json", {"command": "shell"})
    put("writable.json", {"command": OPEN_SETTINGS}, mode=0o622)
    put("stale.json", {"command": OPEN_SETTINGS}, age=120)
    put("garbage.json", "not an object")
    (folder / "link.json").symlink_to(put("target.txt", {"command": OPEN_SETTINGS}))
    assert inbox.take() == []
    assert sorted(p.name for p in folder.iterdir()) == ["target.txt"]  # every request file looked at is gone
    put("good.json", {"command": OPEN_SETTINGS})
    assert inbox.take() == [OPEN_SETTINGS]


def test_the_instance_lock_file_is_owner_only_and_an_old_one_is_tightened(paths: Paths) -> None:
    """Issue 10.12: lock files were 0644 and the HEADWAY_HOME root 0755."""
    import stat

    from tray.app import build_services

    paths.lock_file.touch()
    paths.lock_file.chmod(0o644)
    assert paths.home is not None
    paths.home.chmod(0o755)
    services = build_services(paths)
    try:
        assert stat.S_IMODE(paths.lock_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(paths.home.stat().st_mode) == 0o700
    finally:
        services.logs.close()
        services.lock.release()
    paths.lock_file.unlink()
    services = build_services(paths)
    try:
        assert stat.S_IMODE(paths.lock_file.stat().st_mode) == 0o600, "a new lock file is not owner-only"
    finally:
        services.logs.close()
        services.lock.release()
