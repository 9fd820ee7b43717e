"""Run a real Headway gateway for a test: in-process (fast) or as a `headway serve` subprocess (end to end)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from proxy.config.accounts import add_api_key_account
from proxy.config.paths import Paths
from proxy.config.settings import Account, Settings
from proxy.config.store import SettingsStore
from proxy.engine import EngineOptions
from proxy.secrets.keychain import Keychain
from tray.app import Services, build_services

__all__ = [
    "GatewayProcess",
    "RunningGateway",
    "add_account_with_cli",
    "e2e_keychain",
    "file_secrets_gateway_process",
    "gateways_started",
    "secret_service_available",
    "start_gateway",
    "start_gateway_process",
    "stop_gateways_left_running",
    "wait_until",
]

#: Every `headway serve` that start_gateway_process started in this run, in order, held strongly: a test that times
#: out (or a fixture that raises) before its ``stop()`` drops the GatewayProcess, and the process must still be found
#: and ended (tests/conftest.py does after each test and at the end of the run).
_started: list[subprocess.Popen[bytes]] = []


def secret_service_available() -> bool:
    """A real Secret Service (gnome-keyring) answers on the session bus — as scripts/test arranges."""
    try:
        import secretstorage

        connection = secretstorage.dbus_init()
        try:
            return bool(secretstorage.check_service_availability(connection))
        finally:
            connection.close()
    except Exception:
        return False


def e2e_keychain(paths: Paths) -> Keychain:
    """The keychain a `headway serve` subprocess in this HEADWAY_HOME will use.

    The real Secret Service when one runs (always in CI, via scripts/test); elsewhere the opt-in file backend,
    written into the settings so the subprocess agrees. In CI a missing Secret Service is a failure, not a fallback.
    """
    import pytest

    if secret_service_available():
        return Keychain(paths.keychain_service)
    if os.environ.get("CI") == "true":
        pytest.fail("no Secret Service on the session bus: run the suite through scripts/test")
    paths.ensure()
    store = SettingsStore.for_paths(paths)
    store.update(lambda s: setattr(s.secrets, "backend", "file"))
    return Keychain(paths.keychain_service, backend="file", file_path=paths.secrets_file)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@dataclass
class RunningGateway:
    """An in-process gateway (`start_gateway`); as a context manager it stops when the block ends."""

    services: Services
    accounts: list[Account] = field(default_factory=list)
    _clients: list[Any] = field(default_factory=list)

    def openai_client(self) -> Any:
        """An official `openai` SDK client on this gateway, closed when the gateway stops."""
        import openai

        client = openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.key, max_retries=0)
        self._clients.append(client)
        return client

    @property
    def url(self) -> str:
        return self.services.engine.base_url

    @property
    def key(self) -> str:
        key = self.services.engine.access_key
        assert key
        return key

    @property
    def store(self) -> Any:
        return self.services.store

    def add(self, provider: str, label: str, api_key: str) -> Account:
        kind = "anthropic-api-key" if provider == "anthropic" else "openai-api-key"
        account = add_api_key_account(self.services.store, self.services.keychain, kind, label, api_key)  # type: ignore[arg-type]
        self.accounts.append(account)
        wait_until(lambda: self.services.engine.settings.account(account.id) is not None)
        return account

    def edit(self, fn: Callable[[Settings], Settings | None]) -> Settings:
        new = self.services.store.update(fn)
        wait_until(lambda: self.services.engine.settings == new)
        return new

    def status(self) -> dict[str, Any]:
        return self.services.engine.status()

    def account_status(self, account_id: str) -> dict[str, Any]:
        return next(a for a in self.status()["accounts"] if a["id"] == account_id)

    def headers(self, protocol: str = "anthropic") -> dict[str, str]:
        if protocol == "anthropic":
            return {"x-api-key": self.key, "anthropic-version": "2023-06-01"}
        return {"authorization": f"Bearer {self.key}"}

    def flush_log(self) -> None:
        """Wait until every finished request is in the log (rows are queued just after a response completes)."""
        import asyncio

        self.services.engine.call(asyncio.sleep(0.05))
        self.services.engine.request_log.flush(5.0)

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self.services.stop(timeout=3.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def start_gateway(
    *,
    anthropic_url: str | None = None,
    openai_url: str | None = None,
    settings: Callable[[Settings], Settings | None] | None = None,
    env: dict[str, str] | None = None,
    keep_warm_after: float = 270.0,
) -> RunningGateway:
    """An in-process gateway in the test's HEADWAY_HOME on a free port, pointed at the given upstreams."""
    environ = {**os.environ, **(env or {})}
    if anthropic_url:
        environ["HEADWAY_ANTHROPIC_BASE_URL"] = anthropic_url
    if openai_url:
        environ["HEADWAY_OPENAI_BASE_URL"] = openai_url
    paths = Paths.from_env()
    services = build_services(paths, EngineOptions(port=0, environ=environ, keep_warm_after=keep_warm_after))
    if settings is not None:
        services.store.update(settings)
    services.start()
    return RunningGateway(services)


@dataclass
class GatewayProcess:
    """`headway serve` as a real subprocess."""

    proc: subprocess.Popen[bytes]
    home: Path
    url: str
    key: str
    log_path: Path

    def cli(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, input=input, env=env)

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


def run_cli(
    *args: str, input: str | None = None, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tray", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def add_account_with_cli(provider: str, label: str, key: str, env: dict[str, str] | None = None) -> None:
    """`headway accounts add PROVIDER --label LABEL --api-key-stdin` with ``key`` typed on stdin; it must succeed."""
    added = run_cli(
        "accounts", "add", provider, "--label", label, "--api-key-stdin", input=key + "\n", env=env
    )
    assert added.returncode == 0, added.stderr


@contextmanager
def file_secrets_gateway_process(
    env: dict[str, str],
    settings: Mapping[str, Any] | None = None,
    accounts: Sequence[tuple[str, str, str]] = (),
) -> Iterator[GatewayProcess]:
    """`headway serve` (``env``) in a fresh home whose settings use the plain-file secrets backend, plus ``settings``;
    each (provider, label, key) in ``accounts`` is added through the CLI first. Stopped when the block ends."""
    paths = Paths.from_env()
    paths.ensure()
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}, **(settings or {})}))
    for provider, label, key in accounts:
        add_account_with_cli(provider, label, key, env=env)
    process = start_gateway_process(env=env)
    try:
        yield process
    finally:
        process.stop()


def gateways_started() -> int:
    """How many `headway serve` processes this run has started: the mark `stop_gateways_left_running` counts from."""
    return len(_started)


def stop_gateways_left_running(since: int = 0, grace: float = 5.0) -> list[int]:
    """End every `headway serve` started after the first ``since`` that still runs, with its whole process group
    (SIGTERM, then SIGKILL after ``grace`` seconds), and reap it; the PIDs of those it had to end."""
    left = [proc for proc in _started[since:] if proc.poll() is None]
    for proc in left:
        _end_process_group(proc, grace)
    return [proc.pid for proc in left]


def _end_process_group(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM to ``proc``'s process group (its own: start_new_session), SIGKILL after ``grace`` s, then reap it."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:  # reaped: its PID may be another process's by now
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass


def start_gateway_process(
    *,
    env: dict[str, str] | None = None,
    port: int = 0,
    timeout: float = 20.0,
    home: Path | None = None,
    args: tuple[str, ...] = (),
) -> GatewayProcess:
    """`headway serve` in the test's HEADWAY_HOME, or in ``home`` (one per replica in team-mode tests)."""
    environ = {**os.environ, **(env or {})}
    if home is not None:
        environ["HEADWAY_HOME"] = str(home)
    paths = Paths.from_env(environ)
    assert paths.home is not None, "HEADWAY_HOME must be set by the test fixture"
    paths.ensure()
    log_path = paths.home / "serve.out"
    out = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tray", "serve", "--port", str(port), *args],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=environ,
        start_new_session=True,
    )
    out.close()
    _started.append(proc)
    try:
        return _ready_gateway_process(proc, paths, environ, timeout, log_path)
    except BaseException:  # not started, or the test timed out while it was starting: nobody else can stop it
        _end_process_group(proc)
        raise


def _ready_gateway_process(
    proc: subprocess.Popen[bytes], paths: Paths, environ: dict[str, str], timeout: float, log_path: Path
) -> GatewayProcess:
    assert paths.home is not None
    runtime: dict[str, Any] = {}

    def ready() -> bool:
        nonlocal runtime
        if proc.poll() is not None:
            return True
        try:
            runtime = json.loads(paths.runtime_file.read_text())
        except (OSError, ValueError):
            return False
        return runtime.get("pid") == proc.pid

    wait_until(ready, timeout=timeout, interval=0.05)
    if proc.poll() is not None or not runtime:
        raise RuntimeError(f"headway serve did not start:\n{log_path.read_text(errors='replace')}")
    key = run_cli("key", env=environ).stdout.strip()
    httpx.get(f"{runtime['url']}/health", timeout=5).raise_for_status()
    return GatewayProcess(proc=proc, home=paths.home, url=runtime["url"], key=key, log_path=log_path)
