"""Issue 10.8: an empty, deleted or unreadable settings file never drops the accounts.

Under a live engine with requests in flight, an editor's truncate-then-write must never make the engine see zero
accounts; from the real CLI, a write after `rm settings.json` (or with a folder in its place) is refused and says why.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from proxy.config.paths import Paths
from tests.fakes import FakeAnthropic
from tests.support.gateway import RunningGateway, run_cli, start_gateway, wait_until

MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gw(anthropic: FakeAnthropic) -> Iterator[RunningGateway]:
    gateway = start_gateway(anthropic_url=anthropic.url)
    try:
        yield gateway
    finally:
        gateway.stop()


class Traffic:
    """Requests in a loop on another thread while the test edits the file; counts the answers."""

    def __init__(self, gw: RunningGateway) -> None:
        self._gw = gw
        self.statuses: Counter[int] = Counter()
        self.bodies: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic")

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                r = client.post(f"{self._gw.url}/v1/messages", json=MESSAGE, headers=self._gw.headers())
                self.statuses[r.status_code] += 1
                if r.status_code != 200 and len(self.bodies) < 5:
                    self.bodies.append(r.text[:300])

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def _editor_save(path: Path, text: str, *, hold_empty: Callable[[], None] | None = None) -> None:
    """A plain, non-atomic save: truncate, then write (what many editors and `>` redirection do)."""
    with open(path, "w") as fh:
        fh.flush()
        if hold_empty is not None:
            hold_empty()
        fh.write(text)


@pytest.mark.timeout(120)
def test_truncate_then_write_under_a_live_engine_never_drops_the_accounts(gw: RunningGateway) -> None:
    account = gw.add("anthropic", "main", "sk-ant-main")
    path = gw.services.paths.settings_file
    base = json.loads(path.read_text())
    engine, store = gw.services.engine, gw.services.store
    seen_account_counts: list[int] = []
    store.subscribe(lambda s: seen_account_counts.append(len(s.accounts)))

    with Traffic(gw) as traffic:
        # 1. The empty state held until the watcher has certainly reloaded it (awaited, not slept).
        for i in range(10):
            text = json.dumps({**base, "routing": {"mode": "sticky" if i % 2 else "main-first"}}, indent=2)

            def until_the_empty_file_is_an_error() -> None:
                assert wait_until(
                    lambda: store.error is not None and "the file is empty" in str(store.error), timeout=10
                ), f"the watcher never reported the empty file (error: {store.error})"
                assert [a.id for a in engine.settings.accounts] == [account.id], "the engine lost the account"
                assert wait_until(lambda: bool(engine.status()["settings_error"]), timeout=10), (
                    "status hides it"
                )

            _editor_save(path, text, hold_empty=until_the_empty_file_is_an_error)
            mode = "sticky" if i % 2 else "main-first"
            assert wait_until(
                lambda mode=mode: store.error is None and engine.settings.routing.mode == mode, timeout=10
            )

        # 2. A hundred quick saves, as an editor under load does them.
        for i in range(100):
            _editor_save(
                path, json.dumps({**base, "gateway": {**base["gateway"], "max_body_mb": 10 + i}}, indent=2)
            )
        assert wait_until(
            lambda: engine.settings.gateway.max_body_mb == 109 and store.error is None, timeout=10
        )

    assert 0 not in seen_account_counts, "the settings in force had zero accounts at some point"
    assert [a.id for a in engine.settings.accounts] == [account.id]
    assert traffic.statuses[200] > 0
    assert set(traffic.statuses) == {200}, (traffic.statuses, traffic.bodies)


@pytest.mark.timeout(120)
def test_a_deleted_file_under_a_live_engine_keeps_serving_and_is_reported(gw: RunningGateway) -> None:
    account = gw.add("anthropic", "main", "sk-ant-main")
    path = gw.services.paths.settings_file
    path.unlink()
    store, engine = gw.services.store, gw.services.engine
    assert wait_until(lambda: store.error is not None and bool(engine.status()["settings_error"]), timeout=10)
    status = engine.status()
    assert status["settings_file"] == str(path)
    assert "the file is missing" in status["settings_error"][0]
    r = httpx.post(f"{gw.url}/v1/messages", json=MESSAGE, headers=gw.headers(), timeout=10)
    assert r.status_code == 200, r.text
    assert [a.id for a in engine.settings.accounts] == [account.id]
    with pytest.raises(Exception, match="the file is missing"):
        engine.set_paused(True)
    assert not path.exists()


# --------------------------------------------------------------------------- the real CLI


def _cli_home(tmp_path: Path) -> tuple[Paths, dict[str, str]]:
    home = tmp_path / "cli-home"
    env = {"HEADWAY_HOME": str(home)}
    paths = Paths.from_env(env)
    return paths, env


def _seed(paths: Paths, env: dict[str, str]) -> None:
    """A settings file with one account written by the CLI itself, on the file keychain (no D-Bus needed)."""
    paths.ensure()
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}}))
    r = run_cli(
        "accounts", "add", "openai", "--label", "work", "--api-key-stdin", input="sk-proj-abc\n", env=env
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.timeout(120)
def test_cli_write_after_rm_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    paths, env = _cli_home(tmp_path)
    _seed(paths, env)
    paths.settings_file.unlink()

    r = run_cli("cache", "mode", "hybrid", env=env)
    assert r.returncode != 0
    assert "the file is missing" in r.stderr and str(paths.settings_last_good) in r.stderr
    assert not paths.settings_file.exists(), "the CLI wrote a new settings file over a missing one"

    r = run_cli(
        "accounts", "add", "anthropic", "--label", "x", "--api-key-stdin", input="sk-ant-x\n", env=env
    )
    assert r.returncode != 0 and not paths.settings_file.exists()

    status = json.loads(run_cli("status", "--json", env=env).stdout)
    assert status["settings_file"] == str(paths.settings_file)
    assert "the file is missing" in status["settings_error"][0]
    assert [a["id"] for a in status["accounts"]] == ["work"], "status lost the accounts"

    # The documented recovery: copy the last good settings back.
    paths.settings_file.write_bytes(paths.settings_last_good.read_bytes())
    r = run_cli("cache", "mode", "hybrid", env=env)
    assert r.returncode == 0, r.stderr
    settings = json.loads(paths.settings_file.read_text())
    assert [a["id"] for a in settings["accounts"]] == ["work"] and settings["cache"][
        "anthropic_mode"
    ] == "hybrid"


@pytest.mark.timeout(120)
def test_cli_write_with_an_empty_file_or_a_folder_in_its_place_is_refused(tmp_path: Path) -> None:
    paths, env = _cli_home(tmp_path)
    _seed(paths, env)
    good = paths.settings_file.read_bytes()

    paths.settings_file.write_text("")
    r = run_cli("dumps", "on", env=env)
    assert r.returncode != 0 and "the file is empty" in r.stderr
    assert paths.settings_file.read_bytes() == b""

    paths.settings_file.unlink()
    paths.settings_file.mkdir()
    r = run_cli("cache", "mode", "hybrid", env=env)
    assert r.returncode != 0 and "is a folder, not a file" in r.stderr
    assert paths.settings_file.is_dir()
    paths.settings_file.rmdir()
    paths.settings_file.write_bytes(good)
    assert run_cli("dumps", "on", env=env).returncode == 0
