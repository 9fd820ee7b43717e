"""SettingsWatcher with a real watchdog observer: sees atomic replaces and plain writes, debounces bursts, stops in
bounded time."""

from __future__ import annotations

import contextlib
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

    def settled(self) -> int:
        """The count once the reloads of what was just written have come (or did not)."""
        time.sleep(DEBOUNCE * 3)
        return self.count

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)


def _settings_file_in(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "settings.json"
    path.write_text("{}")
    return path


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return _settings_file_in(tmp_path / "config")


@pytest.fixture
def calls() -> Calls:
    return Calls()


@contextlib.contextmanager
def _watching(target: Path, calls: Calls) -> Iterator[SettingsWatcher]:
    w = SettingsWatcher(target, calls, debounce=DEBOUNCE)
    w.start()
    try:
        time.sleep(0.05)  # inotify watch in place before the test writes
        yield w
    finally:
        w.stop(timeout=2.0)


@pytest.fixture
def watcher(target: Path, calls: Calls) -> Iterator[SettingsWatcher]:
    with _watching(target, calls) as w:
        yield w


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

    with _watching(target, calls):
        shutil.rmtree(target.parent)
        assert calls.wait_for(1, 2.0), "the deletion was not seen"
        seen = calls.count
        target.parent.mkdir()
        write_private_file(target, b'{"gateway": {"port": 3}}')
        assert calls.wait_for(seen + 1, 2.0), "the restored folder is not watched"
        seen = calls.settled()  # the restore's reloads are done before the edit below
        target.write_text('{"gateway": {"port": 4}}')  # a later edit in the new folder is seen too
        assert calls.wait_for(seen + 1, 2.0), "a later edit in the restored folder was missed"


@pytest.fixture
def dotfiles(tmp_path: Path) -> Path:
    """A dotfiles checkout outside the config folder, holding the real settings file."""
    return _settings_file_in(tmp_path / "dotfiles")


def _link(target: Path, to: Path) -> None:
    """Point ``target`` at ``to`` the way ``ln -sfn`` and stow do: a new link renamed over the old one."""
    tmp = target.with_name(target.name + ".new-link")
    tmp.symlink_to(to)
    tmp.replace(target)


def test_edits_to_the_file_a_link_points_at_are_seen(target: Path, dotfiles: Path, calls: Calls) -> None:
    """The settings file is a link into a dotfiles checkout: an edit there (or a write through the link) is an edit
    of the settings. Before, only the config folder was watched and such edits never applied."""
    target.unlink()
    target.symlink_to(dotfiles)
    with _watching(target, calls):
        write_private_file(dotfiles, b'{"gateway": {"port": 5}}')  # an atomic replace in the checkout
        assert calls.wait_for(1, 1.0), "an atomic replace of the linked file was missed"
        seen = calls.settled()
        with open(target, "w") as fh:  # an editor writing in place, through the link
            fh.write('{"gateway": {"port": 6}}')
        assert calls.wait_for(seen + 1, 1.0), "a write through the link was missed"
        seen = calls.settled()
        (dotfiles.parent / "README.md").write_text("x")  # other files in the checkout are not settings
        assert not calls.wait_for(seen + 1, DEBOUNCE + 0.4)


def test_a_link_pointed_at_another_file_is_followed(
    target: Path, dotfiles: Path, calls: Calls, tmp_path: Path
) -> None:
    target.unlink()
    target.symlink_to(dotfiles)
    other = tmp_path / "other-checkout" / "settings.json"
    other.parent.mkdir()
    other.write_text('{"gateway": {"port": 7}}')
    with _watching(target, calls):
        _link(target, other)
        assert calls.wait_for(1, 1.0), "the re-pointed link was missed"
        seen = calls.settled()
        other.write_text('{"gateway": {"port": 8}}')
        assert calls.wait_for(seen + 1, 1.0), "an edit of the file the link points at now was missed"
        seen = calls.settled()
        dotfiles.write_text('{"gateway": {"port": 9}}')  # the old file is no longer the settings
        assert not calls.wait_for(seen + 1, DEBOUNCE + 0.4)


def test_a_link_to_the_folder_above_keeps_that_folders_own_watch(target: Path, calls: Calls) -> None:
    """The linked file sits in the folder above the config folder, which is watched for re-arming already: when the
    link goes, only the settings handler comes off that folder's watch, and a deleted config folder is still
    noticed."""
    import shutil

    above = target.parent.parent / "settings.json"
    above.write_text("{}")
    target.unlink()
    target.symlink_to(above)
    with _watching(target, calls):
        above.write_text('{"gateway": {"port": 10}}')
        assert calls.wait_for(1, 1.0), "an edit of the linked file above the config folder was missed"
        seen = calls.settled()
        target.unlink()
        target.write_text("{}")  # a plain file again: the link's watch goes
        assert calls.wait_for(seen + 1, 1.0)
        seen = calls.settled()
        above.write_text('{"gateway": {"port": 11}}')
        assert not calls.wait_for(seen + 1, DEBOUNCE + 0.4), (
            "the old link's file still counts as the settings"
        )
        shutil.rmtree(target.parent)
        target.parent.mkdir()
        write_private_file(target, b'{"gateway": {"port": 12}}')
        seen = calls.settled()
        target.write_text('{"gateway": {"port": 13}}')
        assert calls.wait_for(seen + 1, 2.0), "the config folder's re-arming watch was lost with the link's"
