"""The page itself, and signing in and out."""

from __future__ import annotations

from flask import Blueprint, current_app, g, redirect, render_template, request
from werkzeug.wrappers import Response

from ..agents import AGENTS
from ..security import LoginTokens, Sessions
from . import ctx
from .forms import current_values, settings_groups

__all__ = ["blueprint"]

blueprint = Blueprint("pages", __name__)

PAGE_SECTIONS = (
    ("overview", "Overview"),
    ("accounts", "Accounts"),
    ("requests", "Request log"),
    ("routing", "Routing and limits"),
    ("caching", "Caching"),
    ("analysis", "Cache analysis"),
    ("debugging", "Debugging"),
    ("relay", "Relay"),
    ("spend", "Budgets and models"),
    ("health", "Health check"),
    ("connect", "Connect an agent"),
)


@blueprint.get("/")
def index() -> str:
    context = ctx()
    groups = settings_groups()
    known = {key for key, _ in PAGE_SECTIONS}
    # A settings section the page has no place for (added to the schema later) gets a part of its own.
    extra = [(g.key, g.title) for g in groups if g.page not in known]
    sections = [*PAGE_SECTIONS[:-1], *extra, PAGE_SECTIONS[-1]]
    return render_template(
        "index.html",
        csrf_token=g.session.csrf,
        sections=sections,
        extra_sections=extra,
        groups=groups,
        values=current_values(context.store.current),
        agents=list(AGENTS.values()),
        gateway_url=context.engine.base_url,
        settings_file=str(context.store.path),
        chatgpt_available=context.logins is not None,
        address=context.address,
    )


@blueprint.get("/login")
def login() -> Response:
    """Exchange a one-time token (from the tray or `headway settings`) for a session cookie, then drop it from the URL."""
    tokens: LoginTokens = current_app.extensions["headway.tokens"]
    if not tokens.redeem(request.args.get("token", "")):
        response = Response(render_template("signin.html", expired=True), status=401, mimetype="text/html")
        return response
    sessions: Sessions = current_app.extensions["headway.sessions"]
    value, _ = sessions.create()
    if (request.headers.get("Sec-Fetch-Site") or "").lower() == "cross-site":
        # Arrived from the opener page (a local file): a redirect would keep the chain cross-site and the browser
        # would hold back the SameSite=Strict cookie on "/"; a same-origin hop from this page sends it.
        response = Response(render_template("signing-in.html"), status=200, mimetype="text/html")
    else:
        response = redirect("/", code=303)
    response.set_cookie(
        current_app.extensions["headway.cookie"],
        value,
        httponly=True,
        samesite="Strict",
        secure=False,
        path="/",
    )
    return response


@blueprint.post("/logout")
def logout() -> Response:
    cookie = current_app.extensions["headway.cookie"]
    sessions: Sessions = current_app.extensions["headway.sessions"]
    sessions.end(request.cookies.get(cookie))
    response = redirect("/signed-out", code=303)
    response.delete_cookie(cookie, path="/", httponly=True, samesite="Strict")
    return response


@blueprint.get("/signed-out")
def signed_out() -> Response:
    return Response(render_template("signin.html", signed_out=True), status=200, mimetype="text/html")
