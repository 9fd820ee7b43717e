"""The live state the page polls, and the one route that changes settings.

``GET /api/state`` is everything the page shows that can change under it — accounts with health and quota windows,
the settings values, the settings file's error, dumps and log facts, recent fallbacks — so a change made in the tray,
the CLI or the file shows up at the next poll. Secrets never appear: API keys only as a masked hint.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from proxy.config.settings import Settings, SettingsError
from proxy.features.request_history import RequestFilter, RequestHistory
from proxy.relay import RELAY_SECRET
from proxy.secrets.cache import KEYCHAIN_TTL
from proxy.secrets.keychain import KeychainError, account_secret_name

from . import ctx, error
from .cache import ttl_cache
from .forms import ChangeError, apply_changes, current_values
from .relay import relay_state

__all__ = ["blueprint", "key_hint"]

blueprint = Blueprint("api", __name__)

_KEY_PREFIX = re.compile(r"^(sk-(?:ant-)?(?:api\d+-|admin\d*-|proj-|svcacct-|admin-)?)")


def key_hint(key: str | None) -> str | None:
    """A masked form of an API key: its public prefix and last four characters (``sk-ant-api03-…a1b2``)."""
    if not key:
        return None
    if len(key) < 16:
        return "…" + "•" * 4
    match = _KEY_PREFIX.match(key)
    return (match.group(1) if match else "") + "…" + key[-4:]


def _key_hints(settings: Settings) -> dict[str, str | None]:
    context = ctx()

    def read(account_id: str) -> str | None:
        try:
            return key_hint(context.keychain.get(account_secret_name(account_id)))
        except KeychainError:
            return None

    # A replaced key records key_updated_at in the settings (the command line's too): a new hint at once.
    return {
        a.id: ttl_cache().get(f"key:{a.id}:{a.key_updated_at}", KEYCHAIN_TTL, lambda a=a: read(a.id))  # type: ignore[misc]
        for a in settings.accounts
        if a.kind != "chatgpt"
    }


def _dumps() -> dict[str, Any]:
    folder = ctx().paths.dumps_dir
    size = files = groups = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    files += 1
                    size += entry.stat(follow_symlinks=False).st_size
                    groups += entry.name.endswith(".meta.json")
    except FileNotFoundError:
        pass
    except OSError:
        return {"folder": str(folder), "size_bytes": None, "dumps": None}
    return {"folder": str(folder), "size_bytes": size, "dumps": groups, "files": files}


def _recent(now: float) -> dict[str, Any]:
    log = ctx().engine.request_log
    first = RequestHistory(log.path).recent(RequestFilter(purpose="agent", limit=1))
    rows = log.query(since=now - 86400, limit=400)
    totals = log.summary(since=now - 86400)
    all_fallbacks = [r for r in rows if len(r.fallback_chain) > 1]
    fallbacks = [
        {
            "ts": r.ts,
            "model": r.model,
            "route": r.route,
            "status": r.status,
            "account": r.account_label or r.account_id,
            "chain": r.fallback_chain,
        }
        for r in all_fallbacks[:8]
    ]
    return {
        "fallbacks": fallbacks,
        "fallbacks_24h": sum(t["fallbacks"] for t in totals),
        "requests_24h": sum(t["requests"] for t in totals),
        "latest_request": rows[0].ts if rows else None,
        "agent_request_seen": bool(first),  # ever: the first-run checklist's last step
    }


def build_state() -> dict[str, Any]:
    context = ctx()
    now = time.time()
    status = context.engine.status()
    settings = context.store.current
    hints = _key_hints(settings)
    accounts = []
    for item in status["accounts"]:
        account = settings.account(item["id"])
        extra: dict[str, Any] = {"key_hint": hints.get(item["id"])}
        if account is not None:
            extra["min_remaining_percent"] = account.min_remaining_percent
            extra["killswitch"] = getattr(account, "killswitch", None)
        accounts.append({**item, **extra})
    cache = ttl_cache()
    return {
        "now": now,
        "version": status["version"],
        "gateway_url": status["url"],
        "paused": status.get("paused", False),
        "summary": status.get("summary"),  # the one pool summary (issue 11), when this engine publishes it
        "routing": status["routing"],
        "settings_file": status["settings_file"],
        "settings_error": status["settings_error"],
        "keychain": status.get("keychain"),
        "accounts": accounts,
        "settings": current_values(settings),
        "global_min_remaining_percent": settings.routing.min_remaining_percent,
        "dumps": cache.get("dumps", 3.0, _dumps),
        "log": {"file": str(context.log_file) if context.log_file else None, "level": settings.logging.level},
        "recent": cache.get("recent", 2.0, lambda: _recent(now)),
        "relay": relay_state(status.get("relay")),
    }


@blueprint.get("/api/state")
def state() -> Response:
    return jsonify(build_state())


@blueprint.post("/api/settings")
def change_settings() -> Response:
    body = request.get_json(silent=True)
    changes = body.get("changes") if isinstance(body, dict) else None
    if not isinstance(changes, dict) or not changes:
        return error('send {"changes": {"section.setting": value, …}}')
    store = ctx().store
    relay_secret = _relay_secret_stored() if "relay.enabled" in changes else None

    def change(settings: Settings) -> None:
        was_on = settings.relay.enabled
        apply_changes(settings, changes)
        if settings.relay.enabled and not was_on:
            _refuse_relay_without_worker(settings, relay_secret)

    try:
        new = store.update(change)
    except ChangeError as exc:
        return error("some values were not accepted", 400, problems=exc.problems)
    except SettingsError as exc:
        return error(str(exc), 409, problems={"": "; ".join(exc.problems)})
    except OSError as exc:
        return error(f"cannot write the settings file: {exc}", 500)
    return jsonify({"ok": True, "settings": current_values(new)})


def _relay_secret_stored() -> bool | None:
    """Whether the relay's secret is in the keychain (None: the keychain could not be read). Asked before the
    settings update, which runs under the settings file's lock."""
    try:
        return bool(ctx().keychain.get(RELAY_SECRET))
    except KeychainError:
        return None


def _refuse_relay_without_worker(settings: Settings, secret_stored: bool | None) -> None:
    """Turning the relay on needs what a deployed Worker leaves behind: its URL in the settings and its secret."""
    if settings.relay.url is None:
        problem = "The relay is not set up yet: deploy the Worker first (Deploy the Worker, above, or run headway relay setup)."
    elif secret_stored is None:
        problem = "The keychain could not be read to find the relay's secret; try again."
    elif not secret_stored:
        problem = "The relay's secret is missing from the keychain: deploy the Worker again (Deploy the Worker, above)."
    else:
        return
    raise ChangeError({"relay.enabled": problem})


@blueprint.post("/api/access-key")
def access_key() -> Response:
    """The local access key, for 'Copy' in Connect an agent (a POST: it needs the CSRF token, and is never cached)."""
    key = ctx().engine.access_key
    if not key:
        return error("the gateway is not running", 503)
    return jsonify({"key": key})


def _quota_times(status: dict[str, Any]) -> dict[str, float | None]:
    return {a["id"]: (a.get("quota") or {}).get("updated_at") for a in status["accounts"]}


@blueprint.post("/api/quota/refresh")
def refresh_quota() -> Response:
    """Ask every account with a usage endpoint (ChatGPT) now; say which ones answered. API-key quotas come with
    each request's answer, so there is nothing to ask for them."""
    engine = ctx().engine
    before = _quota_times(engine.status())
    try:
        engine.call(engine.refresh_quota(), timeout=20.0)
    except (RuntimeError, TimeoutError) as exc:
        return error(f"could not refresh: {exc or 'no answer in time'}", 503)
    status = engine.status()
    after = _quota_times(status)
    labels = {a["id"]: a["label"] for a in status["accounts"]}
    refreshed = [i for i, at in after.items() if at is not None and at != before.get(i)]
    pollable = [a["id"] for a in status["accounts"] if a["kind"] == "chatgpt" and a["enabled"]]
    return jsonify(
        {
            "ok": True,
            "at": time.time(),
            "refreshed": [labels[i] for i in refreshed],
            "failed": [labels[i] for i in pollable if i not in refreshed],
        }
    )
