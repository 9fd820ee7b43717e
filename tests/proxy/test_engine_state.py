"""The engine loop owns the runtime state: other threads only read published snapshots, persistence serializes on
the loop, and a failed save is logged and retried (issue 10, defect 2)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.config.paths import Paths
from proxy.engine import Engine, EngineOptions
from proxy.routing.state import RuntimeState, StateSaver
from tests.fakes import Behavior, FakeAnthropic
from tests.support.gateway import wait_until
from tray.app import Services, build_services

pytestmark = pytest.mark.timeout(60)


class Errors(logging.Handler):
    """Every record at ERROR or above, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def errors() -> Iterator[Errors]:
    """ERROR records from Headway's loggers (which do not propagate) and from everything else (asyncio, threads)."""
    handler = Errors()
    loggers = [logging.getLogger(), logging.getLogger("headway")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def start(anthropic: FakeAnthropic, **options: Any) -> Services:
    environ = {**os.environ, "HEADWAY_ANTHROPIC_BASE_URL": anthropic.url}
    services = build_services(Paths.from_env(), EngineOptions(port=0, environ=environ))
    for name, value in options.items():
        setattr(services.engine.options, name, value)
    services.start()
    return services


def on_loop(engine: Engine, fn: Any) -> Any:
    async def run() -> Any:
        return fn()

    return engine.call(run())


def make_dirty(engine: Engine, session: str = "ses-1") -> None:
    def change() -> None:
        engine._state.router.pin(session, "acct", time.time())
        engine._state.dirty = True

    on_loop(engine, change)


def saved(paths: Paths) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(paths.state_file.read_text())
    except (OSError, ValueError):
        return None
    return data


# ---------------------------------------------------------------- persistence


def test_state_is_serialized_on_the_loop_thread(anthropic: FakeAnthropic, errors: Errors) -> None:
    """The old engine serialized in a worker thread while requests moved pins: `OrderedDict mutated during iteration`."""
    services = start(anthropic, state_save_interval=0.05)
    engine = services.engine
    threads: list[str] = []
    real = engine._state.to_json

    def recording() -> str:
        threads.append(threading.current_thread().name)
        return real()

    engine._state.to_json = recording  # type: ignore[method-assign]
    try:
        make_dirty(engine)
        assert wait_until(lambda: "ses-1" in (saved(services.paths) or {}).get("pins", {}), timeout=10)
    finally:
        services.stop(timeout=3.0)
    assert threads and set(threads) == {"headway-engine"}
    assert errors.messages() == []


def test_a_failed_save_is_logged_and_retried(
    anthropic: FakeAnthropic, errors: Errors, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-OSError from the write used to kill the persist task silently; now it is logged and the save retried."""
    import proxy.routing.state

    calls: list[int] = []
    real = proxy.routing.state.write_private_file

    def flaky(path: Path, data: bytes) -> None:
        calls.append(len(data))
        if len(calls) == 1:
            raise ValueError("simulated serializer bug")
        real(path, data)

    monkeypatch.setattr(proxy.routing.state, "write_private_file", flaky)
    services = start(anthropic, state_save_interval=0.05)
    try:
        make_dirty(services.engine, "ses-retry")
        assert wait_until(lambda: "ses-retry" in (saved(services.paths) or {}).get("pins", {}), timeout=10)
        make_dirty(services.engine, "ses-later")  # the persist loop is still alive
        assert wait_until(lambda: "ses-later" in (saved(services.paths) or {}).get("pins", {}), timeout=10)
    finally:
        services.stop(timeout=3.0)
    assert len(calls) >= 3
    assert any(
        "cannot save the runtime state" in m and "simulated serializer bug" in m for m in errors.messages()
    )
    assert not any("headway-state-persist" in m for m in errors.messages())  # the task never died


async def test_saver_writes_what_the_state_was_when_the_save_began(tmp_path: Path) -> None:
    """Pins move on the loop while the worker thread writes: the file holds one consistent serialization."""
    state = RuntimeState()
    for i in range(1000):
        state.router.pin(f"ses-{i}", "a", float(i))
    release = threading.Event()
    writing = threading.Event()
    written: list[bytes] = []

    def slow_write(path: Path, data: bytes) -> None:
        writing.set()
        release.wait(10)
        written.append(data)
        path.write_bytes(data)

    saver = StateSaver(state, tmp_path / "state.json", write=slow_write)
    state.dirty = True
    expected = state.to_json()
    save = asyncio.ensure_future(saver.save())
    assert await asyncio.to_thread(writing.wait, 10)
    for i in range(1000):  # the loop keeps changing the state meanwhile
        state.router.pin(f"ses-{i % 10}", "b", 5000.0 + i)
        state.router.pin(f"new-{i}", "b", 5000.0 + i)
    state.dirty = True
    release.set()
    assert await save is True
    assert written == [expected.encode()]
    assert state.dirty  # the later changes still need a save
    assert await saver.save() is True
    assert json.loads((tmp_path / "state.json").read_text()) == json.loads(state.to_json())


async def test_saver_never_runs_two_writes_at_once(tmp_path: Path) -> None:
    """A save cancelled mid-write (shutdown) leaves its thread writing; the next save waits for it."""
    state = RuntimeState(dirty=True)
    active = 0
    overlap = False
    release = threading.Event()
    lock = threading.Lock()

    def write(path: Path, data: bytes) -> None:
        nonlocal active, overlap
        with lock:
            active += 1
            overlap = overlap or active > 1
        release.wait(10)
        path.write_bytes(data)
        with lock:
            active -= 1

    saver = StateSaver(state, tmp_path / "state.json", write=write)
    first = asyncio.ensure_future(saver.save())
    await asyncio.sleep(0.05)
    first.cancel()
    second = asyncio.ensure_future(saver.save())
    await asyncio.sleep(0.05)
    release.set()
    assert await second is True
    assert not overlap


async def test_persist_loop_survives_any_failure_and_backs_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = RuntimeState(dirty=True)
    attempts = 0
    delays: list[float] = []

    def broken(path: Path, data: bytes) -> None:
        nonlocal attempts
        attempts += 1
        if attempts <= 4:
            raise RuntimeError("disk on fire")
        path.write_bytes(data)

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        await asyncio.sleep(0)

    saver = StateSaver(state, tmp_path / "state.json", write=broken, max_backoff=0.3, sleep=sleep)
    with caplog.at_level(logging.INFO, logger="headway.state"):
        task = asyncio.ensure_future(saver.run(0.1))
        try:
            for _ in range(2000):
                if len(delays) >= 6:  # the sixth wait comes after the successful save
                    break
                await asyncio.sleep(0.005)
        finally:
            task.cancel()
    assert (tmp_path / "state.json").exists()
    assert not state.dirty
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 4 and all("disk on fire" in r.getMessage() for r in errors)
    assert any("saved again after 4 failed" in r.getMessage() for r in caplog.records)
    assert delays[:6] == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3, 0.1])  # backs off while failing, capped


def test_unreadable_state_is_kept_aside_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text('{"version": 1, "pins": {')  # truncated
    assert RuntimeState.load(path).router.to_json() == {}
    assert path.exists()  # a mere reader (`headway status` offline) changes nothing
    state = RuntimeState.load(path, owner=True)
    assert state.router.to_json() == {}
    assert not path.exists()
    aside = list(tmp_path.glob("state.json.unreadable-*"))
    assert len(aside) == 1 and aside[0].read_text() == '{"version": 1, "pins": {'


# ---------------------------------------------------------------- status reads


def test_status_from_another_thread_never_touches_the_state(anthropic: FakeAnthropic) -> None:
    """The old status() ran HealthBook.block() (which cleared expired cooldowns) on the caller's thread."""
    services = start(anthropic)
    engine = services.engine
    try:
        from proxy.config.accounts import add_api_key_account

        account = add_api_key_account(
            services.store, services.keychain, "anthropic-api-key", "main", "sk-ant-1"
        )
        assert wait_until(lambda: engine.settings.account(account.id) is not None)
        threads: list[str] = []
        book = engine._state.health
        real = book.block

        def recording(*args: Any, **kwargs: Any) -> Any:
            threads.append(threading.current_thread().name)
            return real(*args, **kwargs)

        book.block = recording  # type: ignore[method-assign]
        on_loop(engine, lambda: book.cool_down(account.id, time.time() - 1, "expired 429"))
        on_loop(engine, engine._state_changed)
        status = engine.status()
        assert [a["health"] for a in status["accounts"]] == ["healthy"]
        assert threads and set(threads) == {"headway-engine"}
        status["accounts"].clear()  # callers get a copy: the published snapshot is never changed by them
        assert len(engine.status()["accounts"]) == 1
    finally:
        services.stop(timeout=3.0)


def test_status_shows_a_cooldown_as_soon_as_the_agent_has_its_answer(anthropic: FakeAnthropic) -> None:
    import httpx

    services = start(anthropic)
    engine = services.engine
    try:
        from proxy.config.accounts import add_api_key_account

        account = add_api_key_account(
            services.store, services.keychain, "anthropic-api-key", "main", "sk-ant-1"
        )
        assert wait_until(lambda: engine.settings.account(account.id) is not None)
        assert engine.access_key
        for _ in range(5):
            anthropic.enqueue(Behavior(status=429, retry_after=30))
            response = httpx.post(
                f"{engine.base_url}/v1/messages",
                json={
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers={"x-api-key": engine.access_key, "anthropic-version": "2023-06-01"},
                timeout=10,
            )
            assert response.status_code == 429
            assert engine.status()["accounts"][0]["health"] == "cooling_down"
            on_loop(engine, lambda: engine._state.health.of(account.id).__setattr__("cooldown_until", None))
    finally:
        services.stop(timeout=3.0)


def test_status_returns_the_last_snapshot_when_the_loop_is_busy(anthropic: FakeAnthropic) -> None:
    services = start(anthropic)
    engine = services.engine
    try:
        before = engine.status()
        blocked = threading.Event()

        def hog() -> None:
            blocked.set()
            time.sleep(3.0)  # a stuck loop (a bug elsewhere): status must not hang the tray

        assert engine._loop is not None
        engine._loop.call_soon_threadsafe(hog)
        assert blocked.wait(5)
        engine._status_stale = True
        started = time.monotonic()
        status = engine.status()
        assert time.monotonic() - started < 2.0
        assert status["url"] == before["url"]
    finally:
        services.stop(timeout=3.0)


_SAVING_FOREVER = """
import asyncio, sys, time
from pathlib import Path
from proxy.routing.state import RuntimeState, StateSaver

async def main() -> None:
    state = RuntimeState()
    saver = StateSaver(state, Path(sys.argv[1]))
    i = 0
    while True:
        for _ in range(500):
            state.router.pin(f"ses-{i % 5000}", "acct", time.time())
            i += 1
        state.dirty = True
        await saver.save()
        if i == 500:
            print("saving", flush=True)

asyncio.run(main())
"""


def test_kill_9_at_any_moment_leaves_a_parseable_state_file(tmp_path: Path) -> None:
    """A process that does nothing but save is killed with SIGKILL at random moments: the file always parses."""
    import random
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    path = tmp_path / "data" / "state.json"
    rng = random.Random(10)
    for _ in range(8):
        proc = subprocess.Popen(
            [sys.executable, "-c", _SAVING_FOREVER, str(path)], cwd=root, stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "saving"
            time.sleep(rng.uniform(0.0, 0.2))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        data = json.loads(path.read_text())
        assert len(data["pins"]) >= 500
        assert oct(path.stat().st_mode & 0o777) == "0o600"
