"""The gateway's HTTP surface: routes, and the local checks every request passes first.

Layers, outermost first (pure ASGI, so streaming is never buffered):

1. :class:`ErrorBoundary` — an exception nothing else handled is logged with its traceback to Headway's log file and
   answered with a JSON 500 in the route's protocol shape (never uvicorn's plain-text 500).
2. :class:`LocalGuard`:
   a. Host header allowlist — localhost, 127.0.0.1, [::1] and configured names (DNS-rebinding defence);
   b. no browser Origin — a web page the user visits must not be able to spend their quota (no CORS either);
   c. the local access key — required unless turned off on loopback, and always required when bound to a
      non-loopback address. A request is served when *any* credential it presents (``x-api-key``,
      ``Authorization: Bearer``) is the local key: Claude Code with ``ANTHROPIC_API_KEY`` exported sends that key as
      ``x-api-key`` next to its configured ``ANTHROPIC_AUTH_TOKEN`` as Bearer. A refusal whose key looks like a
      provider's key says which environment variable to unset. Every refusal is logged (route and reason, never
      the presented key), at most once a minute per route and reason.
   ``HEAD /``, ``GET /health`` and Claude Code's connectivity probe ``/api/hello`` say only that the gateway is
   up, and skip step c. A team member's key (:mod:`proxy.secrets.members`) is accepted like the local key and
   tags the request with the member's name; ``GET /metrics`` always needs the local key itself.
3. The routes. A proxied route buffers the body (at most ``gateway.max_body_mb``, 64 MB by default — agents send
   300 KB to a few MB; larger gets 413 in the protocol's shape) and requires it to be a UTF-8 JSON object, and
   header values to be ASCII; anything else is a 400 in the protocol's shape.

Deadlines for slow clients (request head, trickling body) live in the connection protocol:
:mod:`proxy.gateway.protocol`.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from proxy import __version__
from proxy.config.settings import Settings
from proxy.gateway.conversations import ConversationBook, kept
from proxy.gateway.errors import error_response
from proxy.gateway.refusals import RefusalLog, provider_key
from proxy.gateway.websocket import ResponsesSocket
from proxy.providers.base import Incoming, StreamProtocol
from proxy.routing.sessions import identify_session
from proxy.secrets.members import MEMBER_SCOPE_KEY
from proxy.wire import json_body
from proxy.wire.content_coding import decode_body
from proxy.wire.errors import (
    AccessDenied,
    BadRequest,
    ForbiddenOrigin,
    HeadwayError,
    InternalError,
    NotFound,
    RequestTooLarge,
)

__all__ = [
    "ErrorBoundary",
    "GatewayHooks",
    "HotRoutes",
    "LocalGuard",
    "build_app",
    "is_loopback",
    "protocol_for",
]

log = logging.getLogger("headway.gateway")

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})
_OPEN_PATHS = frozenset({"/", "/health", "/api/hello"})
_OWNER_PATHS = frozenset({"/metrics"})  # the local access key only, always (never a member's, never open)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def protocol_for(path: str, headers: dict[str, str] | None = None) -> Literal["anthropic", "openai"]:
    """The protocol a request speaks, for answering it in its own error shape."""
    if path.startswith("/v1/messages"):
        return "anthropic"
    if (
        path == "/v1/models"
        and headers is not None
        and ("anthropic-version" in headers or "x-api-key" in headers)
    ):
        return "anthropic"
    return "openai"


# LocalGuard reads the request's headers into a dict (lower-case names) for its checks and leaves it here, so the
# route does not decode them a second time.
_HEADERS_SCOPE_KEY = "headway.headers"


def _scope_headers(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] | None = scope.get(_HEADERS_SCOPE_KEY)
    if headers is None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        scope[_HEADERS_SCOPE_KEY] = headers
    return headers


# ---------------------------------------------------------------- hooks


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
        session_closed: Callable[[str], None] = lambda session_id: None,
        member: Callable[[str], str | None] = lambda key: None,
        metrics: Callable[[], tuple[bytes, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.access_key = access_key
        self.forward = forward
        self.models = models
        self.status = status
        self.bound_host = bound_host
        self.session_closed = session_closed  # an agent's WebSocket closed (its upstream socket may go too)
        self.member = member  # a presented key → the team member it belongs to, or None
        self.metrics = metrics  # Prometheus exposition (body, content type); None: no /metrics


class _Refused(Exception):
    """A local check failed: the error for the agent, and the reason for the log."""

    def __init__(self, error: HeadwayError, reason: str) -> None:
        super().__init__(error.message)
        self.error = error
        self.reason = reason


class LocalGuard:
    """Host, Origin and access-key checks, answering in the protocol of the route asked for."""

    def __init__(self, app: ASGIApp, hooks: GatewayHooks, refusals: RefusalLog | None = None) -> None:
        self.app = app
        self.hooks = hooks
        self.refusals = refusals or RefusalLog()
        self._allowed: tuple[object, frozenset[str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _scope_headers(scope)
        path: str = scope["path"]
        try:
            member = self._check(path, headers)
        except _Refused as refused:
            self.refusals.record(
                scope.get("method", "GET"),
                path,
                refused.reason,
                refused.error.message,
                headers.get("user-agent", ""),
            )
            answer = error_response(protocol_for(path, headers), refused.error)
            if scope["type"] == "websocket":
                await _deny_upgrade(scope, receive, send, answer)
            else:
                await answer(scope, receive, send)
            return
        if member is not None:
            scope[MEMBER_SCOPE_KEY] = member
        await self.app(scope, receive, send)

    def _check(self, path: str, headers: dict[str, str]) -> str | None:
        """Refuse the request (:class:`_Refused`) or let it in: the team member it is from, or None."""
        settings = self.hooks.settings()
        host = headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.startswith("[") and "]:" in host:
            name = host.split("]:", 1)[0] + "]"
        if name.lower() not in self._allowed_hosts(settings):
            raise _Refused(
                ForbiddenOrigin(
                    f"Host {host[:100]!r} is not allowed (add it to gateway.allowed_hosts if it is yours)"
                ),
                "foreign Host header",
            )
        if "origin" in headers or headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            raise _Refused(
                ForbiddenOrigin("requests from web pages are refused: the gateway serves local agents only"),
                "browser request (Origin / Sec-Fetch-Site)",
            )
        if path in _OPEN_PATHS:
            return None
        required = (
            settings.gateway.require_access_key
            or not is_loopback(self.hooks.bound_host())
            or path in _OWNER_PATHS
        )
        presented = _presented_keys(headers)
        if not required:
            return self._member(presented)
        return self._check_key(path, presented)

    def _allowed_hosts(self, settings: Settings) -> frozenset[str]:
        """The Host names served: loopback ones and ``gateway.allowed_hosts`` (built again only when settings change)."""
        names = settings.gateway.allowed_hosts
        if self._allowed is None or self._allowed[0] is not names:
            self._allowed = (names, _LOOPBACK_NAMES | {h.lower() for h in names})
        return self._allowed[1]

    def _member(self, presented: list[str]) -> str | None:
        for key in presented:
            name = self.hooks.member(key)
            if name is not None:
                return name
        return None

    def _check_key(self, path: str, presented: list[str]) -> str | None:
        expected = (self.hooks.access_key() or "").encode()
        # Every presented key is compared (no early exit), each in constant time.
        matches = [bool(expected) and hmac.compare_digest(key.encode(), expected) for key in presented]
        if any(matches):
            return None
        member = self._member(presented)  # found by the key's hash: no secret is compared byte by byte
        if member is not None:
            if path in _OWNER_PATHS:
                raise _Refused(
                    ForbiddenOrigin(f"{path} needs the gateway's own access key, not a member's key"),
                    "member key on an owner-only path",
                )
            return member
        if not presented:
            raise _Refused(
                AccessDenied("no local access key: use the key `headway key` prints as this agent's API key"),
                "no access key",
            )
        provider = provider_key(presented)
        if provider is not None:
            raise _Refused(
                AccessDenied(
                    f"this request carries {provider.what}, not Headway's local access key. Fix: {provider.fix}."
                ),
                f"{provider.what} instead of the local key",
            )
        raise _Refused(
            AccessDenied("wrong local access key: use the key `headway key` prints as this agent's API key"),
            "wrong access key",
        )


async def _deny_upgrade(scope: Scope, receive: Receive, send: Send, answer: Response) -> None:
    """A refused WebSocket upgrade: the HTTP answer itself (401/403 with the JSON error) instead of a 101, through
    the ASGI denial-response extension (uvicorn has it; Starlette's Response speaks it for a websocket scope); a
    server without it can only close (403)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    await answer(scope, receive, send)


def _presented_keys(headers: dict[str, str]) -> list[str]:
    presented = [headers.get("x-api-key", "").strip()]
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        presented.append(auth[7:].strip())
    return [key for key in presented if key]


class ErrorBoundary:
    """The outermost layer: an unhandled exception becomes a logged traceback and a JSON 500 in the protocol's shape.

    When the response had already started (a stream), nothing more can be said to the agent: the exception is logged
    and the server closes the connection, which the agent sees as a broken stream rather than a complete answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            method, path = scope.get("method", "?"), scope.get("path", "?")
            log.exception("unhandled error answering %s %s", method, path)
            if not started:
                await _internal_error(protocol_for(path, _scope_headers(scope)))(scope, receive, send)


def _internal_error(protocol: Literal["anthropic", "openai"]) -> Response:
    return error_response(
        protocol,
        InternalError("internal error in the gateway; the details are in Headway's log file (headway.log)"),
    )


# ---------------------------------------------------------------- routes


async def _read_body(request: Request, limit_mb: int) -> bytes:
    limit = limit_mb * 1024 * 1024
    too_large = RequestTooLarge(
        f"the request body is larger than the gateway's limit of {limit_mb} MB (setting gateway.max_body_mb)"
    )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _content_encoding(scope: Scope) -> str:
    """The request's Content-Encoding, its header lines joined (codings may be listed across several)."""
    return ", ".join(v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"content-encoding")


def _parse_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or BadRequest saying exactly what is wrong with it."""
    try:
        parsed = json_body.loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the request body is not UTF-8 (invalid byte at offset {exc.start})") from None
    except json.JSONDecodeError as exc:
        if not body.strip():
            raise BadRequest("the request body is empty; expected a JSON object") from None
        raise BadRequest(
            f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadRequest("the request body's JSON is nested too deeply") from None
    except ValueError as exc:  # NaN, Infinity
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise BadRequest(f"the request body must be a JSON object, not {_json_kind(parsed)}")
    return parsed


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number"


def build_app(hooks: GatewayHooks, refusals: RefusalLog | None = None) -> ASGIApp:
    refusals = refusals or RefusalLog()
    conversations = ConversationBook()

    def refuse(request: Request, family: Literal["anthropic", "openai"], exc: HeadwayError) -> Response:
        """A request refused for its body or headers: logged (rate-limited) and answered in its protocol's shape."""
        refusals.record(
            request.method, request.url.path, exc.code, exc.message, request.headers.get("user-agent", "")
        )
        return error_response(family, exc)

    async def proxied(
        request: Request, protocol: StreamProtocol, family: Literal["anthropic", "openai"]
    ) -> Response:
        settings = hooks.settings()
        try:
            body = await _read_body(request, settings.gateway.max_body_mb)
            coding = _content_encoding(request.scope)
            if coding:
                body = decode_body(body, coding, settings.gateway.max_body_mb)
            parsed = _parse_object(body)
        except ClientDisconnect:
            log.debug("the agent went away while sending %s", request.url.path)
            return Response(status_code=499)  # nobody is listening; this only ends the handler
        except HeadwayError as exc:
            return refuse(request, family, exc)
        headers = dict(_scope_headers(request.scope))
        for name, value in headers.items():
            if not value.isascii():  # an upstream request cannot carry it (and agents send none)
                return refuse(request, family, BadRequest(f"the value of header {name[:60]!r} is not ASCII"))
        if protocol == "openai-responses" and parsed.get("previous_response_id") is not None:
            expanded = conversations.expand(parsed)
            if expanded is not None:  # else left as sent: the route decides (the ChatGPT one answers 400)
                parsed = expanded
                body = json_body.dumps(parsed)
        incoming = Incoming(
            method=request.method,
            path=request.scope["path"],
            query=request.scope["query_string"].decode("latin-1"),
            headers=headers,
            body=body,
            json=parsed,
            protocol=protocol,
            family=family,
            session=identify_session(headers),
            receive=request.receive,  # the forwarder stops when the agent hangs up
            member=request.scope.get(MEMBER_SCOPE_KEY),
        )
        try:
            answer = await hooks.forward(incoming)
            # Kept unless the agent said store:false, or chained from a response Headway does not hold (it would
            # keep only part of the conversation under the new id).
            if (
                protocol == "openai-responses"
                and parsed.get("store") is not False
                and parsed.get("previous_response_id") is None
            ):
                return kept(answer, conversations, parsed, len(body))
            return answer
        except RecursionError:  # the JSON parsed, but is too deep for a transform that walks it
            return refuse(request, family, BadRequest("the request body's JSON is nested too deeply"))
        except UnicodeEncodeError as exc:
            if "surrogates not allowed" not in str(exc):
                raise
            # "\ud800" is valid JSON syntax but no Unicode text: a transform cannot write it back as UTF-8.
            return refuse(
                request,
                family,
                BadRequest(
                    "the request body contains a lone UTF-16 surrogate escape (like \\ud800): not valid Unicode"
                ),
            )

    async def messages(request: Request) -> Response:
        return await proxied(request, "anthropic", "anthropic")

    async def responses(request: Request) -> Response:
        return await proxied(request, "openai-responses", "openai")

    async def chat(request: Request) -> Response:
        return await proxied(request, "openai-chat", "openai")

    async def responses_socket(websocket: WebSocket) -> None:
        await ResponsesSocket(websocket, hooks).run()

    async def models(request: Request) -> Response:
        return await hooks.models(protocol_for("/v1/models", dict(request.headers.items())), request)

    async def root(request: Request) -> Response:
        if request.method == "HEAD":
            return Response(status_code=200)
        return JSONResponse({"name": "headway", "version": __version__})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def hello(request: Request) -> Response:
        # Claude Code's connectivity probe (HEAD /api/hello, "nonessential traffic"): it carries nothing and asks
        # nothing, so it is answered without the access key instead of logging a refusal on every start.
        return Response(status_code=200) if request.method == "HEAD" else JSONResponse({})

    async def status(request: Request) -> Response:
        return JSONResponse(await hooks.status(request.query_params.get("refresh") == "1"))

    async def metrics(request: Request) -> Response:
        if hooks.metrics is None:
            return error_response("openai", NotFound("metrics are off"))
        body, content_type = hooks.metrics()
        return Response(body, headers={"content-type": content_type})

    routes = [
        Route("/", root, methods=["GET", "HEAD"]),
        Route("/health", health, methods=["GET", "HEAD"]),
        Route("/api/hello", hello, methods=["GET", "HEAD"]),
        Route("/status", status, methods=["GET"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/messages/count_tokens", messages, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        WebSocketRoute("/v1/responses", responses_socket),
        WebSocketRoute("/responses", responses_socket),
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]

    def shape(request: Request) -> Literal["anthropic", "openai"]:
        return protocol_for(request.url.path, {k.lower(): v for k, v in request.headers.items()})

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(shape(request), NotFound(f"no route {request.method} {request.url.path[:200]}"))

    async def server_error(request: Request, exc: Exception) -> Response:
        # Only renders: ErrorBoundary (outside) receives the exception Starlette re-raises, and logs it once.
        return _internal_error(shape(request))

    app = Starlette(
        routes=routes, exception_handlers={404: not_found, 405: not_found, Exception: server_error}
    )
    # The model routes: the POST-only ones of the table above, taken from it so the two never disagree.
    hot = {
        route.path: route.endpoint
        for route in routes
        if isinstance(route, Route) and route.methods == {"POST"}
    }
    return ErrorBoundary(LocalGuard(HotRoutes(app, hot), hooks, refusals))


class HotRoutes:
    """The model routes (``POST``), dispatched before Starlette's router and middleware; anything else goes on to the
    Starlette app. Every agent request takes one of them, and each layer of Starlette's stack wraps every chunk of a
    stream. An exception here reaches :class:`ErrorBoundary`, which answers the same JSON 500 Starlette's handler
    would have."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, Callable[[Request], Awaitable[Response]]]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            handler = self.routes.get(scope["path"])
            if handler is not None:
                response = await handler(Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
