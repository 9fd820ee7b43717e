"""The Relay section: deploy the relay Worker into the user's own Cloudflare account, its status and its savings.

The steps are ``proxy.relay.setup``'s (the same calls as ``headway relay setup``). :class:`RelaySetups` runs
``setup_relay`` on a worker thread of its own (``headway-web-relay``) — it takes seconds — and remembers its
progress; the page polls ``GET /api/relay/setup/<id>``. One setup runs at a time.

The Cloudflare API token arrives in one POST body and lives only as an argument of that thread's call: it is never
stored, logged or sent back, and any message that could carry it is scrubbed first. The page's live figures (bytes
uploaded against the bytes the provider received, per session and in total) are the running engine's
``RelayClient.stats()``, delivered with ``/api/state``.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request

from proxy.config.settings import SettingsError
from proxy.relay import RELAY_SECRET
from proxy.relay.deployed import disable_relay, forget_sessions, relay_status
from proxy.relay.setup import (
    CloudflareError,
    InvalidToken,
    MissingPermission,
    RelaySetupError,
    cloudflare_api_base,
    setup_relay,
)
from proxy.relay.upstreams import allowlist_drift, relay_origins
from proxy.secrets.cache import KEYCHAIN_TTL
from proxy.secrets.keychain import KeychainError

from . import ctx, error
from .cache import ttl_cache

__all__ = ["RelaySetups", "blueprint", "relay_state"]

log = logging.getLogger("headway.web.relay")

blueprint = Blueprint("relay", __name__)

State = Literal["running", "done", "failed"]
ErrorKind = Literal["invalid_token", "missing_permission", "cloudflare", "setup", "internal"]
STORAGES = ("durable_object", "kv")
TRANSPORTS = ("http", "websocket")
PROBE_SECONDS = 15.0
REDACTED = "[redacted]"


def _scrub(text: str, token: str) -> str:
    return text.replace(token, REDACTED) if token else text


@dataclass
class SetupJob:
    id: str
    started: float
    state: State = "running"
    steps: list[str] = field(default_factory=list)
    message: str = ""
    error_kind: ErrorKind | None = None
    result: dict[str, Any] | None = None
    finished_at: float | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "steps": list(self.steps),
            "message": self.message,
            "error_kind": self.error_kind,
            "result": self.result,
        }


class RelaySetups:
    """The relay setups the page started, and the last time the Worker was asked how it is; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, SetupJob] = {}
        self._last: SetupJob | None = None
        self.last_probe: dict[str, Any] | None = None

    def start(
        self, api_token: str, account_id: str, *, worker_name: str, storage: str, transport: str
    ) -> SetupJob:
        context = ctx()
        store, keychain = context.store, context.keychain
        with self._lock:
            if self._last is not None and self._last.state == "running":
                raise RelaySetupError("a relay setup is already running; wait for it to finish")
            job = SetupJob(id=secrets.token_urlsafe(12), started=time.time())
            self._jobs = {job.id: job}  # only the latest is kept
            self._last = job

        def say(message: str) -> None:
            with self._lock:
                job.steps.append(_scrub(message, api_token))

        def work(token: str) -> None:
            try:
                info = setup_relay(
                    token,
                    account_id,
                    keychain=keychain,
                    store=store,
                    api_base=cloudflare_api_base(),
                    worker_name=worker_name,
                    storage=storage,  # type: ignore[arg-type]
                    transport=transport,  # type: ignore[arg-type]
                    probe=True,
                    probe_seconds=PROBE_SECONDS,
                    progress=say,
                )
            except InvalidToken as exc:
                self._end(job, "failed", _scrub(str(exc), token), "invalid_token")
            except MissingPermission as exc:
                self._end(job, "failed", _scrub(str(exc), token), "missing_permission")
            except CloudflareError as exc:
                self._end(job, "failed", _scrub(str(exc), token), "cloudflare")
            except (RelaySetupError, KeychainError, SettingsError) as exc:
                self._end(job, "failed", _scrub(str(exc), token), "setup")
            except Exception as exc:
                details = _scrub("".join(traceback.format_exception(exc)), token)
                log.error("relay setup from the settings page failed:\n%s", details)
                self._end(job, "failed", "The setup failed; the log has the details.", "internal")
            else:
                verb = "Deployed" if info.created else "Upgraded"
                result = info.as_dict()
                message = f"{verb} the Worker {info.worker_name} {info.worker_version}. The relay is on."
                with self._lock:
                    self.last_probe = {
                        "ok": info.reachable,
                        "at": time.time(),
                        "detail": info.detail,
                    }
                self._end(job, "done", message, None, result)

        # The token is handed to the thread's call and referenced nowhere else.
        job.thread = threading.Thread(target=work, args=(api_token,), name="headway-web-relay", daemon=True)
        job.thread.start()
        return job

    def _end(
        self,
        job: SetupJob,
        state: State,
        message: str,
        kind: ErrorKind | None,
        result: dict[str, Any] | None = None,
    ) -> None:
        with self._lock:
            job.state = state
            job.message = message
            job.error_kind = kind
            job.result = result
            job.finished_at = time.time()

    def get(self, job_id: str) -> SetupJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def latest(self) -> dict[str, Any] | None:
        with self._lock:
            return None if self._last is None else self._last.to_json()

    def probe(self) -> dict[str, Any]:
        """Ask the Worker now (``GET /v1/info`` with the secret); remembered as the last check."""
        context = ctx()
        status = relay_status(context.store, context.keychain, probe=True)
        worker = status.get("worker")
        if isinstance(worker, dict) and worker.get("ok"):
            detail = f"Worker {worker.get('worker_version')} answered in {worker.get('latency_ms')} ms"
            if "sessions" in worker:
                detail += f"; it keeps {worker['sessions']} sessions"
            for warning in ([worker["warning"]] if worker.get("warning") else []) + status["warnings"]:
                detail += f"; {warning}"
            probe: dict[str, Any] = {"ok": True, "at": time.time(), "detail": detail}
        elif isinstance(worker, dict):
            probe = {"ok": False, "at": time.time(), "detail": str(worker.get("error"))}
        elif not status.get("url"):
            probe = {"ok": None, "at": time.time(), "detail": "The relay is not set up."}
        else:
            probe = {
                "ok": False,
                "at": time.time(),
                "detail": "The relay secret is missing from the keychain; set it up again.",
            }
        with self._lock:
            self.last_probe = probe
        return probe

    def forget_probe(self) -> None:
        with self._lock:
            self.last_probe = None

    def stop(self, timeout: float = 3.0) -> None:
        """Wait (bounded) for a setup in progress; it cannot be interrupted half-way through its API calls."""
        with self._lock:
            job = self._last
        if job is not None and job.thread is not None and job.thread.is_alive():
            job.thread.join(timeout)
            if job.thread.is_alive():
                log.warning("a relay setup did not finish within %.1fs", timeout)


def setups() -> RelaySetups:
    return ctx().helper("relay_setups", RelaySetups)


def _secret_stored() -> bool | None:
    """Whether the relay's secret is in the keychain, for the page's poll (every 2 s while it is open). Asked again
    every 5 minutes, or at once when the relay settings change: a setup or a forget from the command line changes
    them too. Each read is a D-Bus connection to the user's keyring daemon (docs/architecture.md, "The keychain is
    asked rarely")."""

    def read() -> bool | None:
        try:
            return bool(ctx().keychain.get(RELAY_SECRET))
        except KeychainError:
            return None

    relay = ctx().store.current.relay
    return ttl_cache().get(f"relay-secret:{relay.enabled}:{relay.url}", KEYCHAIN_TTL, read)


def relay_state(traffic: dict[str, Any] | None) -> dict[str, Any]:
    """The relay's part of ``/api/state``: its settings, the engine's counters, the last check and the last setup,
    and whether the Worker's upstream list still covers the providers Headway uses (this process's environment)."""
    settings = ctx().store.current
    relay = settings.relay
    jobs = setups()
    try:
        drift = allowlist_drift(relay.upstreams, relay_origins(settings, os.environ))
        upstreams_warning = drift.message() if relay.url else None
    except SettingsError as exc:
        upstreams_warning = str(exc)
    return {
        "enabled": relay.enabled,
        "url": relay.url,
        "transport": relay.transport,
        "storage": relay.storage,
        "worker_name": relay.worker_name,
        "account_id": relay.account_id,
        "fallback_to_direct": relay.fallback_to_direct,
        "upstreams": relay.upstreams,
        "upstreams_warning": upstreams_warning,
        "ttl_hours": relay.ttl_hours,
        "secret_in_keychain": _secret_stored(),
        "traffic": traffic,
        "last_probe": jobs.last_probe,
        "setup": jobs.latest(),
    }


# --------------------------------------------------------------------------- routes


@blueprint.post("/api/relay/setup")
def start_setup() -> Response:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error("send the Cloudflare API token and account id as JSON")
    token = body.get("api_token")
    account_id = body.get("account_id")
    current = ctx().store.current.relay
    worker_name = body.get("worker_name") or current.worker_name
    storage = body.get("storage") or "durable_object"
    transport = body.get("transport") or current.transport
    problems: dict[str, str] = {}
    if not isinstance(token, str) or not token.strip():
        problems["api_token"] = "paste a Cloudflare API token"
    if not isinstance(account_id, str) or not account_id.strip():
        problems["account_id"] = "enter your Cloudflare account id"
    if not isinstance(worker_name, str):
        problems["worker_name"] = "a name of lowercase letters, digits and dashes"
    if storage not in STORAGES:
        problems["storage"] = "durable_object or kv"
    if transport not in TRANSPORTS:
        problems["transport"] = "http or websocket"
    if problems:
        return error("some values were not accepted", 400, problems=problems)
    assert isinstance(token, str) and isinstance(account_id, str) and isinstance(worker_name, str)
    try:
        job = setups().start(
            token, account_id, worker_name=worker_name.strip(), storage=storage, transport=transport
        )
    except RelaySetupError as exc:
        return error(str(exc), 409)
    return jsonify(job.to_json())


@blueprint.get("/api/relay/setup/<job_id>")
def setup_progress(job_id: str) -> Response:
    job = setups().get(job_id)
    if job is None:
        return error("no such relay setup", 404)
    return jsonify(job.to_json())


@blueprint.post("/api/relay/check")
def check() -> Response:
    try:
        return jsonify(setups().probe())
    except KeychainError as exc:
        return error(str(exc), 503)


@blueprint.post("/api/relay/forget")
def forget() -> Response:
    """Delete every session body the Worker keeps (the same call as `headway relay forget`)."""
    context = ctx()
    try:
        result = forget_sessions(context.store, context.keychain)
    except RelaySetupError as exc:
        return error(str(exc), 502)
    except KeychainError as exc:
        return error(str(exc), 503)
    return jsonify({"ok": True, **result})


@blueprint.post("/api/relay/disable")
def disable() -> Response:
    body = request.get_json(silent=True)
    forget = bool(body.get("forget")) if isinstance(body, dict) else False
    context = ctx()
    try:
        disable_relay(context.store, context.keychain, forget=forget)
    except SettingsError as exc:
        return error(str(exc), 409)
    except KeychainError as exc:
        return error(f"the relay is off, but its secret could not be deleted: {exc}", 503)
    except OSError as exc:
        return error(f"cannot write the settings file: {exc}", 500)
    ttl_cache().forget("relay-secret")
    if forget:
        setups().forget_probe()
    return jsonify({"ok": True, "forgot": forget})
