"""Account management: add or replace an API key, relabel, enable or disable, set limits, reorder, remove, test.

Thin routes over ``proxy.config.accounts`` (which writes the keychain and the settings file in a safe order) and over
``SettingsStore.update`` for the plain fields. A key sent here goes to the keychain and is never sent back.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from proxy.config.accounts import (
    AccountError,
    add_api_key_account,
    check_label_free,
    find_account,
    key_warning,
    kind_for_provider,
    relabel_in_routes,
    remove_account,
    reorder_accounts,
    set_api_key,
)
from proxy.config.settings import Settings, SettingsError, format_validation_error
from proxy.features.request_history import RequestFilter, RequestHistory
from proxy.features.request_log import RequestLogError
from proxy.secrets.keychain import KeychainError

from . import ctx, error
from .cache import ttl_cache

__all__ = ["blueprint"]

blueprint = Blueprint("accounts", __name__)

# The plain fields the page edits on an account (only those the schema has).
EDITABLE = ("label", "enabled", "min_remaining_percent", "killswitch")
_FAILURES = (AccountError, SettingsError, KeychainError)
TEST_TIMEOUT = 60.0


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _public(account: Any) -> dict[str, Any]:
    return {"id": account.id, "label": account.label, "kind": account.kind, "enabled": account.enabled}


def _failure(exc: Exception) -> Response:
    if isinstance(exc, SettingsError):
        return error(str(exc), 409)
    return error(str(exc), 400)


@blueprint.post("/api/accounts")
def add_account() -> Response:
    body = _body()
    provider = body.get("provider")
    label = str(body.get("label") or "").strip()
    api_key = str(body.get("api_key") or "").strip()
    if provider not in ("anthropic", "openai"):
        return error("choose anthropic or openai")
    if not label:
        return error("give the account a label", problems={"label": "required"})
    if not api_key:
        return error("paste the API key", problems={"api_key": "required"})
    context = ctx()
    kind = kind_for_provider(provider)
    try:
        account = add_api_key_account(context.store, context.keychain, kind, label, api_key)
    except _FAILURES as exc:
        return _failure(exc)
    ttl_cache().forget(f"key:{account.id}")
    return jsonify({"account": _public(account), "warning": key_warning(kind, api_key)})


@blueprint.post("/api/accounts/<account_id>/key")
def replace_key(account_id: str) -> Response:
    api_key = str(_body().get("api_key") or "").strip()
    if not api_key:
        return error("paste the new API key", problems={"api_key": "required"})
    context = ctx()
    try:
        account = set_api_key(context.store, context.keychain, account_id, api_key)
    except _FAILURES as exc:
        return _failure(exc)
    ttl_cache().forget(f"key:{account.id}")
    return jsonify({"account": _public(account), "warning": key_warning(account.kind, api_key)})


@blueprint.post("/api/accounts/<account_id>")
def update_account(account_id: str) -> Response:
    body = _body()
    fields = {k: v for k, v in body.items() if k in EDITABLE}
    unknown = sorted(set(body) - set(EDITABLE))
    if unknown or not fields:
        return error(
            f"can change only {', '.join(EDITABLE)}", problems={k: "not editable here" for k in unknown}
        )
    problems: dict[str, str] = {}
    changed: list[Any] = []

    def edit(settings: Settings) -> None:
        account = find_account(settings, account_id)
        if account.id != account_id:
            raise AccountError(f"no account {account_id!r}")
        for name, value in fields.items():
            if name not in type(account).model_fields:
                problems[name] = "not a setting of this Headway version"
                continue
            if isinstance(value, str) and name != "label":
                value = value.strip() or None
            if name == "label" and isinstance(value, str):
                value = value.strip()
                try:
                    check_label_free(settings, value, except_id=account.id)
                except AccountError as exc:
                    problems[name] = str(exc)
                    continue
            try:
                if name == "label" and isinstance(value, str):
                    relabel_in_routes(settings, account, value)  # routes name accounts by label
                setattr(account, name, value)
            except ValidationError as exc:
                problems[name] = "; ".join(p.split(": ", 1)[-1] for p in format_validation_error(exc))
        if problems:
            raise AccountError("some values were not accepted")
        changed.append(account.model_copy())

    try:
        ctx().store.update(edit)
    except _FAILURES as exc:
        if problems:
            return error(str(exc), 400, problems=problems)
        return _failure(exc)
    return jsonify({"account": _public(changed[0])})


@blueprint.post("/api/account-order")
def order() -> Response:
    ids = _body().get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not ids:
        return error('send {"ids": [account ids in routing order]}')
    try:
        ordered = reorder_accounts(ctx().store, ids)
    except _FAILURES as exc:
        return _failure(exc)
    return jsonify({"order": [a.id for a in ordered]})


@blueprint.post("/api/accounts/<account_id>/remove")
def remove(account_id: str) -> Response:
    if _body().get("confirm") != account_id:
        return error(
            "confirm the removal by sending the account's id as 'confirm'", problems={"confirm": "required"}
        )
    context = ctx()
    try:
        removed = remove_account(context.store, context.keychain, account_id)
    except _FAILURES as exc:
        return _failure(exc)
    ttl_cache().forget(f"key:{removed.id}")
    return jsonify({"removed": _public(removed)})


@blueprint.post("/api/accounts/<account_id>/test")
def test(account_id: str) -> Response:
    """One tiny request on exactly this account (``Engine.test_account``): the result and its latency."""
    context = ctx()
    account = context.store.current.account(account_id)
    if account is None or account.id != account_id:
        return error(f"no account {account_id!r}", 404)
    engine = context.engine
    try:
        result = engine.call(engine.test_account(account_id, _last_model(account_id)), timeout=TEST_TIMEOUT)
    except KeyError:
        return error(f"no account {account_id!r}", 404)
    except (RuntimeError, TimeoutError) as exc:
        return error(f"the test could not run: {exc or 'no answer in time'}", 503)
    return jsonify(result.to_json())


def _last_model(account_id: str) -> str | None:
    """The model this account served last (a test of what the agents use), if the log has one."""
    try:
        rows = RequestHistory(ctx().engine.request_log.path).recent(
            RequestFilter(account_id=account_id, status="ok", limit=5)
        )
    except RequestLogError:
        return None
    return next((r.record.model for r in rows if r.record.model and r.record.purpose == "agent"), None)
