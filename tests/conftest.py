"""Shared fixtures: every test runs in its own Headway home with its own keychain; nothing touches the real ones."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import keyring
import keyring.backend
import pytest

if TYPE_CHECKING:
    from tests.fakes import FakeAnthropic, FakeOpenAI
    from tests.fakes.codex import FakeCodex
    from tests.fakes.openai_auth import FakeOpenAIAuth
    from tests.support.private_keyring import PrivateSecretService
    from tests.support.redis_server import RedisServer

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()

_SCRUB_PREFIXES = ("HEADWAY_", "ANTHROPIC_", "OPENAI_", "CODEX_", "OPENCODE_", "PI_", "CLAUDE_")


class MemoryKeyring(keyring.backend.KeyringBackend):
    """An in-memory keychain for tests that do not exercise the real Secret Service."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.entries.pop((service, username), None)


def pytest_configure(config: pytest.Config) -> None:
    """Under scripts/test, watch the run's gnome-keyring-daemon (tests/support/keyring_daemon.py)."""
    from tests.support.keyring_daemon import KeyringDaemonWatch

    watch = KeyringDaemonWatch.from_environment()
    if watch is not None:
        config.pluginmanager.register(watch, "headway-keyring-daemon")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test, for fixtures that act on how it went (`no_gateway_left_running`)."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _started_gateways() -> ModuleType | None:
    """tests/support/gateway.py, which counts the `headway serve` processes it starts — if a test has imported it:
    when none has, none has started one (and unit tests do not pay for importing it)."""
    return sys.modules.get("tests.support.gateway")


@pytest.fixture(autouse=True)
def no_gateway_left_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """A `headway serve` the test started and did not stop (it timed out, or a fixture raised before its ``stop()``)
    would run on for the rest of the session: end it, and fail the test for it unless the test failed already.
    Gateways a module- or session-scoped fixture started earlier are not the test's and are left alone."""
    gateway = _started_gateways()
    since = gateway.gateways_started() if gateway is not None else 0
    yield
    gateway = _started_gateways()
    if gateway is None:
        return
    left = gateway.stop_gateways_left_running(since)
    reports = request.node.stash.get(_REPORTS, {}).values()
    if left and not any(r.failed or hasattr(r, "wasxfail") for r in reports):
        pids = ", ".join(map(str, left))
        pytest.fail(f"the test left `headway serve` (pid {pids}) running; killed it", pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The last net: no `headway serve` from this run outlives it (one a broader-scoped fixture did not stop)."""
    gateway = _started_gateways()
    if gateway is not None:
        gateway.stop_gateways_left_running()


@pytest.fixture(autouse=True)
def headway_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Scrub provider and Headway variables, and point every folder at tmp_path."""
    for name in list(os.environ):
        if name.startswith(_SCRUB_PREFIXES) and name not in ("HEADWAY_TEST_NPM_BIN", "HEADWAY_TEST_NODE22"):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "headway"
    monkeypatch.setenv("HEADWAY_HOME", str(home))
    # Every settings page a test starts (in process or `headway serve`) takes a free port: the default, 7338, may be
    # a developer's running Headway, and parallel runs must not race for it. Tests of the port itself unset this.
    monkeypatch.setenv("HEADWAY_WEB_PORT", "0")
    for var, sub in (
        ("XDG_CONFIG_HOME", "xdg-config"),
        ("XDG_DATA_HOME", "xdg-data"),
        ("XDG_STATE_HOME", "xdg-state"),
    ):
        monkeypatch.setenv(var, str(tmp_path / sub))
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = tmp_path / "xdg-runtime"
        runtime.mkdir(mode=0o700)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    return home


@pytest.fixture(autouse=True)
def memory_keyring(request: pytest.FixtureRequest) -> Iterator[MemoryKeyring | None]:
    """Unit tests get an in-memory keychain; tests marked ``keychain`` use the real one."""
    if request.node.get_closest_marker("keychain"):
        yield None
        return
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


@pytest.fixture
def private_secret_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateSecretService]:
    """A real gnome-keyring on a D-Bus bus of the test's own, used by this process (tests/support/private_keyring.py):
    for tests that take the keychain away or kill its clients mid-call. Mark the test ``keychain``."""
    from tests.support.private_keyring import require_private_secret_service, used_by_this_process

    require_private_secret_service()
    with used_by_this_process(tmp_path / "secret-service", monkeypatch) as service:
        yield service


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    """A fake Anthropic API on 127.0.0.1 (tests/fakes); behaviours are scripted per test."""
    from tests.fakes import FakeAnthropic

    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    """A fake OpenAI API on 127.0.0.1 (tests/fakes)."""
    from tests.fakes import FakeOpenAI

    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def auth() -> Iterator[FakeOpenAIAuth]:
    """A fake OpenAI OAuth issuer on 127.0.0.1 (tests/fakes)."""
    from tests.fakes.openai_auth import FakeOpenAIAuth

    with FakeOpenAIAuth() as fake:
        yield fake


@pytest.fixture
def codex(auth: FakeOpenAIAuth) -> Iterator[FakeCodex]:
    """A fake Codex backend on 127.0.0.1 that accepts the fake issuer's tokens."""
    from tests.fakes.codex import FakeCodex

    with FakeCodex(auth=auth) as fake:
        yield fake


@pytest.fixture(autouse=True)
def headway_logger_restored() -> Iterator[None]:
    """A command run in-process (click's CliRunner) configures the ``headway`` logger as a real process would —
    level, handlers, propagate=False. Put it back, so no test depends on which ones ran before it."""
    logger = logging.getLogger("headway")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    yield
    for handler in list(logger.handlers):
        if handler not in saved[2]:
            logger.removeHandler(handler)
            handler.close()
    for handler in saved[2]:
        if handler not in logger.handlers:
            logger.addHandler(handler)
    logger.setLevel(saved[0])
    logger.propagate = saved[1]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server on a free port, for team-mode tests (tests/support/redis_server.py)."""
    from tests.support.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()
