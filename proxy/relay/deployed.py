"""The deployed relay Worker: how it is (``relay status``), making it forget (``relay forget``), turning it off.

:func:`relay_status` compares what the Worker was deployed with (its upstream allowlist, ``relay.ttl_hours``, its
version) to what Headway uses now and lists what ``headway relay setup`` would change. :func:`forget_sessions` asks the
Worker, with the relay secret, to delete every session body it keeps. Synchronous, like :mod:`proxy.relay.setup`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx

from proxy.config.settings import Settings
from proxy.config.store import SettingsStore
from proxy.relay.protocol import FORGET_PATH, PROTOCOL_HEADER, PROTOCOL_VERSION, RELAY_SECRET, TOKEN_HEADER
from proxy.relay.setup import RelaySetupError, probe_relay, worker_version
from proxy.relay.upstreams import allowlist_drift, relay_origins
from proxy.secrets.keychain import Keychain

__all__ = ["disable_relay", "forget_sessions", "relay_status"]

_FORGET_ROUNDS = 20  # KV: 900 lanes a call


def relay_status(
    store: SettingsStore,
    keychain: Keychain,
    *,
    probe: bool = True,
    http: httpx.Client | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The relay's settings, whether its secret is in the keychain, (probe) what the Worker says, and ``warnings``:
    what is out of date until ``headway relay setup`` runs again (the upstream list, the TTL, the Worker's version).
    """
    settings = store.current
    relay = settings.relay
    secret = keychain.get(RELAY_SECRET)
    shipped = worker_version()
    drift = allowlist_drift(
        relay.upstreams, relay_origins(settings, os.environ if environ is None else environ)
    )
    data: dict[str, Any] = {
        **relay.model_dump(mode="json"),
        "secret_in_keychain": bool(secret),
        "worker_version_shipped": shipped,
        "upstreams_wanted": drift.wanted,
        "upstreams_missing": drift.missing,
        "upstreams_out_of_date": drift.out_of_date,
    }
    warnings: list[str] = []
    if relay.url and (message := drift.message()):
        warnings.append(message)
    if probe and relay.url and secret:
        try:
            worker = probe_relay(relay.url, secret, http=http)
        except RelaySetupError as exc:
            data["worker"] = {"ok": False, "error": str(exc)}
        else:
            data["worker"] = {"ok": True, **worker}
            warnings += _worker_drift(worker, drift.wanted, round(relay.ttl_hours * 3600), shipped)
    data["warnings"] = list(dict.fromkeys(warnings))
    return data


def _worker_drift(worker: dict[str, Any], wanted: list[str], ttl_seconds: int, shipped: str) -> list[str]:
    """What the Worker itself says it was deployed with, against what Headway wants now."""
    if "upstreams" not in worker:
        return ["the Worker predates the upstream allowlist: run `headway relay setup` to update it"]
    out = []
    bound = worker.get("upstreams")
    missing = [origin for origin in wanted if not isinstance(bound, list) or origin not in bound]
    if missing:
        out.append(
            f"the Worker's upstream list is out of date (missing {', '.join(missing)}): requests there go "
            "direct until you run `headway relay setup`"
        )
    if worker.get("ttl_seconds") != max(60, ttl_seconds):
        out.append(
            f"the Worker keeps bodies {worker.get('ttl_seconds')} s, relay.ttl_hours says {ttl_seconds} s: "
            "run `headway relay setup` to apply it"
        )
    if worker.get("worker_version") != shipped:
        out.append(
            f"the Worker is version {worker.get('worker_version')}, this Headway ships {shipped}: "
            "run `headway relay setup` to upgrade it"
        )
    return out


def forget_sessions(
    store: SettingsStore, keychain: Keychain, *, http: httpx.Client | None = None, timeout: float = 30.0
) -> dict[str, Any]:
    """Delete every session body the Worker keeps (``POST /v1/forget`` with the relay secret).

    ``{"forgotten": <count>, "storage": ...}``; RelaySetupError when the relay is not set up or the Worker refused.
    The running Headway notices by itself: its next patch gets a 409 and it sends a full sync.
    """
    url = store.current.relay.url
    secret = keychain.get(RELAY_SECRET)
    if not url:
        raise RelaySetupError("the relay is not set up: there is nothing to forget")
    if not secret:
        raise RelaySetupError("the relay secret is not in the keychain; run `headway relay setup` first")
    own = http is None
    client = http or httpx.Client(timeout=timeout)
    total = 0
    try:
        for _ in range(_FORGET_ROUNDS):
            result = _forget_once(client, url, secret, timeout)
            total += int(result.get("forgotten") or 0)
            if result.get("complete", True):
                return {**result, "forgotten": total}
    finally:
        if own:
            client.close()
    raise RelaySetupError(
        f"the Worker deleted {total} stored bodies but still has more; run `headway relay forget` again"
    )


def _forget_once(client: httpx.Client, url: str, secret: str, timeout: float) -> dict[str, Any]:
    try:
        response = client.post(
            f"{url.rstrip('/')}{FORGET_PATH}",
            headers={TOKEN_HEADER: secret, PROTOCOL_HEADER: str(PROTOCOL_VERSION)},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise RelaySetupError(f"the relay at {url} is not reachable: {exc}") from exc
    if response.status_code == 401:
        raise RelaySetupError("the relay refused the secret in the keychain; run `headway relay setup` again")
    if response.status_code == 404:
        raise RelaySetupError("this Worker predates `relay forget`: run `headway relay setup` to upgrade it")
    try:
        result = response.json()
    except ValueError:
        result = None
    if response.status_code != 200 or not isinstance(result, dict) or "forgotten" not in result:
        raise RelaySetupError(f"the relay at {url} answered HTTP {response.status_code} to forget")
    return result


def disable_relay(store: SettingsStore, keychain: Keychain, *, forget: bool = False) -> None:
    """Turn the relay off. ``forget`` also drops its URL and deletes its secret (the Worker stays in the account)."""

    def off(settings: Settings) -> None:
        settings.relay.enabled = False
        if forget:
            settings.relay.url = None

    store.update(off)
    if forget:
        keychain.delete(RELAY_SECRET)
