"""Account management: add or replace an API key, relabel, enable or disable, set limits, reorder, remove.

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
from proxy.secrets.keychain import KeychainError

from . import ctx, error
from .cache import ttl_cache

__all__ = ["blueprint"]

blueprint = Blueprint("accounts", __name__)

# The plain fields the page edits on an account (only those the schema has).
EDITABLE = ("label", "enabled", "min_remaining_percent", "killswitch")
_FAILURES = (AccountError, SettingsError, KeychainError)


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
