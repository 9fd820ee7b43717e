"""The gateway's HTTP surface: routes, and the local checks every request passes first.

Order of checks (a pure ASGI middleware, so streaming is never buffered):
1. Host header allowlist — localhost, 127.0.0.1, [::1] and configured names (DNS-rebinding defence);
2. no browser Origin — a web page the user visits must not be able to spend their quota (no CORS either);
3. the local access key, as ``x-api-key`` or ``Authorization: Bearer`` — required unless turned off on loopback,
   and always required when bound to a non-loopback address.
``HEAD /`` and ``GET /health`` say only that the gateway is up, and skip step 3.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .errors import AccessDenied, BadRequest, ForbiddenOrigin, HeadwayError, RequestTooLarge, error_response
from .providers.base import Incoming, StreamProtocol
from .sessions import identify_session
from .settings import Settings

__all__ = ["GatewayHooks", "LocalGuard", "build_app", "is_loopback"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
_OPEN_PATHS = frozenset({"/", "/health"})


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _protocol_for(path: str) -> Literal["anthropic", "openai"]:
    return "anthropic" if path.startswith("/v1/messages") else "openai"


class GatewayHooks:
    """What the app needs from the engine; plain callables so the app stays thin and testable."""

    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        access_key: Callable[[], str | None],
        forward: Callable[[Incoming], Awaitable[Response]],
        models: Callable[[Literal["anthropic", "openai"], Request], Awaitable[Response]],
        status: Callable[[bool], Awaitable[dict[str, Any]]],
        bound_host: Callable[[], str],
    ) -> None:
        self.settings = settings
        self.access_key = access_key
        self.forward = forward
        self.models = models
        self.status = status
        self.bound_host = bound_host


class LocalGuard:
    """Host, Origin and access-key checks, answering in the protocol of the route asked for."""

    def __init__(self, app: ASGIApp, hooks: GatewayHooks) -> None:
        self.app = app
        self.hooks = hooks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        try:
            self._check(path, headers)
        except HeadwayError as exc:
            await error_response(_protocol_for(path), exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _check(self, path: str, headers: dict[str, str]) -> None:
        settings = self.hooks.settings()
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.startswith("[") and "]:" in host:
            name = host.split("]:", 1)[0] + "]"
        allowed = _LOOPBACK_NAMES | {h.lower() for h in settings.gateway.allowed_hosts}
        if name.lower() not in allowed:
            raise ForbiddenOrigin(f"Host {host!r} is not allowed (add it to gateway.allowed_hosts if it is yours)")
        if "origin" in headers or headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            raise ForbiddenOrigin("requests from web pages are refused: the gateway serves local agents only")
        if path in _OPEN_PATHS:
            return
        required = settings.gateway.require_access_key or not is_loopback(self.hooks.bound_host())
        if not required:
            return
        expected = self.hooks.access_key()
        presented = headers.get("x-api-key") or ""
        if not presented:
            auth = headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                presented = auth[7:].strip()
        if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
            raise AccessDenied(
                "missing or wrong local access key: use the key `headway key` prints as this agent's API key"
            )


def build_app(hooks: GatewayHooks) -> ASGIApp:
    async def proxied(request: Request, protocol: StreamProtocol, family: Literal["anthropic", "openai"]) -> Response:
        settings = hooks.settings()
        limit = settings.gateway.max_body_mb * 1024 * 1024
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return error_response(family, RequestTooLarge(f"request body over {settings.gateway.max_body_mb} MB"))
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return error_response(family, RequestTooLarge(f"request body over {settings.gateway.max_body_mb} MB"))
            chunks.append(chunk)
        body = b"".join(chunks)
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            return error_response(family, BadRequest("the request body is not valid JSON"))
        headers = {k.lower(): v for k, v in request.headers.items()}
        incoming = Incoming(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=headers,
            body=body,
            json=parsed,
            protocol=protocol,
            family=family,
            session=identify_session(headers),
        )
        return await hooks.forward(incoming)

    async def messages(request: Request) -> Response:
        return await proxied(request, "anthropic", "anthropic")

    async def responses(request: Request) -> Response:
        return await proxied(request, "openai-responses", "openai")

    async def chat(request: Request) -> Response:
        return await proxied(request, "openai-chat", "openai")

    async def models(request: Request) -> Response:
        anthropic = "anthropic-version" in request.headers or "x-api-key" in request.headers
        return await hooks.models("anthropic" if anthropic else "openai", request)

    async def root(request: Request) -> Response:
        if request.method == "HEAD":
            return Response(status_code=200)
        return JSONResponse({"name": "headway", "version": __version__})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def status(request: Request) -> Response:
        return JSONResponse(await hooks.status(request.query_params.get("refresh") == "1"))

    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/status", status, methods=["GET"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", messages, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        from .errors import NotFound

        return error_response(_protocol_for(request.url.path), NotFound(f"no route {request.method} {request.url.path}"))

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
    return LocalGuard(app, hooks)
