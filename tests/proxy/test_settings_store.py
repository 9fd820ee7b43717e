"""SettingsStore: the one write path (atomic, locked, owner-only), last-good on invalid files, listeners, and more
than one store (process) on the same file. Also: HEADWAY_HOME moves every file Headway writes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from proxy.paths import APP_NAME, Paths
from proxy.settings import Account, Settings, SettingsError
from proxy.settings_store import SettingsStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "settings.json"


@pytest.fixture
def store(path: Path) -> SettingsStore:
    s = SettingsStore(path)
    s.load()
    return s


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _add(label: str, kind: str = "anthropic-api-key"):  # type: ignore[no-untyped-def]
    def edit(s: Settings) -> None:
        s.accounts.append(Account(id=label.lower(), kind=kind, label=label))  # type: ignore[arg-type]

    return edit


def _on_disk(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text())  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- paths


def test_headway_home_moves_every_folder(tmp_path: Path) -> None:
    home = tmp_path / "portable"
    paths = Paths.from_env({"HEADWAY_HOME": str(home)})
    written = [
        paths.config_dir,
        paths.data_dir,
        paths.log_dir,
        paths.run_dir,
        paths.settings_file,
        paths.state_file,
        paths.request_log,
        paths.dumps_dir,
        paths.secrets_file,
        paths.lock_file,
        paths.runtime_file,
    ]
    for p in written:
        assert p.is_relative_to(home.resolve()), p
    assert paths.home == home.resolve()
    # and the keychain entries get a service name of their own, stable for the same home
    assert paths.keychain_service != APP_NAME and paths.keychain_service.startswith(APP_NAME + "-")
    assert Paths.from_env({"HEADWAY_HOME": str(home)}).keychain_service == paths.keychain_service
    assert (
        Paths.from_env({"HEADWAY_HOME": str(tmp_path / "other")}).keychain_service != paths.keychain_service
    )


def test_without_headway_home_the_platform_folders_are_used(tmp_path: Path) -> None:
    paths = Paths.from_env({})
    assert paths.home is None and paths.keychain_service == APP_NAME
    # conftest points XDG_* at tmp_path; platformdirs follows them on Linux
    if sys.platform.startswith("linux"):
        assert paths.config_dir == tmp_path / "xdg-config" / APP_NAME
        assert paths.data_dir == tmp_path / "xdg-data" / APP_NAME


def test_ensure_makes_owner_only_folders(tmp_path: Path) -> None:
    paths = Paths.from_env({"HEADWAY_HOME": str(tmp_path / "h")})
    paths.ensure()
    for folder in (paths.config_dir, paths.data_dir, paths.log_dir, paths.run_dir):
        assert _mode(folder) == 0o700, folder


# --------------------------------------------------------------------------- load


def test_load_without_file_gives_defaults_and_writes_nothing(path: Path) -> None:
    s = SettingsStore(path)
    assert s.load() == Settings()
    assert s.error is None
    assert not path.exists()


def test_load_create_writes_defaults_owner_only(path: Path) -> None:
    SettingsStore(path).load(create=True)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert Settings.model_validate(_on_disk(path)) == Settings()


def test_load_create_never_overwrites_an_existing_file(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"gateway": {"port": 9000}}')
    assert SettingsStore(path).load(create=True).gateway.port == 9000
    assert _on_disk(path) == {"gateway": {"port": 9000}}


# --------------------------------------------------------------------------- update


def test_update_writes_atomically_owner_only_and_leaves_no_temp_files(
    store: SettingsStore, path: Path
) -> None:
    new = store.update(_add("Work"))
    assert [a.id for a in new.accounts] == ["work"]
    assert store.current == new
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert Settings.model_validate(_on_disk(path)) == new
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json", "settings.json.lock"]


def test_update_accepts_a_returned_settings_object(store: SettingsStore) -> None:
    new = store.update(
        lambda s: s.model_copy(update={"routing": s.routing.model_copy(update={"mode": "sticky"})})
    )
    assert new.routing.mode == "sticky" and store.current.routing.mode == "sticky"


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(
    store: SettingsStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.update(_add("Work"))
    before = path.read_bytes()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        store.update(_add("Other"))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert [a.id for a in store.current.accounts] == ["work"]


def test_concurrent_updates_from_eight_threads_all_land(store: SettingsStore, path: Path) -> None:
    store.load(create=True)
    n = 8
    barrier = threading.Barrier(n + 1)
    errors: list[BaseException] = []
    torn: list[str] = []
    done = threading.Event()

    def writer(i: int) -> None:
        try:
            barrier.wait(5)
            for j in range(3):
                store.update(_add(f"T{i}x{j}"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    def reader() -> None:
        # A reader never sees a half-written file: every read parses.
        barrier.wait(5)
        while not done.is_set():
            text = path.read_text()
            try:
                json.loads(text)
            except ValueError:
                torn.append(text)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    watcher = threading.Thread(target=reader)
    for t in [*threads, watcher]:
        t.start()
    for t in threads:
        t.join(30)
    done.set()
    watcher.join(5)
    assert not errors, errors
    assert not torn
    expected = {f"t{i}x{j}" for i in range(n) for j in range(3)}
    assert {a["id"] for a in _on_disk(path)["accounts"]} == expected
    assert {a.id for a in store.current.accounts} == expected, "the store's settings in force went stale"
    assert sorted(p.name for p in path.parent.iterdir()) == ["settings.json", "settings.json.lock"]


def test_settings_in_force_follow_write_order_when_a_writer_is_preempted(store: SettingsStore) -> None:
    """A writer paused right after its write must not swap its older settings in over a later writer's."""
    first_released = threading.Event()
    second_done = threading.Event()
    real_lock = store._lock

    class PreemptedAfterRelease:
        def __enter__(self) -> object:
            return real_lock.__enter__()

        def __exit__(self, *exc: object) -> None:
            real_lock.__exit__(*exc)
            if threading.current_thread().name == "first":
                first_released.set()
                second_done.wait(5)

    store._lock = PreemptedAfterRelease()  # type: ignore[assignment]
    seen: list[list[str]] = []
    store.subscribe(lambda s: seen.append([a.id for a in s.accounts]))

    first = threading.Thread(target=store.update, args=(_add("A"),), name="first")
    first.start()
    assert first_released.wait(5)
    store.update(_add("B"))
    second_done.set()
    first.join(5)
    assert [a.id for a in store.current.accounts] == ["a", "b"]
    assert seen[-1] == ["a", "b"], f"listeners were last told {seen[-1]}"


def test_concurrent_updates_from_separate_stores_all_land(path: Path) -> None:
    """Each thread has its own store: the file lock, not the in-process mutex, keeps updates from being lost."""
    n = 8
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            own = SettingsStore(path)
            own.load()
            barrier.wait(5)
            own.update(_add(f"S{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert {a["id"] for a in _on_disk(path)["accounts"]} == {f"s{i}" for i in range(n)}


def test_concurrent_updates_from_separate_processes_all_land(path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from proxy.settings import Account
        from proxy.settings_store import SettingsStore
        store = SettingsStore(Path(sys.argv[1]))
        tag = sys.argv[2]
        for j in range(5):
            store.update(lambda s, j=j: s.accounts.append(Account(id=f"{tag}-{j}", kind="openai-api-key", label=tag)))
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(path), f"p{i}"], cwd=ROOT, stderr=subprocess.PIPE)
        for i in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err.decode()
    assert {a["id"] for a in _on_disk(path)["accounts"]} == {f"p{i}-{j}" for i in range(4) for j in range(5)}


def test_update_refuses_to_overwrite_an_invalid_file(store: SettingsStore, path: Path) -> None:
    store.update(_add("Work"))
    broken = '{"gateway": {"port": "eighty"}, "accounts": []}'
    path.write_text(broken)
    called = []
    with pytest.raises(SettingsError) as info:
        store.update(lambda s: called.append(s))
    assert "gateway.port" in str(info.value) and str(path) in str(info.value)
    assert not called, "the edit must not even run against a broken file"
    assert path.read_text() == broken


def test_update_rejects_an_invalid_result_and_writes_nothing(store: SettingsStore, path: Path) -> None:
    store.update(_add("Work"))
    before = path.read_bytes()
    with pytest.raises(SettingsError, match=r"accounts\[1\]\.id: duplicate account id 'work'"):
        store.update(_add("Work"))
    assert path.read_bytes() == before
    assert [a.id for a in store.current.accounts] == ["work"]


def test_update_validates_in_place_edits_that_skip_assignment(store: SettingsStore, path: Path) -> None:
    def edit(s: Settings) -> None:
        s.routing.fallback_statuses.append(200)  # a list edited in place is not validated on assignment

    with pytest.raises(SettingsError, match=r"routing\.fallback_statuses\[3\]"):
        store.update(edit)
    assert not path.exists()


def test_update_starts_from_the_file_not_from_a_stale_copy(path: Path) -> None:
    a, b = SettingsStore(path), SettingsStore(path)
    a.load()
    b.load()
    a.update(_add("One"))
    b.update(_add("Two"))  # b never reloaded, yet must not drop "one"
    assert [x["id"] for x in _on_disk(path)["accounts"]] == ["one", "two"]


# --------------------------------------------------------------------------- listeners


def test_listeners_are_called_once_per_real_change(store: SettingsStore, path: Path) -> None:
    seen: list[Settings] = []
    store.subscribe(seen.append)

    store.update(_add("Work"))
    assert len(seen) == 1 and [a.id for a in seen[0].accounts] == ["work"]

    store.update(lambda s: None)  # no change
    assert store.reload() is False  # the file is what we already have (the watcher's echo of our own write)
    assert len(seen) == 1

    path.write_text(json.dumps({**_on_disk(path), "routing": {"mode": "sticky"}}))
    assert store.reload() is True
    assert len(seen) == 2 and seen[1].routing.mode == "sticky"

    path.write_text("{ broken")
    assert store.reload() is False
    assert len(seen) == 2

    path.write_text(seen[1].to_json())  # fixed back to what is in force: valid again, but nothing changed
    assert store.reload() is False
    assert store.error is None
    assert len(seen) == 2


def test_a_failing_listener_does_not_stop_the_others(
    store: SettingsStore, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[Settings] = []

    def broken(_: Settings) -> None:
        raise RuntimeError("boom")

    store.subscribe(broken)
    store.subscribe(seen.append)
    store.update(_add("Work"))
    assert len(seen) == 1
    assert "settings listener failed" in caplog.text


# --------------------------------------------------------------------------- reload / last good


def test_invalid_file_keeps_last_good_settings_and_says_why(
    store: SettingsStore, path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store.update(lambda s: setattr(s.gateway, "port", 8000))
    good = store.current

    path.write_text('{"gateway": {"port": 8001, "prot": 1}}')
    assert store.reload() is False
    assert store.current == good
    assert store.current.gateway.port == 8000
    error = store.error
    assert error is not None
    assert error.problems == ["gateway.prot: unknown setting (check the spelling)"]
    assert str(error) == f"{path}: gateway.prot: unknown setting (check the spelling)"
    assert "keeping the last good settings" in caplog.text

    # the same error is logged once, not on every reload
    caplog.clear()
    store.reload()
    assert "keeping the last good settings" not in caplog.text

    path.write_text('{"gateway": {"port": 8001}}')
    assert store.reload() is True
    assert store.error is None
    assert store.current.gateway.port == 8001


def test_invalid_file_at_first_load_keeps_defaults_and_records_the_error(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"routing": {"mode": "random"}}')
    s = SettingsStore(path)
    assert s.load() == Settings()
    assert s.error is not None and s.error.problems[0].startswith("routing.mode:")


def test_a_deleted_file_means_defaults(store: SettingsStore, path: Path) -> None:
    store.update(_add("Work"))
    path.unlink()
    assert store.reload() is True
    assert store.current == Settings()


def test_a_second_store_sees_the_first_ones_updates(path: Path) -> None:
    writer, reader = SettingsStore(path), SettingsStore(path)
    writer.load()
    reader.load()
    seen: list[Settings] = []
    reader.subscribe(seen.append)
    writer.update(_add("Work"))
    assert reader.current.accounts == []  # nothing until it reloads (the watcher's job)
    assert reader.reload() is True
    assert [a.id for a in reader.current.accounts] == ["work"]
    assert len(seen) == 1
