"""The settings page's Flask app factory.

``create_app(context)`` builds an app over one :class:`WebContext` (the running services); nothing happens at import
time and there is no global app. The security layer (``security.py``) is wired here, in this order: the Host
allowlist wraps the whole WSGI app; then, before any view, fetch-metadata/Origin checks, the session cookie and the
CSRF token; after every response, the security headers.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from flask import Flask, Response, g, jsonify, render_template, request
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException

from proxy import __version__

from .context import PageAddress, WebContext
from .security import CSRF_HEADER, SECURITY_HEADERS, HostGuard, LoginTokens, Sessions, fetch_metadata_problem

__all__ = ["PUBLIC_ENDPOINTS", "PageAddress", "WebContext", "create_app"]

log = logging.getLogger("headway.web")

PACKAGE_DIR = Path(__file__).resolve().parent
# Reachable without a session: the assets, the sign-in exchange, and the "how to sign in" page.
PUBLIC_ENDPOINTS = frozenset({"static", "pages.login", "pages.signed_out"})


def _ticks(text: str | None) -> Markup:
    """Escaped text with `backticked` parts as <code> (schema descriptions name commands that way)."""
    escaped = str(escape(text or ""))
    return Markup(re.sub(r"`([^`<>]+)`", r"<code>\1</code>", escaped))


def _number(value: float | int) -> str:
    """A number as a form value: 60.0 → "60", 0.5 → "0.5"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def create_app(
    context: WebContext,
    *,
    tokens: LoginTokens,
    sessions: Sessions | None = None,
    cookie_name: str = "headway_session",
) -> Flask:
    app = Flask(
        "web_ui",
        root_path=str(PACKAGE_DIR),
        static_folder=str(PACKAGE_DIR / "static"),
        template_folder=str(PACKAGE_DIR / "templates"),
    )
    app.config.update(
        MAX_CONTENT_LENGTH=1024 * 1024,
        SEND_FILE_MAX_AGE_DEFAULT=0,
        JSON_SORT_KEYS=False,
        TEMPLATES_AUTO_RELOAD=False,
        SESSION_COOKIE_NAME=cookie_name + "_flask",  # Flask's own session is unused; never let it clash
    )
    app.extensions["headway"] = context
    app.extensions["headway.tokens"] = tokens
    app.extensions["headway.sessions"] = sessions or Sessions()
    app.extensions["headway.cookie"] = cookie_name
    app.jinja_env.globals.update(version=__version__, csrf_header=CSRF_HEADER)
    app.jinja_env.filters["num"] = _number
    app.jinja_env.filters["ticks"] = _ticks
    app.wsgi_app = HostGuard(app.wsgi_app)  # type: ignore[method-assign]

    def is_api() -> bool:
        return request.path.startswith("/api/")

    def is_page_load() -> bool:
        """A browser loading a document (a link, a form post): it shows the answer as a page, so answer in HTML."""
        navigate = (request.headers.get("Sec-Fetch-Mode") or "").lower() == "navigate"
        return not is_api() and (request.method in ("GET", "HEAD") or navigate)

    def refuse(status: int, message: str) -> Response:
        if not is_page_load():
            response = jsonify({"error": message})
        else:
            response = Response(
                render_template("refused.html", status=status, message=message), mimetype="text/html"
            )
        response.status_code = status
        return response

    @app.before_request
    def guard() -> Response | None:
        if request.method == "OPTIONS":
            return refuse(405, "method not allowed (this page sends no CORS headers)")
        problem = fetch_metadata_problem(
            method=request.method,
            sec_fetch_site=request.headers.get("Sec-Fetch-Site"),
            sec_fetch_mode=request.headers.get("Sec-Fetch-Mode"),
            origin=request.headers.get("Origin"),
            host=request.host,
            sign_in=request.endpoint == "pages.login",
        )
        if problem is not None:
            log.info("settings page refused %s %s: %s", request.method, request.path, problem)
            return refuse(403, problem)
        if request.endpoint in PUBLIC_ENDPOINTS:
            return None
        store: Sessions = app.extensions["headway.sessions"]
        session = store.find(request.cookies.get(cookie_name))
        if session is None:
            if is_api() or request.method not in ("GET", "HEAD"):
                return refuse(
                    401, "not signed in: open the settings from the Headway tray or run `headway settings`"
                )
            response = Response(render_template("signin.html"), status=401, mimetype="text/html")
            return response
        g.session = session
        if request.method not in ("GET", "HEAD"):
            presented = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token")
            if not Sessions.csrf_ok(session, presented):
                return refuse(403, "missing or wrong CSRF token; reload the page")
        return None

    @app.after_request
    def harden(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            if name == "Content-Security-Policy" and name in response.headers:
                continue  # a view's own, stricter policy (the cache chart's) stays
            response.headers[name] = value
        if request.endpoint == "static":
            response.headers["Cache-Control"] = "no-cache"
        else:
            response.headers["Cache-Control"] = "no-store"
        for name in list(response.headers.keys()):
            if name.lower().startswith("access-control-"):
                del response.headers[name]
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        message = exc.description or exc.name
        return refuse(exc.code or 500, message)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("settings page error on %s %s", request.method, request.path)
        return refuse(500, "something went wrong; the log has the details")

    from .views import register

    register(app)
    return app
