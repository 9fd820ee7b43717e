"""Adding a ChatGPT account from the page: the browser sign-in (callback on localhost:1455) or the device code.

The flows and their worker threads are :class:`web_ui.logins.LoginFlows` (built by the composition root); the page
starts one here and polls ``GET /api/chatgpt/logins/<id>``. A flow is cancelled with ``POST …/cancel`` or when the
page's server stops.
"""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response, jsonify, request

from proxy.auth import CallbackError, LoginError, OAuthError
from proxy.config.settings import SettingsError
from proxy.secrets.keychain import KeychainError

from ..logins import LoginFlows
from . import ctx, error

__all__ = ["LoginFlows", "blueprint"]

blueprint = Blueprint("chatgpt", __name__)


# --------------------------------------------------------------------------- routes


def _flows() -> LoginFlows | None:
    return ctx().logins


def _label() -> str | None:
    body = request.get_json(silent=True) or {}
    label = body.get("label") if isinstance(body, dict) else None
    return label.strip() or None if isinstance(label, str) else None


def _start(kind: Literal["browser", "device"]) -> Response:
    flows = _flows()
    if flows is None:
        return error("ChatGPT sign-in is not available in this process", 503)
    try:
        flow = flows.start_browser(_label()) if kind == "browser" else flows.start_device(_label())
    except (LoginError, OAuthError, CallbackError, KeychainError, SettingsError) as exc:
        return error(str(exc), 409)
    return jsonify(flow.to_json())


@blueprint.post("/api/chatgpt/browser-login")
def browser_login() -> Response:
    return _start("browser")


@blueprint.post("/api/chatgpt/device-login")
def device_login() -> Response:
    return _start("device")


@blueprint.get("/api/chatgpt/logins/<flow_id>")
def login_status(flow_id: str) -> Response:
    flows = _flows()
    flow = flows.get(flow_id) if flows else None
    if flow is None:
        return error("no such sign-in", 404)
    return jsonify(flow.to_json())


@blueprint.post("/api/chatgpt/logins/<flow_id>/cancel")
def login_cancel(flow_id: str) -> Response:
    flows = _flows()
    flow = flows.cancel(flow_id) if flows else None
    if flow is None:
        return error("no such sign-in", 404)
    return jsonify(flow.to_json())
