"""SettingsWatcher with a real watchdog observer: sees atomic replaces and plain writes, debounces bursts, stops in
bounded time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.config.paths import write_private_file
from proxy.config.watcher import SettingsWatcher

# Long enough to merge a burst on a slow CI machine, short enough to keep the tests quick.
DEBOUNCE = 0.1


class Calls:
    def __init__(self) -> None:
        self.count = 0
        self.times: list[float] = []
        self.threads: list[str] = []
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self.times.append(time.monotonic())
            self.threads.append(threading.current_thread().name)
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)


@pytest.fixture
def target(tmp_path: Path) -> Path:
    folder = tmp_path / "config"
    folder.mkdir()
    path = folder / "settings.json"
    path.write_text("{}")
    return path


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def watcher(target: Path, calls: Calls) -> Iterator[SettingsWatcher]:
    w = SettingsWatcher(target, calls, debounce=DEBOUNCE)
    w.start()
    time.sleep(0.05)  # inotify watch in place before the test writes
    yield w
    w.stop(timeout=2.0)


def test_an_atomic_replace_is_seen_within_a_second(
    watcher: SettingsWatcher, target: Path, calls: Calls
) -> None:
    start = time.monotonic()
    write_private_file(target, b'{"gateway": {"port": 1}}')
    assert calls.wait_for(1, 1.0), "no reload within 1 s of an atomic replace"
    assert calls.times[0] - start < 1.0
    assert calls.threads[0] == "headway-settings-debounce"


def test_a_plain_write_is_seen_within_a_second(watcher: SettingsWatcher, target: Path, calls: Calls) -> None:
    with open(target, "w") as fh:  # an editor that writes in place
        fh.write('{"gateway": {"port": 2}}')
    assert calls.wait_for(1, 1.0), "no reload within 1 s of a plain write"


def test_other_files_in_the_folder_are_ignored(watcher: SettingsWatcher, target: Path, calls: Calls) -> None:
    (target.parent / "notes.txt").write_text("x")
    write_private_file(target.parent / "other.json", b"{}")
    assert not calls.wait_for(1, DEBOUNCE + 0.4)
    # ... while the watcher is demonstrably alive
    target.write_text("{}")
    assert calls.wait_for(1, 1.0)


def test_a_burst_of_writes_is_debounced_into_few_reloads(
    watcher: SettingsWatcher, target: Path, calls: Calls
) -> None:
    for i in range(25):
        if i % 2:
            write_private_file(target, f'{{"gateway": {{"port": {i}}}}}'.encode())
        else:
            target.write_text(f'{{"gateway": {{"port": {i}}}}}')
        time.sleep(0.005)
    assert calls.wait_for(1, 1.0)
    time.sleep(DEBOUNCE * 4)
    assert 1 <= calls.count <= 3, f"{calls.count} reloads for one burst of 25 writes"
    # the reload came after the burst ended, so it reads the final file
    final = target.read_text()
    assert '"port": 24' in final


def test_a_failing_callback_is_logged_and_the_watcher_keeps_going(
    target: Path, caplog: pytest.LogCaptureFixture
) -> None:
    results: list[str] = []
    done = threading.Event()

    def flaky() -> None:
        results.append("call")
        if len(results) == 1:
            raise RuntimeError("boom")
        done.set()

    w = SettingsWatcher(target, flaky, debounce=0.02)
    w.start()
    try:
        time.sleep(0.05)
        target.write_text("{}")
        deadline = time.monotonic() + 1.0
        while not results and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        target.write_text('{"a": 1}')
        assert done.wait(1.0)
    finally:
        w.stop()
    assert "settings reload failed" in caplog.text


def test_stop_is_bounded_and_no_reload_follows_it(target: Path, calls: Calls) -> None:
    w = SettingsWatcher(target, calls, debounce=0.3)
    w.start()
    time.sleep(0.05)
    target.write_text('{"x": 1}')  # a reload is pending in the debounce timer
    time.sleep(0.1)
    observers = [t for t in threading.enumerate() if t.name == "headway-settings-watch"]
    assert observers
    start = time.monotonic()
    w.stop(timeout=2.0)
    assert time.monotonic() - start < 2.0
    assert not any(t.is_alive() for t in observers)
    time.sleep(0.4)
    assert calls.count == 0, "the pending reload fired after stop()"
    w.stop()  # idempotent


def test_a_config_folder_deleted_and_made_again_is_watched_again(target: Path, calls: Calls) -> None:
    """rm -rf of the config folder, then a restore: without re-arming, the watcher went deaf for good."""
    import shutil

    w = SettingsWatcher(target, calls, debounce=DEBOUNCE)
    w.start()
    try:
        time.sleep(0.05)  # inotify watch in place before the test writes
        shutil.rmtree(target.parent)
        assert calls.wait_for(1, 2.0), "the deletion was not seen"
        seen = calls.count
        target.parent.mkdir()
        write_private_file(target, b'{"gateway": {"port": 3}}')
        assert calls.wait_for(seen + 1, 2.0), "the restored folder is not watched"
        time.sleep(DEBOUNCE * 3)  # let the restore's reloads settle before the edit below
        seen = calls.count
        target.write_text('{"gateway": {"port": 4}}')  # a later edit in the new folder is seen too
        assert calls.wait_for(seen + 1, 2.0), "a later edit in the restored folder was missed"
    finally:
        w.stop()
