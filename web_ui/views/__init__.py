"""The page's routes: thin functions over the engine's facade, the settings store and the account helpers.

Every write goes through ``SettingsStore.update`` (or the account helpers that use it); nothing here keeps a copy
of the settings. One module per area: ``pages`` (HTML and sign-in), ``api`` (live state, settings, the access key),
``accounts`` (and their Test), ``activity`` (one account's requests and tokens per hour and day), ``requests`` (the
request log viewer), ``chatgpt`` (sign-in flows), ``usage`` (chart), ``connect`` (agent configuration), ``relay`` (the
Cloudflare Worker's setup and savings), ``analysis`` (prompt-cache analysis), ``health`` (the setup checks); ``forms`` (the settings fields) and
``cache`` (the small time-limited cache) are shared by them, so no view imports another.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from flask import Flask, Response, current_app, jsonify

if TYPE_CHECKING:
    from ..app import WebContext

__all__ = ["ctx", "error", "register"]


def ctx() -> WebContext:
    return cast("WebContext", current_app.extensions["headway"])


def error(message: str, status: int = 400, **extra: Any) -> Response:
    response = jsonify({"error": message, **extra})
    response.status_code = status
    return response


def register(app: Flask) -> None:
    from . import (
        accounts,
        activity,
        analysis,
        api,
        chatgpt,
        connect,
        health,
        pages,
        relay,
        requests,
        spend,
        usage,
    )

    for module in (
        pages,
        api,
        accounts,
        activity,
        requests,
        chatgpt,
        usage,
        connect,
        relay,
        analysis,
        health,
        spend,
    ):
        app.register_blueprint(module.blueprint)
