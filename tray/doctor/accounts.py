"""Each account: its secret in the keychain, its last health, and for ChatGPT the token's expiry / a needed login."""

from __future__ import annotations

import time
from typing import Any

from proxy.config.paths import Paths
from proxy.config.settings import Account, Settings
from proxy.durations import format_duration
from proxy.secrets.keychain import Keychain, KeychainError, account_secret_name

from . import Check, Status

__all__ = ["checks"]


def _health(paths: Paths, settings: Settings) -> dict[str, dict[str, Any]]:
    """Each account's status entry: from the running instance when it answers, else from the saved state."""
    from proxy.routing.state import RuntimeState
    from proxy.status import status_snapshot

    state = RuntimeState.load(paths.state_file)
    return {a["id"]: a for a in status_snapshot(settings, state, time.time(), {})}


def _chatgpt(account: Account, secret: str) -> tuple[Status, str, str]:
    from proxy.auth import OAuthError, TokenSet

    try:
        tokens = TokenSet.from_json(secret)
    except OAuthError as exc:
        return "fail", f"the stored login cannot be read ({exc})", "headway login chatgpt"
    left = tokens.expires_at - time.time()
    if left > 0:
        return "ok", f"access token valid for {format_duration(left)} (renewed before it expires)", ""
    return "ok", "access token expired; Headway renews it with the refresh token at the next request", ""


def _one(account: Account, keychain: Keychain, health: dict[str, Any] | None) -> Check:
    name = f"account {account.id}"
    login_fix = (
        "headway login chatgpt" if account.kind == "chatgpt" else f"headway accounts set-key {account.id}"
    )
    if not account.enabled:
        return Check(name, "ok", f"{account.label} ({account.kind}): disabled")
    try:
        secret = keychain.get(account_secret_name(account.id))
    except KeychainError as exc:
        return Check(
            name, "fail", f"{account.label}: cannot read its secret: {exc}", "see the keychain check"
        )
    if not secret:
        what = "login" if account.kind == "chatgpt" else "API key"
        return Check(name, "fail", f"{account.label} ({account.kind}): no {what} in the keychain", login_fix)
    status: Status = "ok"
    detail, fix = f"{account.label} ({account.kind}): secret present", ""
    if account.kind == "chatgpt":
        status, token_detail, fix = _chatgpt(account, secret)
        detail += f"; {token_detail}"
    state = (health or {}).get("health", "healthy")
    if state in ("needs_login", "auth_failed"):
        reason = (health or {}).get("detail") or state.replace("_", " ")
        return Check(name, "fail", f"{detail}; last health: {reason}", login_fix)
    if state not in ("healthy", "disabled"):
        reason = (health or {}).get("detail") or state.replace("_", " ")
        return Check(name, "warn" if status == "ok" else status, f"{detail}; last health: {reason}", fix)
    return Check(name, status, detail + "; last health: healthy", fix)


def checks(paths: Paths, settings: Settings, keychain: Keychain) -> list[Check]:
    if not settings.accounts:
        return [
            Check(
                "accounts",
                "warn",
                "no accounts yet",
                "headway accounts add anthropic --label main (or `headway login chatgpt`)",
            )
        ]
    try:
        health = _health(paths, settings)
    except Exception:
        health = {}
    if not any(a.enabled for a in settings.accounts):
        extra = [Check("accounts", "warn", "every account is disabled", "headway accounts enable <account>")]
    else:
        extra = []
    return extra + [_one(a, keychain, health.get(a.id)) for a in settings.accounts]
