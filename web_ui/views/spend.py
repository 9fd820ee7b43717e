"""The Budgets and models section: each API-key account's budget and spend, the model aliases and routes, and which
accounts serve which models.

Thin routes over ``proxy.config.accounts.set_budget`` and ``SettingsStore.update``; the spend figures are the
running engine's status (``accounts[].budget``, from the budgets feature), the model map is
``proxy.routing.serving.model_map``. A rejected change keeps the settings as they were and names the key path.
"""

from __future__ import annotations

import math
from typing import Any

from flask import Blueprint, Response, jsonify, request
from pydantic import ValidationError

from proxy.config.accounts import AccountError, set_budget
from proxy.config.settings import ModelSettings, SettingsError, format_validation_error
from proxy.routing.serving import model_map

from . import ctx, error

__all__ = ["blueprint"]

blueprint = Blueprint("spend", __name__)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _amount(value: Any, name: str) -> float | None:
    """A cap from the page: empty or null is no cap; anything else must be a finite number above 0."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        amount = float(str(value).strip().removeprefix("$"))
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not an amount in USD") from None
    if not math.isfinite(amount) or amount <= 0:
        raise ValueError(f"{name}: give an amount in USD above 0, or leave it empty for no cap")
    return amount


@blueprint.get("/api/spend")
def spend_state() -> Response:
    context = ctx()
    settings = context.store.current
    status = {a["id"]: a for a in context.engine.status().get("accounts", [])}
    accounts = [
        {
            "id": a.id,
            "label": a.label,
            "kind": a.kind,
            "daily_usd": a.budget.daily_usd if a.budget else None,
            "monthly_usd": a.budget.monthly_usd if a.budget else None,
            "spend": (status.get(a.id) or {}).get("budget"),
            "health": (status.get(a.id) or {}).get("health"),
        }
        for a in settings.accounts
        if a.kind != "chatgpt"
    ]
    return jsonify({"accounts": accounts, "models": model_map(settings)})


@blueprint.post("/api/accounts/<account_id>/budget")
def save_budget(account_id: str) -> Response:
    body = _body()
    try:
        daily = _amount(body.get("daily_usd"), "daily_usd")
        monthly = _amount(body.get("monthly_usd"), "monthly_usd")
        account = set_budget(ctx().store, account_id, daily, monthly)
    except ValueError as exc:
        return error(str(exc))
    except AccountError as exc:
        return error(str(exc))
    except SettingsError as exc:
        return error(str(exc), 409)
    budget = account.budget
    return jsonify(
        {"id": account.id, "budget": None if budget is None else budget.model_dump(exclude_none=True)}
    )


@blueprint.post("/api/models")
def save_models() -> Response:
    body = _body()
    try:
        models = ModelSettings.model_validate(body)
    except ValidationError as exc:
        problems = [f"models.{p}" for p in format_validation_error(exc)]
        return error("; ".join(problems), problems=problems)
    try:
        settings = ctx().store.update(lambda s: setattr(s, "models", models))
    except ValidationError as exc:  # a route naming an account that does not exist
        problems = format_validation_error(exc)
        return error("; ".join(problems), problems=problems)
    except SettingsError as exc:  # the file itself is unusable: fix it first
        return error(str(exc), 409, problems=exc.problems)
    return jsonify({"models": model_map(settings)})
