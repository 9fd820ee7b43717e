"""The engine under real concurrency: 50 agents streaming at once through a real gateway to a fake upstream that
rate-limits now and then (cooldowns set and expiring, sticky pins moving between accounts), while other threads
read the status (the tray, the page's /api/state over its real server, `headway status`) and the state file in tight loops, and the state is saved
continuously. Nothing may raise anywhere, the file must always parse, and what is saved at the end is what the
engine holds (issue 10, defect 2: the old engine serialized pins in a worker thread while the loop moved them)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from proxy.config.accounts import add_api_key_account
from proxy.config.paths import Paths, ensure_private_dir
from proxy.engine import EngineOptions
from tests.fakes import Behavior, FakeAnthropic
from tests.support.gateway import wait_until
from tray.app import build_services

pytestmark = pytest.mark.timeout(180)

AGENTS = 50
REQUESTS_EACH = 4
SESSIONS = 20
OLD_PINS = 2000  # sessions pinned in earlier runs: a save has real work to do while requests move pins
MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


class Problems(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.items: list[str] = []
        self.lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        self.add(f"log {record.name}: {record.getMessage()} {record.exc_text or ''}")

    def add(self, text: str) -> None:
        with self.lock:
            self.items.append(text)


@pytest.fixture
def problems(monkeypatch: pytest.MonkeyPatch) -> Iterator[Problems]:
    """ERROR logs from any logger (Headway's do not propagate), uncaught thread exceptions."""
    handler = Problems()
    loggers = [logging.getLogger(), logging.getLogger("headway")]
    for logger in loggers:
        logger.addHandler(handler)
    monkeypatch.setattr(
        threading, "excepthook", lambda args: handler.add(f"thread {args.thread}: {args.exc_value!r}")
    )
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)


def seed_state(paths: Paths) -> None:
    ensure_private_dir(paths.data_dir)
    now = time.time()
    pins = {f"old-{i}": ["gone-account", now - 60] for i in range(OLD_PINS)}
    paths.state_file.write_text(json.dumps({"version": 1, "quota": [], "health": {}, "pins": pins}))


def test_fifty_streams_with_status_readers_and_continuous_saves(problems: Problems) -> None:
    paths = Paths.from_env()
    seed_state(paths)
    with FakeAnthropic(default=Behavior(chunks=4, delay=0.005)) as upstream:
        environ = {**os.environ, "HEADWAY_ANTHROPIC_BASE_URL": upstream.url}
        services = build_services(
            paths, EngineOptions(port=0, environ=environ, state_save_interval=0.05, status_interval=0.05)
        )
        services.store.update(lambda s: setattr(s.routing, "mode", "sticky"))
        accounts = [
            add_api_key_account(
                services.store, services.keychain, "anthropic-api-key", f"acct-{i}", f"sk-ant-{i}"
            )
            for i in range(3)
        ]
        # Every fourth answer is a short rate limit: cool_down runs, accounts come back, sessions move between them.
        upstream.enqueue(
            *[
                Behavior(status=429, retry_after=0.2) if i % 4 == 0 else Behavior(chunks=4, delay=0.005)
                for i in range(400)
            ]
        )
        services.start()
        engine = services.engine
        assert engine._loop is not None
        engine._loop.call_soon_threadsafe(
            engine._loop.set_exception_handler,
            lambda loop, context: problems.add(
                f"loop: {context.get('message')} {context.get('exception')!r}"
            ),
        )
        assert wait_until(lambda: len(engine.settings.accounts) == 3, timeout=10)
        key = engine.access_key
        assert key
        url = engine.base_url
        done = threading.Event()
        outcomes: list[int] = []
        counters = {"status": 0, "http_status": 0, "page_state": 0, "file_reads": 0}
        lock = threading.Lock()

        def agent(n: int) -> None:
            with httpx.Client(timeout=30) as client:
                for r in range(REQUESTS_EACH):
                    headers = {
                        "x-api-key": key,
                        "anthropic-version": "2023-06-01",
                        "x-session-id": f"ses-{(n + r) % SESSIONS}",
                    }
                    with client.stream(
                        "POST", f"{url}/v1/messages", json={**MESSAGE, "stream": True}, headers=headers
                    ) as response:
                        body = response.read().decode()
                    if response.status_code == 200 and "message_stop" not in body:
                        problems.add(f"agent {n}: truncated stream {body[-200:]!r}")
                    with lock:
                        outcomes.append(response.status_code)

        def read_status(pause: float) -> None:
            while not done.is_set():
                status = engine.status()
                assert {a["id"] for a in status["accounts"]} == {a.id for a in accounts}
                with lock:
                    counters["status"] += 1
                time.sleep(pause)

        def read_status_http() -> None:
            with httpx.Client(timeout=10) as client:
                while not done.is_set():
                    response = client.get(f"{url}/status", headers={"x-api-key": key})
                    if response.status_code != 200:
                        problems.add(f"/status answered {response.status_code}")
                    with lock:
                        counters["http_status"] += 1

        def read_page_state() -> None:
            web = services.web
            assert web is not None and web.running
            with httpx.Client(timeout=10, follow_redirects=True) as client:
                signed_in = client.get(web.login_url())
                if signed_in.status_code != 200:
                    problems.add(f"page sign-in answered {signed_in.status_code}")
                    return
                while not done.is_set():
                    response = client.get(f"{web.url}/api/state")
                    if response.status_code != 200:
                        problems.add(f"/api/state answered {response.status_code}")
                    elif {a["id"] for a in response.json()["accounts"]} != {a.id for a in accounts}:
                        problems.add("/api/state without every account")
                    with lock:
                        counters["page_state"] += 1

        def read_file() -> None:
            while not done.is_set():
                try:
                    data = json.loads(paths.state_file.read_text())
                except ValueError as exc:
                    problems.add(f"state.json did not parse: {exc}")
                    continue
                if not isinstance(data.get("pins"), dict):
                    problems.add("state.json without pins")
                with lock:
                    counters["file_reads"] += 1

        def guarded(fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except BaseException as exc:  # reported, and the test fails on it
                problems.add(f"{fn.__name__}: {exc!r}")

        # One status reader without a pause (the race window is widest), one at a pace (more would starve the GIL).
        readers = [
            threading.Thread(target=guarded, args=(read_status, 0.0)),
            threading.Thread(target=guarded, args=(read_status, 0.001)),
            threading.Thread(target=guarded, args=(read_status_http,)),
            threading.Thread(target=guarded, args=(read_page_state,)),
            threading.Thread(target=guarded, args=(read_file,)),
        ]
        agents = [threading.Thread(target=guarded, args=(agent, n)) for n in range(AGENTS)]
        try:
            for thread in readers + agents:
                thread.start()
            for thread in agents:
                thread.join(120)
            assert not any(t.is_alive() for t in agents), "agents did not finish"
        finally:
            done.set()
            for thread in readers:
                thread.join(10)
            services.stop(timeout=5.0)

        assert problems.items == []
        assert len(outcomes) == AGENTS * REQUESTS_EACH
        # 429 / 503: every account was cooling down at that moment, or had just stopped cooling down.
        assert set(outcomes) <= {200, 429, 503}
        # How often all three cool down at once is timing: 81 to 145 of the 200 answers were 200s over 25 runs on
        # 2 cores (a bar at half failed now and then in CI). A quarter still says streams were served throughout.
        assert outcomes.count(200) >= len(outcomes) // 4, outcomes
        # Rate limits happened and requests fell back to another account (counting upstream requests against the
        # agents' said little: when all three accounts are cooling down the gateway answers 429 itself).
        rows = engine.request_log.query(limit=1000)
        assert any(r.status == 200 and len(r.fallback_chain) > 1 for r in rows), [
            r.fallback_chain for r in rows
        ]
        assert min(counters.values()) > 10, counters

        # The loop is gone: what it saved at shutdown is exactly what it held.
        saved = json.loads(paths.state_file.read_text())
        held = json.loads(engine._state.to_json())
        assert saved == held
        assert {f"ses-{i}" for i in range(SESSIONS)} <= set(saved["pins"])
        assert any(record.get("last_error") for record in saved["health"].values())
