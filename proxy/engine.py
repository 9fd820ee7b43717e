"""The engine: one thread, one asyncio loop, the gateway and everything it needs.

Other threads talk to it only through thread-safe handles: settings changes arrive with
``loop.call_soon_threadsafe``; :meth:`Engine.call` runs a coroutine on the loop and waits for it with a timeout.
The loop alone reads and writes the runtime state (health, quota, pins); :meth:`Engine.status` hands other threads
a copy of the immutable snapshot the loop publishes — after every change (asked for on the next read) and every
half second. ``start()`` binds the port first and raises :class:`PortInUse` at once when it is taken, then returns
once the gateway listens; a live port change binds the new port before closing the old one and, when it cannot,
keeps serving and reports ``listen_error`` in the status. ``stop(timeout)`` is bounded: stop accepting, let streams
finish, cancel the rest, join the thread.
"""

from __future__ import annotations

import asyncio
import copy
import http.cookiejar
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from starlette.responses import Response

from proxy import __version__
from proxy.auth import OAuthConfig, TokenManager
from proxy.auth.credentials import Credentials
from proxy.config.paths import Paths, write_private_file
from proxy.config.settings import (
    Account,
    Settings,
    UpstreamSettings,
    effective_upstreams,
    shared_state_url,
)
from proxy.config.store import SettingsStore
from proxy.features.base import Feature, Features
from proxy.features.budgets import Budgets
from proxy.features.cache_control import CacheControl
from proxy.features.dumps import Dumps
from proxy.features.member_caps import MemberCaps
from proxy.features.metrics import Metrics
from proxy.features.request_log import RequestLog, RequestLogger
from proxy.features.shared_accounts import SharedAccounts
from proxy.features.tracing import tracing_from_env
from proxy.features.upstream_socket import UpstreamSockets
from proxy.gateway.account_probe import ProbeResult, run_probe
from proxy.gateway.app import GatewayHooks, build_app
from proxy.gateway.exchange import hear_quota
from proxy.gateway.forward import Forwarder
from proxy.gateway.listener import PortInUse, bind_listener
from proxy.gateway.models import ModelList
from proxy.gateway.remote import check_bind, shared_deployment
from proxy.gateway.server import GatewayServer
from proxy.providers.base import Incoming, ProviderAdapter
from proxy.providers.registry import build_adapters, provider_features
from proxy.relay.protocol import RELAY_SECRET
from proxy.relay.transport import RelayOnDemand, RelayTransport
from proxy.routing.state import RuntimeState, StateSaver
from proxy.routing.summary import health_summary
from proxy.secrets.cache import SecretCache
from proxy.secrets.keychain import (
    Keychain,
    KeychainError,
    account_secret_name,
    ensure_access_key,
    wait_for_access_key,
)
from proxy.shared.team import Team
from proxy.status import status_snapshot
from proxy.tasks import TaskGroup
from proxy.upkeep import AccountUpkeep
from proxy.wire.liveness import keep_checked
from proxy.wire.sleep_watch import AfterSleep
from proxy.wire.tls import load_in_background
from proxy.wire.upstream_client import Timeouts, UpstreamClient

__all__ = ["Engine", "EngineOptions", "PortInUse", "StartCancelled", "ensure_access_key"]

log = logging.getLogger("headway.engine")

T = TypeVar("T")


@dataclass
class EngineOptions:
    host: str | None = None
    port: int | None = None
    environ: Mapping[str, str] | None = None
    keep_warm_after: float = 270.0
    state_save_interval: float = 2.0  # seconds between saves of changed runtime state
    status_interval: float = 0.5  # the published status is refreshed at least this often
    allow_remote: bool = False  # `headway serve --allow-remote`: a non-loopback host is allowed for this run
    # Seconds start() waits for a system keychain that does not answer yet (a launch at login), telling
    # on_keychain_wait(error, seconds waited) before each retry; 0: a keychain error stops the start at once.
    keychain_wait: float = 0.0
    on_keychain_wait: Callable[[KeychainError, float], None] | None = None


class StartCancelled(Exception):
    """:meth:`Engine.cancel_start` was called while ``start()`` waited for the keychain: nothing was started."""


class Engine:
    def __init__(
        self,
        paths: Paths,
        store: SettingsStore,
        keychain: Keychain,
        options: EngineOptions | None = None,
        *,
        on_log_level: Callable[[str], None] = lambda level: None,
    ) -> None:
        self.paths = paths
        self.store = store
        self.keychain = keychain
        self.options = options or EngineOptions()
        self._environ = dict(os.environ if self.options.environ is None else self.options.environ)
        self._on_log_level = on_log_level
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._start_cancelled = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop_requested: asyncio.Event | None = None
        self._settings = store.current
        self._upstreams = effective_upstreams(self._settings, self._environ)
        self._state = RuntimeState.load(paths.state_file, owner=True)
        # Team mode (proxy/shared): member keys, their spend, and Redis when shared_state is configured.
        self.team = Team(
            paths,
            self._state,
            url=shared_state_url(self._settings, self._environ),
            settings=lambda: self._settings,
            on_change=lambda: self._state_changed(),
        )
        self._secrets = SecretCache(self._read_secret)
        self._access_key: str | None = None
        self._tasks = TaskGroup()
        self._server = GatewayServer(
            app=lambda: build_app(self._hooks()),
            tasks=self._tasks,
            address=self._listen_address,
            on_bound=self._write_runtime,
            on_listen_error=self._state_changed,
            allow_remote=self._allow_remote,
        )
        self.request_log = RequestLog(paths.request_log)
        self._adapters: dict[str, ProviderAdapter] = build_adapters()
        self._credentials = Credentials(self._secrets, self._adapters, self._state.health, self._state_dirty)
        # logins, polling, relay setup: everything but model requests
        self._client: httpx.AsyncClient | None = None
        # the httpx client's connections kept from before a sleep are closed before its next request
        self.after_sleep = AfterSleep()
        self._upstream: UpstreamClient | None = None  # model requests (the hot path)
        self._upkeep = AccountUpkeep(
            settings=lambda: self._settings,
            upstreams=lambda: self._upstreams,
            adapters=self._adapters,
            credentials=self._credentials,
            quota=self._state.quota,
            client=lambda: self._client,
            on_dirty=self._state_dirty,
        )
        self._models = ModelList(
            settings=lambda: self._settings,
            upstreams=lambda: self._upstreams,
            adapters=self._adapters,
            credentials=self._credentials,
            client=lambda: self._client,
            forward=self._forward,
        )
        self._forwarder: Forwarder | None = None
        self._relay: RelayOnDemand | None = None
        self._features = Features([])
        self.metrics: Metrics | None = None  # built with the features, on the loop
        self._shared_accounts = SharedAccounts(
            lambda: shared_deployment(self._listen_address()[0], self.team.shared)
        )
        self._saver = StateSaver(self._state, paths.state_file)
        self._keychain_description = ""
        self._loop_thread: int | None = None
        self._listen_socket: socket.socket | None = None
        self._tls: Future[ssl.SSLContext] | None = None  # the certificate context, loading (start)
        self._status_stale = False
        self._publish_lock = threading.Lock()
        self._publishing: Future[None] | None = None
        self._status: dict[str, Any] = self._compute_status()

    # ----------------------------------------------------------------- lifecycle (any thread)

    @property
    def port(self) -> int:
        return self._server.bound[1]

    @property
    def host(self) -> str:
        return self._server.bound[0]

    @property
    def base_url(self) -> str:
        host = self._server.bound[0]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self._server.bound[1]}"

    @property
    def access_key(self) -> str | None:
        return self._access_key

    def start(self, timeout: float = 15.0) -> None:
        """Bind the port (:class:`PortInUse` at once when it is taken), start the loop, return once it listens."""
        self._settings = self.store.current
        self._upstreams = effective_upstreams(self._settings, self._environ)
        check_bind(self._listen_address()[0], self._allow_remote())
        sock = bind_listener(*self._listen_address())
        self._tls = load_in_background()  # while the keychain is read and the log opened (proxy/wire/tls.py)
        try:
            access_key = wait_for_access_key(
                self.keychain,
                self.options.keychain_wait,
                self.options.on_keychain_wait,
                cancelled=self._start_cancelled,
            )
            if access_key is None:
                raise StartCancelled("stopped while waiting for the keychain")
            self._access_key = access_key
            self._keychain_description = self.keychain.describe()
            self.request_log.start()
        except BaseException:
            sock.close()
            raise
        self._listen_socket = sock
        self.store.subscribe(self._settings_changed)
        self._settings = self.store.current
        self._upstreams = effective_upstreams(self._settings, self._environ)
        self._thread = threading.Thread(target=self._run, name="headway-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the gateway did not start within {timeout:.0f}s")
        if self._startup_error is not None:
            sock.close()  # the loop never served on it (a second close, where the server had taken it, is a no-op)
            raise self._startup_error

    def cancel_start(self) -> None:
        """Stop a ``start()`` that is waiting for the keychain (any thread, a signal handler too): it raises
        :class:`StartCancelled` within a second."""
        self._start_cancelled.set()

    def stop(self, timeout: float = 5.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            stop_event = self._stop_requested
            if stop_event is not None:
                loop.call_soon_threadsafe(stop_event.set)
            thread.join(timeout + 2.0)
            if thread.is_alive():
                log.warning("engine thread did not stop within %.1fs", timeout + 2.0)
        self.request_log.stop(timeout=2.0)
        self.paths.runtime_file.unlink(missing_ok=True)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run ``coro`` on the engine loop from another thread and wait for its result."""
        if self._loop is None:
            coro.close()
            raise RuntimeError("the engine is not running")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    # ----------------------------------------------------------------- loop thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop_thread = threading.get_ident()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start() or logged
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()
            else:
                log.exception("engine loop failed")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _timeouts(self, settings: Settings) -> httpx.Timeout:
        g = settings.gateway
        return httpx.Timeout(
            connect=g.connect_timeout_seconds, read=g.read_timeout_seconds, write=60.0, pool=30.0
        )

    async def _main(self) -> None:
        self._stop_requested = asyncio.Event()
        settings = self._settings
        assert self._tls is not None  # start() began loading it
        tls = self._tls.result()  # one context for both clients
        self._client = self.after_sleep.attach(
            httpx.AsyncClient(
                verify=tls,
                timeout=self._timeouts(settings),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=10, keepalive_expiry=60),
                follow_redirects=False,
                trust_env=True,
                event_hooks={
                    # connections kept from before the machine slept are not used again (proxy/wire/sleep_watch.py)
                    "request": [self.after_sleep],
                    # a kept connection that a changed network left dead fails in seconds (proxy/wire/liveness.py)
                    "response": [keep_checked],
                },
            )
        )
        # One client serves every account: never let an upstream's cookies link them.
        self._client.cookies.jar.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self._upstream = UpstreamClient(
            lambda: Timeouts(
                self._settings.gateway.connect_timeout_seconds, self._settings.gateway.read_timeout_seconds
            ),
            environ=self._environ,
            tls=tls,
        )
        self._credentials.tokens = TokenManager(
            load=self._read_secret,
            save=self._save_tokens,
            client=self._client,
            cfg=OAuthConfig(issuer=self._upstreams.openai_auth),
        )
        self._relay = RelayOnDemand(lambda: self._settings.relay, lambda: self.keychain.get(RELAY_SECRET))
        self._features = Features(self._build_features(self._client, self._relay))
        self._forwarder = Forwarder(
            settings=lambda: self._settings,
            upstreams=lambda: self._upstreams,
            state=self._state,
            client=self._upstream,
            credentials=self._credentials,
            adapters=self._adapters.__getitem__,
            features=self._features,
            on_state_change=self._state_changed,
        )
        for feature in self._features.all:
            feature.configure(settings)
        sock, self._listen_socket = self._listen_socket, None
        if sock is None:
            sock = bind_listener(*self._listen_address())
        await self._server.start(sock)
        self._publish_status()
        self._tasks.spawn(self._saver.run(self.options.state_save_interval), name="headway-state-persist")
        self._tasks.spawn(self._status_loop(), name="headway-status-snapshot")
        self._tasks.spawn(self._upkeep.run(), name="headway-account-upkeep")
        for feature in self._features.all:
            self._tasks.spawn(feature.run(), name=f"headway-{feature.name.replace('_', '-')}")
        self._tasks.spawn(self.team.run(), name="headway-team")
        self._on_log_level(settings.logging.level)
        self._ready.set()
        log.info("gateway listening on %s", self.base_url)
        await self._stop_requested.wait()
        await self._shutdown()

    def _build_features(self, client: httpx.AsyncClient, relay: RelayOnDemand) -> list[Feature]:
        """Headway's features, in the order their hooks run (see proxy/features/base.py)."""
        self.metrics = Metrics(lambda: self._state.quota, team=self.team)
        return [
            self._shared_accounts,
            MemberCaps(self.team),
            RelayTransport(relay, lambda: client),
            UpstreamSockets(lambda: client, on_rate_limits=self._quota_heard),
            CacheControl(),
            *provider_features(
                settings=lambda: self._settings,
                send_shadow=self._send_shadow,
                keep_warm_after=self.options.keep_warm_after,
            ),
            Dumps(self.paths.dumps_dir),
            RequestLogger(self.request_log),
            Budgets(self.request_log),
            self.metrics,
            *([tracing] if (tracing := tracing_from_env(self._environ)) is not None else []),
        ]

    def _hooks(self) -> GatewayHooks:
        return GatewayHooks(
            settings=lambda: self._settings,
            access_key=lambda: self._access_key,
            forward=self._forward,
            models=self._models.answer,
            status=self._status_async,
            bound_host=lambda: self._server.bound[0],
            session_closed=self._session_closed,
            member=self.team.member_of,
            metrics=self.metrics.exposition if self.metrics is not None else None,
        )

    def _session_closed(self, session_id: str) -> None:
        """An agent's WebSocket closed: its upstream sockets go too (proxy/features/upstream_socket.py)."""
        sockets = self._features.get(UpstreamSockets.name)
        if isinstance(sockets, UpstreamSockets):
            sockets.close_session(session_id)

    def _allow_remote(self) -> bool:
        return self.options.allow_remote or self._settings.gateway.allow_remote

    def _listen_address(self) -> tuple[str, int]:
        host = self.options.host or self._settings.gateway.host
        port = self.options.port if self.options.port is not None else self._settings.gateway.port
        return host, port

    async def _shutdown(self) -> None:
        await self._server.stop()
        if self._credentials.tokens is not None:
            await self._credentials.tokens.aclose(grace=3.0)
        await self._tasks.close(timeout=2.0)
        for feature in self._features.all:
            try:
                await feature.aclose()
            except Exception:
                log.exception("feature %s did not close cleanly", feature.name)
        if self._client is not None:
            await self._client.aclose()
        if self._upstream is not None:
            await self._upstream.aclose()
        await self._saver.save()

    def _write_runtime(self) -> None:
        data = {
            "pid": os.getpid(),
            "host": self._server.bound[0],
            "port": self._server.bound[1],
            "url": self.base_url,
            "version": __version__,
            "started_at": time.time(),
        }
        self.paths.run_dir.mkdir(parents=True, exist_ok=True)
        write_private_file(self.paths.runtime_file, json.dumps(data).encode())

    # ----------------------------------------------------------------- settings

    def _settings_changed(self, settings: Settings) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._apply, settings)

    def _apply(self, settings: Settings) -> None:
        old = self._settings
        self._settings = settings
        self._upstreams = effective_upstreams(settings, self._environ)
        self._secrets.invalidate()
        keep = {a.id for a in settings.accounts}
        self._state.quota.forget(keep)
        self._state.health.forget(keep)
        for feature in self._features.all:
            feature.configure(settings)
        self.team.reconfigure(shared_state_url(settings, self._environ), settings)
        if old.logging.level != settings.logging.level:
            self._on_log_level(settings.logging.level)
        if (
            old.gateway.model_dump(include={"connect_timeout_seconds", "read_timeout_seconds"})
            != settings.gateway.model_dump(include={"connect_timeout_seconds", "read_timeout_seconds"})
            and self._client is not None
        ):
            self._client.timeout = self._timeouts(settings)
        if (old.gateway.host, old.gateway.port) != (settings.gateway.host, settings.gateway.port) and (
            self.options.host is None or self.options.port is None
        ):
            self._tasks.spawn(self._server.move(), name="headway-gateway-restart")
        self._state_changed()
        log.info("settings applied (%d accounts, routing %s)", len(settings.accounts), settings.routing.mode)

    # ----------------------------------------------------------------- requests

    def _read_secret(self, account_id: str) -> str | None:
        return self.keychain.get(account_secret_name(account_id))

    def _save_tokens(self, account_id: str, token_json: str) -> None:
        self.keychain.set(account_secret_name(account_id), token_json)
        self._secrets.invalidate(account_id)

    async def _send_shadow(self, incoming: Incoming, account: Account) -> bool:
        assert self._forwarder is not None
        return await self._forwarder.send_shadow(incoming, account)

    async def refresh_quota(self) -> None:
        """Poll usage for every account that has a usage endpoint now (`headway status --refresh`)."""
        await self._upkeep.refresh_quota()

    async def _forward(self, incoming: Incoming) -> Response:
        assert self._forwarder is not None
        try:
            return await self._forwarder.handle(incoming)
        finally:
            self._state_changed()  # health notes (last_error) change without a callback; before the agent sees it

    # ----------------------------------------------------------------- status

    async def _status_async(self, refresh: bool = False) -> dict[str, Any]:
        if refresh:
            await self._upkeep.refresh_quota()
        await self._secrets.fingerprints_of([a for a in self._settings.accounts if a.enabled])
        self._publish_status()
        return copy.deepcopy(self._status)

    def status(self) -> dict[str, Any]:
        """A snapshot for `headway status`, /status, the tray and the settings page. Safe from any thread.

        A copy of what the loop last published; when the state changed since, the loop is asked to publish first
        (waiting at most half a second, else the last snapshot is returned). Nothing here touches the state.
        """
        if self._status_stale:
            self._refresh_status()
        return copy.deepcopy(self._status)

    def _refresh_status(self, timeout: float = 0.5) -> None:
        loop = self._loop
        if (
            threading.get_ident() == self._loop_thread
            or loop is None
            or loop.is_closed()
            or not loop.is_running()
        ):
            self._publish_status()  # on the loop, or no loop runs: nothing else touches the state
            return
        with self._publish_lock:  # readers at the same moment share one request to the loop
            done = self._publishing
            if done is None or done.done():
                done = self._publishing = Future()
                asked = True
            else:
                asked = False

        def publish() -> None:
            try:
                self._publish_status()
            except Exception:
                log.exception("cannot build the status snapshot")
            finally:
                done.set_result(None)

        try:
            if asked:
                loop.call_soon_threadsafe(publish)
            done.result(timeout)
        except (RuntimeError, TimeoutError):
            log.debug(
                "the engine loop did not publish the status within %.1fs; showing the last one", timeout
            )

    def _state_dirty(self) -> None:
        """Runtime state changed in a way that must be saved (loop only)."""
        self._state.dirty = True
        self._state_changed()

    def _quota_heard(self, account_id: str, headers: Mapping[str, str]) -> None:
        """Quota facts that came outside an answer's headers (in headers' shape): into the quota book (loop only)."""
        account = next((a for a in self._settings.accounts if a.id == account_id), None)
        adapter = None if account is None else self._adapters.get(account.kind)
        if account is None or adapter is None:
            return
        hear_quota(self._state, account_id, adapter, headers, time.time(), self._state_changed)

    def _state_changed(self) -> None:
        """Runtime state or listen status changed (loop only): the next status read asks for a fresh snapshot."""
        self._status_stale = True

    def _publish_status(self) -> None:
        """Tidy and snapshot the state. Runs on the loop (or when no loop runs); the snapshot is never mutated."""
        self._status_stale = False
        if self._state.health.tidy(time.time(), self._secrets.fingerprints()):
            self._state.dirty = True
        self._status = self._compute_status()

    async def _status_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.status_interval)
            try:
                self._publish_status()
            except Exception:
                log.exception("cannot build the status snapshot")

    def _compute_status(self) -> dict[str, Any]:
        now = time.time()
        error = self.store.error
        settings = self._settings
        budgets = self._features.get("budgets")
        accounts = status_snapshot(
            settings,
            self._state,
            now,
            self._secrets.fingerprints(),
            self._secrets.missing(),
            self._adapters,
            budgets.snapshot(now) if isinstance(budgets, Budgets) else None,
            policy=self._shared_accounts.block,
        )
        return {
            "version": __version__,
            "url": self.base_url,
            "listen_error": self._server.listen_error,
            "pid": os.getpid(),
            "routing": settings.routing.mode,
            "paused": settings.gateway.paused,
            "settings_file": str(self.store.path),
            "settings_error": None if error is None else error.problems,
            "keychain": self._keychain_description,
            "request_log_set_aside": None
            if self.request_log.set_aside is None
            else str(self.request_log.set_aside),
            "request_log_failing": self.request_log.failing,
            "accounts": accounts,
            "relay": self._relay.stats() if self._relay is not None else None,
            "summary": health_summary(
                accounts, now, paused=settings.gateway.paused, routing=settings.routing.mode
            ),
            "team": self.team.stats(),
        }

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def paused(self) -> bool:
        return self._settings.gateway.paused

    def set_paused(self, paused: bool) -> None:
        """Pause or resume through the one settings path (so every UI sees it)."""
        self.store.update(lambda s: setattr(s.gateway, "paused", paused))

    @property
    def upstreams(self) -> UpstreamSettings:
        return self._upstreams

    # ----------------------------------------------------------------- the page's account test (loop only)

    async def test_account(self, account_id: str, model: str | None = None) -> ProbeResult:
        """One tiny request on exactly this account, no fallback (proxy/gateway/account_probe.py). KeyError: no such
        account. Run it with :meth:`call`."""
        account = self._settings.account(account_id)
        if account is None or account.id != account_id:
            raise KeyError(account_id)

        def accounts() -> list[dict[str, Any]]:
            self._publish_status()
            return list(self._status["accounts"])

        paused = self._settings.gateway.paused
        return await run_probe(account, send=self._send_shadow, accounts=accounts, paused=paused, model=model)
