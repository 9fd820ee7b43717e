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

from proxy.config.paths import APP_NAME, Paths
from proxy.config.settings import Account, Settings, SettingsError
from proxy.config.store import SettingsStore

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "settings.json"


def _make(path: Path) -> SettingsStore:
    """A store laid out like a Headway home's: the last-good copy in a data folder beside the config folder."""
    return SettingsStore(path, last_good=path.parent.parent / "data" / "settings.last-good.json")


@pytest.fixture
def store(path: Path) -> SettingsStore:
    s = _make(path)
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


def test_ensure_tightens_an_open_home_and_old_lock_files(tmp_path: Path) -> None:
    """Issue 10.12: the HEADWAY_HOME root was 0755 and lock files 0644; existing ones are tightened on start."""
    home = tmp_path / "h"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    paths = Paths.from_env({"HEADWAY_HOME": str(home)})
    for folder in (paths.config_dir, paths.run_dir):
        folder.mkdir(parents=True)
    for lock in (paths.lock_file, paths.settings_file.with_name("settings.json.lock")):
        lock.touch()
        lock.chmod(0o644)
    paths.ensure()
    assert _mode(home) == 0o700
    assert _mode(paths.lock_file) == 0o600
    assert _mode(paths.settings_file.with_name("settings.json.lock")) == 0o600


# --------------------------------------------------------------------------- load


def test_load_without_file_gives_defaults_and_writes_nothing(path: Path) -> None:
    s = _make(path)
    assert s.load() == Settings()
    assert s.error is None
    assert not path.exists()


def test_load_create_writes_defaults_owner_only(path: Path) -> None:
    _make(path).load(create=True)
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert Settings.model_validate(_on_disk(path)) == Settings()


def test_load_create_never_overwrites_an_existing_file(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text('{"gateway": {"port": 9000}}')
    assert _make(path).load(create=True).gateway.port == 9000
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
            own = _make(path)
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
        from proxy.config.settings import Account
        from proxy.config.store import SettingsStore
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
    a, b = _make(path), _make(path)
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
    s = _make(path)
    assert s.load() == Settings()
    assert s.error is not None and s.error.problems[0].startswith("routing.mode:")


# --------------------------------------------------------------------------- a file that existed and is now unusable


def _last_good(path: Path) -> Path:
    return path.parent.parent / "data" / "settings.last-good.json"


def _assert_refuses_writes(store: SettingsStore, path: Path, match: str) -> None:
    before = path.read_bytes() if path.is_file() else None
    called = []
    with pytest.raises(SettingsError, match=match) as info:
        store.update(lambda s: called.append(s))
    assert str(path) in str(info.value)
    assert not called, "the edit must not run against a file that could not be read"
    assert (path.read_bytes() if path.is_file() else None) == before


def test_a_deleted_file_after_a_good_one_is_an_error_not_defaults(store: SettingsStore, path: Path) -> None:
    store.update(_add("Work"))
    path.unlink()
    assert store.reload() is False
    assert [a.id for a in store.current.accounts] == ["work"], "the accounts in force were dropped"
    assert store.error is not None
    assert "the file is missing" in str(store.error) and str(_last_good(path)) in str(store.error)
    _assert_refuses_writes(store, path, "the file is missing")
    assert not path.exists(), "a write recreated the file it could not read"


def test_an_emptied_file_after_a_good_one_is_an_error_and_the_next_write_applies(
    store: SettingsStore, path: Path
) -> None:
    store.update(_add("Work"))
    path.write_text("")  # `: > settings.json`, or an editor's truncate before its write
    assert store.reload() is False
    assert [a.id for a in store.current.accounts] == ["work"]
    assert store.error is not None and "the file is empty" in str(store.error)
    _assert_refuses_writes(store, path, "the file is empty")
    path.write_text(
        json.dumps(
            {
                **json.loads(Settings().to_json()),
                "accounts": [
                    {"id": "work", "kind": "anthropic-api-key", "label": "Work"},
                    {"id": "home", "kind": "openai-api-key", "label": "Home"},
                ],
            }
        )
    )
    assert store.reload() is True
    assert store.error is None and [a.id for a in store.current.accounts] == ["work", "home"]


def test_a_whitespace_only_file_is_empty_too(store: SettingsStore, path: Path) -> None:
    store.update(_add("Work"))
    path.write_text(" \n\t\n")
    assert store.reload() is False
    assert store.error is not None and "empty" in str(store.error)
    assert [a.id for a in store.current.accounts] == ["work"]


def test_a_folder_in_its_place_is_an_error(store: SettingsStore, path: Path) -> None:
    store.update(_add("Work"))
    path.unlink()
    path.mkdir()
    assert store.reload() is False
    assert store.error is not None and "is a folder, not a file" in str(store.error)
    assert [a.id for a in store.current.accounts] == ["work"]
    _assert_refuses_writes(store, path, "is a folder")
    assert path.is_dir()


def test_permission_denied_is_an_error_and_refuses_writes(
    store: SettingsStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root (the test container) chmod 000 does not stop reads, so the open is refused at the OS boundary."""
    import proxy.config.store as module

    store.update(_add("Work"))
    real_open = open

    def denied(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    if os.geteuid() == 0:
        monkeypatch.setattr(module, "open", denied, raising=False)
    else:
        path.chmod(0)
    assert store.reload() is False
    assert store.error is not None and "cannot read the file: Permission denied" in str(store.error)
    assert [a.id for a in store.current.accounts] == ["work"]
    with pytest.raises(SettingsError, match="Permission denied") as refused:
        store.update(_add("Other"))
    assert "headway settings restore" in str(refused.value)
    monkeypatch.undo()
    path.chmod(0o600)
    assert [a["id"] for a in _on_disk(path)["accounts"]] == ["work"]


def test_a_file_that_is_not_utf8_is_an_error(store: SettingsStore, path: Path) -> None:
    store.update(_add("Work"))
    path.write_bytes(b'{"accounts": [\xff\xfe]}')
    assert store.reload() is False
    assert store.error is not None and "not UTF-8" in str(store.error)
    assert [a.id for a in store.current.accounts] == ["work"]


def test_a_utf8_bom_is_accepted(store: SettingsStore, path: Path) -> None:
    path.write_bytes(b"\xef\xbb\xbf" + b'{"gateway": {"port": 9001}}')
    assert store.reload() is True
    assert store.current.gateway.port == 9001


def test_an_oversized_file_is_refused_before_it_is_read(
    store: SettingsStore, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import proxy.config.store as module

    store.update(_add("Work"))
    with open(path, "w") as fh:
        fh.write('{"accounts": [], "x": "' + "a" * (2 * 1024 * 1024) + '"}')
    opened: list[str] = []
    real_open = open

    def watching(file: object, *args: object, **kwargs: object) -> object:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(module, "open", watching, raising=False)
    assert store.reload() is False
    assert str(path) not in opened, "an oversized file was opened"
    assert store.error is not None
    assert str(store.error) == (
        f"{path}: the file is 2.0 MiB; settings files are at most 1024 KiB — is this the right file?"
    )
    assert [a.id for a in store.current.accounts] == ["work"]
    with pytest.raises(SettingsError, match="at most 1024 KiB"):
        store.update(_add("Other"))


def test_a_fresh_process_with_the_file_gone_runs_on_the_last_good_copy_and_refuses_writes(
    store: SettingsStore, path: Path
) -> None:
    store.update(_add("Work"))
    path.unlink()
    fresh = _make(path)
    assert [a.id for a in fresh.load(create=True).accounts] == ["work"], "a new process lost the accounts"
    assert not path.exists(), "load(create=True) wrote defaults over a missing file that existed before"
    assert fresh.error is not None and "the file is missing" in str(fresh.error)
    _assert_refuses_writes(fresh, path, "the file is missing")


def test_recovery_copy_the_last_good_file_back(store: SettingsStore, path: Path) -> None:
    store.update(_add("Work"))
    path.unlink()
    assert store.reload() is False
    path.write_bytes(_last_good(path).read_bytes())  # what the error tells the user to do
    store.reload()
    assert store.error is None
    assert [a.id for a in store.update(_add("Home")).accounts] == ["work", "home"]


def test_recovery_delete_the_last_good_copy_knowingly_to_start_over(store: SettingsStore, path: Path) -> None:
    store.update(_add("Work"))
    path.unlink()
    _last_good(path).unlink()
    fresh = _make(path)
    assert fresh.load(create=True) == Settings()
    assert fresh.error is None and path.exists()


def test_a_true_first_run_with_an_empty_file_starts_from_defaults(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_text("")
    s = _make(path)
    assert s.load() == Settings() and s.error is None
    s.update(_add("Work"))
    assert [a["id"] for a in _on_disk(path)["accounts"]] == ["work"]


def test_the_last_good_copy_follows_every_good_load_and_write(store: SettingsStore, path: Path) -> None:
    store.update(_add("Work"))
    assert Settings.model_validate_json(_last_good(path).read_text()) == store.current
    assert stat.S_IMODE(_last_good(path).stat().st_mode) == 0o600
    hand_edit = json.dumps({**_on_disk(path), "routing": {"mode": "sticky"}})
    path.write_text(hand_edit)
    store.reload()
    assert _last_good(path).read_text() == hand_edit
    path.write_text("{ broken")
    store.reload()
    assert _last_good(path).read_text() == hand_edit, "an invalid file replaced the last good copy"


def test_an_existing_file_without_a_last_good_copy_gets_one_at_load(path: Path) -> None:
    """An upgrade from a version without the copy: the first load of the user's file marks it as existing."""
    path.parent.mkdir(parents=True)
    text = json.dumps({"accounts": [{"id": "w", "kind": "openai-api-key", "label": "W"}]})
    path.write_text(text)
    _make(path).load()
    assert _last_good(path).read_text() == text
    path.unlink()
    fresh = _make(path)
    assert [a.id for a in fresh.load(create=True).accounts] == ["w"] and fresh.error is not None


def test_a_symlinked_file_is_read_and_written_through_the_link(path: Path, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "settings.json"
    real.write_text('{"gateway": {"port": 9002}}')
    path.parent.mkdir(parents=True)
    path.symlink_to(real)
    s = _make(path)
    assert s.load().gateway.port == 9002
    s.update(_add("Work"))
    assert path.is_symlink(), "the write replaced the link with a file"
    assert [a["id"] for a in json.loads(real.read_text())["accounts"]] == ["work"]
    real.unlink()  # a dangling link after a good file: missing, an error
    assert s.reload() is False
    assert s.error is not None and "missing" in str(s.error)
    assert [a.id for a in s.current.accounts] == ["work"]


def test_a_deleted_config_folder_is_an_error_too(store: SettingsStore, path: Path) -> None:
    import shutil

    store.update(_add("Work"))
    shutil.rmtree(path.parent)
    assert store.reload() is False
    assert store.error is not None
    assert [a.id for a in store.current.accounts] == ["work"]
    _assert_refuses_writes(store, path, "missing")
    # Nothing made the folder again: a restore of the whole folder (cp -r backup/config …) finds its place free.
    assert not path.parent.exists()


def test_a_file_that_existed_stays_missing_even_when_the_copy_could_not_be_kept(
    path: Path, tmp_path: Path
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    s = SettingsStore(path, last_good=blocked / "settings.last-good.json")
    s.load()
    s.update(_add("Work"))
    path.unlink()
    assert s.reload() is False
    assert s.error is not None and "missing" in str(s.error)
    assert [a.id for a in s.current.accounts] == ["work"]


def test_lock_files_are_owner_only_and_old_ones_are_tightened(path: Path) -> None:
    lock = path.with_name("settings.json.lock")
    path.parent.mkdir(parents=True)
    lock.touch()
    lock.chmod(0o644)
    s = _make(path)
    s.update(_add("Work"))
    assert _mode(lock) == 0o600
    other = path.parent / "fresh.json"
    SettingsStore(other).update(_add("Work"))
    assert _mode(other.with_name("fresh.json.lock")) == 0o600


def test_a_second_store_sees_the_first_ones_updates(path: Path) -> None:
    writer, reader = _make(path), _make(path)
    writer.load()
    reader.load()
    seen: list[Settings] = []
    reader.subscribe(seen.append)
    writer.update(_add("Work"))
    assert reader.current.accounts == []  # nothing until it reloads (the watcher's job)
    assert reader.reload() is True
    assert [a.id for a in reader.current.accounts] == ["work"]
    assert len(seen) == 1


@pytest.mark.parametrize("damage", ["missing", "empty", "broken", "folder"])
def test_restore_last_good_puts_the_copy_back_and_keeps_what_was_in_the_way(
    store: SettingsStore, path: Path, damage: str
) -> None:
    store.update(_add("Work"))
    if damage == "missing":
        path.unlink()
    elif damage == "empty":
        path.write_text("")
    elif damage == "broken":
        path.write_text('{"accounts": [')
    else:
        path.unlink()
        path.mkdir()
        (path / "inside.txt").write_text("kept")
    store.reload()
    assert store.error is not None
    aside = store.restore_last_good()
    assert store.error is None and [a["id"] for a in _on_disk(path)["accounts"]] == ["work"]
    assert _mode(path) == 0o600
    if damage == "missing":
        assert aside is None
    else:
        assert aside is not None and aside.name.startswith("settings.json.broken-")
        if damage == "broken":
            assert aside.read_text() == '{"accounts": ['
        if damage == "folder":
            assert (aside / "inside.txt").read_text() == "kept"
    with pytest.raises(SettingsError, match="nothing to restore"):
        store.restore_last_good()
