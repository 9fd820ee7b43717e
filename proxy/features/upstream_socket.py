"""One upstream WebSocket per agent session: Responses turns go out as ``response.create`` frames, and a turn that
continues the conversation the connection already holds sends only its new input, chained with
``previous_response_id`` (which the service resolves on that connection only).

A feature with an ``open`` hook (proxy/features/base.py): the forwarder builds the request as for HTTP (the adapter's
body, the whole conversation — every fallback and every other transport can still send it), and this transport
decides what actually needs to travel:

    (account, agent session) ─► its session: one socket, the conversation the socket holds (canonical items),
                                the last response id, the request's other fields
    turn ─► socket missing, closed or older than ``max_age``  → a new one (bind before release), the full input
         ─► same fields, and the conversation held is a prefix of this input → previous_response_id + the rest
         ─► otherwise → the full input, on the same socket
    frames ─► ``codex.rate_limits`` before the first event → x-codex-* headers (the quota book reads them as over HTTP)
           ─► an ``error`` frame first → an httpx.Response with that status and error body (fallback as over HTTP);
              ``websocket_connection_limit_reached`` / ``previous_response_not_found`` → a new socket, full input, once
           ─► a kept socket gone before any frame (the laptop slept: the service forgot it) → the same, once
           ─► events → an httpx.Response whose stream yields them as SSE bytes, so the forwarder's pre-content hold,
              fallback and relay are unchanged

Not taken (None → the next transport, finally HTTP): no agent session id, a background (keep-warm) request, another
turn of the same session already on its socket, an account kind or path without a WebSocket mode, or the setting
off. An upstream that refuses the upgrade (any HTTP status) is not asked again for ten minutes; that and a socket
that cannot be opened are logged, and the turn goes over HTTP with its full input (TransportFailed).

A turn that ends early (the agent hung up, a fallback after the hold, a broken stream) leaves the socket mid-answer:
it is closed and the session starts over. Sessions idle for ``upstream_websocket.idle_minutes`` are closed by
:meth:`run`; :meth:`close_session` closes an agent session's sockets when the agent's own WebSocket closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpcore
import httpx

from proxy.config.settings import Account, Settings, UpstreamWebSocketSettings
from proxy.features.base import Feature, TransportFailed
from proxy.logs import redact
from proxy.providers.base import Incoming, Outgoing
from proxy.providers.chatgpt.backend import LITE_HEADER, is_lite
from proxy.providers.chatgpt.limits import rate_limit_frame_headers
from proxy.wire.sleep_watch import SleepWatch

if TYPE_CHECKING:  # the WebSocket client (and wsproto) is imported when the first upstream socket opens
    from proxy.relay.websocket import WebSocket

__all__ = ["BETA_HEADER", "CONNECTION_CAP", "LITE_METADATA_KEY", "UpstreamSockets", "canonical_item"]

log = logging.getLogger("headway.upstream_socket")

BETA_HEADER = "responses_websockets=2026-02-06"
#: The service closes a connection after 60 minutes; Headway renews five minutes before.
CONNECTION_CAP = 3600.0
RENEW_BEFORE = 300.0
#: Where the Responses Lite marker goes on a WebSocket (there are no per-request headers): ``client_metadata``.
LITE_METADATA_KEY = "ws_request_header_x_openai_internal_codex_responses_lite"

_KINDS = {"chatgpt": "chatgpt", "openai-api-key": "openai"}
_TERMINAL = frozenset({"response.completed", "response.failed", "response.incomplete", "error"})
_RESTART = frozenset({"websocket_connection_limit_reached", "previous_response_not_found"})
_NOT_SENT = frozenset({"stream", "background", "type"})
_NOT_COMPARED = frozenset({"input", "previous_response_id", "client_metadata", *_NOT_SENT})
_NOT_UPGRADE_HEADERS = frozenset(
    {"content-type", "content-length", "accept", "accept-encoding", "connection"}
)
_REFUSED_FOR = 600.0
_MAX_MESSAGE = 64 * 1024 * 1024


def canonical_item(item: Any) -> str:
    """An input or output item as it compares across turns: the ids and statuses the service adds, empty
    annotation lists and null fields left out (agents send items back with or without them)."""
    if not isinstance(item, dict):
        return json.dumps(item, sort_keys=True, separators=(",", ":"))
    out = {k: v for k, v in item.items() if k not in ("id", "status") and v is not None}
    content = out.get("content")
    if isinstance(content, list):
        out["content"] = [
            {k: v for k, v in part.items() if not (k in ("annotations", "logprobs") and not v)}
            if isinstance(part, dict)
            else part
            for part in content
        ]
    return json.dumps(out, sort_keys=True, separators=(",", ":"))


def _fields(body: dict[str, Any]) -> str:
    """Everything a turn says besides its input: a change (model, tools, instructions…) starts a new chain.
    ``client_metadata`` is about the request, not the conversation (the Codex CLI puts its turn id there)."""
    rest = {k: v for k, v in body.items() if k not in _NOT_COMPARED}
    return json.dumps(rest, sort_keys=True, separators=(",", ":"))


@dataclass
class _Session:
    key: tuple[str, str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ws: WebSocket | None = None
    opened: float = 0.0
    used: float = 0.0
    fields: str | None = None
    held: list[str] | None = None  # the conversation the socket holds, canonical; None: not known
    last_id: str | None = None


@dataclass
class _Sent:
    """One turn on its way: what the socket will hold once it completes."""

    conversation: list[str]
    fields: str
    known: bool  # False: the request chained from a response Headway does not hold (an id the agent sent)


class UpstreamSockets(Feature):
    name = "upstream_websocket"

    def __init__(
        self,
        client: Callable[[], httpx.AsyncClient],
        *,
        max_age: float = CONNECTION_CAP - RENEW_BEFORE,
        clock: Callable[[], float] = time.monotonic,
        on_rate_limits: Callable[[str, dict[str, str]], None] = lambda account_id, headers: None,
        sleep_watch: SleepWatch | None = None,
    ) -> None:
        self._client = client
        # Sockets opened before the machine last slept are not used again (proxy/wire/sleep_watch.py): a firewall
        # that forgot one drops its frames without a word, and the turn would wait out the read timeout.
        self.sleep_watch = SleepWatch() if sleep_watch is None else sleep_watch
        # A turn's later codex.rate_limits frames (the first ones go out as the answer's x-codex-* headers): the
        # account's id and the same facts as those headers, for the quota book.
        self._on_rate_limits = on_rate_limits
        self.max_age = max_age
        self._clock = clock
        self._settings = UpstreamWebSocketSettings()
        self._read_timeout: float | None = None
        self._connect_timeout = 10.0
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._refused: dict[str, float] = {}
        self._closing: set[asyncio.Task[None]] = set()
        # Totals since start (the benchmark and the tests read them): frames sent and their bytes, sockets opened.
        self.turns_sent = 0
        self.bytes_sent = 0
        self.sockets_opened = 0

    # ------------------------------------------------------------ feature hooks

    def configure(self, settings: Settings) -> None:
        self._settings = settings.upstream_websocket
        self._read_timeout = settings.gateway.read_timeout_seconds
        self._connect_timeout = settings.gateway.connect_timeout_seconds

    async def open(self, out: Outgoing, request: Incoming, account: Account) -> httpx.Response | None:
        session_id = request.session.session_id
        which = _KINDS.get(account.kind)
        if (
            which is None
            or not getattr(self._settings, which)
            or not session_id
            or request.purpose != "agent"
            or out.method != "POST"
            or not out.url.endswith("/responses")
        ):
            return None
        if self._refused.get(account.id, 0.0) > self._clock():
            return None
        key = (account.id, session_id)
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = _Session(key)
        if session.lock.locked():
            return None  # this session already has a turn on its socket: this one goes over HTTP
        try:
            body = json.loads(out.content)
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        await session.lock.acquire()
        try:
            response = await self._turn(session, out, body, account)
        except BaseException:
            await self._reset(session)
            session.lock.release()
            raise
        if not isinstance(response.stream, _TurnStream):
            session.lock.release()
        return response

    async def run(self) -> None:
        while True:
            await asyncio.sleep(30)
            idle = self._settings.idle_minutes * 60
            now = self._clock()
            for key, session in list(self._sessions.items()):
                if not session.lock.locked() and now - session.used > idle:
                    del self._sessions[key]
                    await self._close(session, "idle")

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await self._close(session, "shutdown")
        if self._closing:
            await asyncio.wait(set(self._closing), timeout=5)

    def close_session(self, session_id: str) -> None:
        """The agent's session ended (its WebSocket closed): close its upstream sockets when they are idle."""
        for key, session in list(self._sessions.items()):
            if key[1] == session_id and not session.lock.locked():
                del self._sessions[key]
                ws, session.ws = session.ws, None
                if ws is not None:
                    task = asyncio.get_running_loop().create_task(
                        ws.close(), name="headway-upstream-socket-close"
                    )
                    self._closing.add(task)  # referenced until done; aclose waits for the rest
                    task.add_done_callback(self._closing.discard)

    # ------------------------------------------------------------ one turn

    async def _turn(
        self, session: _Session, out: Outgoing, body: dict[str, Any], account: Account
    ) -> httpx.Response:
        # (loaded already: the session's socket was opened with it)
        from proxy.relay.websocket import WebSocketError

        items = body.get("input")
        items = items if isinstance(items, list) else ([] if items is None else [items])
        canonical = [canonical_item(item) for item in items]
        fields = _fields(body)
        lite = is_lite(out.headers)
        for attempt in range(2):
            fresh = await self._ensure_socket(session, out, account, force=attempt > 0)
            chained = (
                not fresh
                and session.last_id is not None
                and session.held is not None
                and session.fields == fields
                and "previous_response_id" not in body
                and len(canonical) >= len(session.held)
                and canonical[: len(session.held)] == session.held
            )
            frame = {k: v for k, v in body.items() if k not in _NOT_SENT}
            if chained:
                assert session.held is not None
                frame["previous_response_id"] = session.last_id
                frame["input"] = items[len(session.held) :]
            if lite:
                metadata = frame.get("client_metadata")
                frame["client_metadata"] = {
                    **(metadata if isinstance(metadata, dict) else {}),
                    LITE_METADATA_KEY: "true",
                }
            text = json.dumps({"type": "response.create", **frame}, separators=(",", ":"))
            ws = session.ws
            assert ws is not None
            try:
                await ws.send_text(text)
                first = await self._recv(ws)
            except (WebSocketError, httpx.ReadError) as exc:
                if fresh:
                    raise
                # A kept socket that is gone before any answer: the service forgot it (the laptop slept, the
                # network changed) while its age, on the monotonic clock, still looked young. A new one, once.
                log.info(
                    "account %s: the upstream WebSocket of session %s was gone (%s); opening a new one with the "
                    "full input",
                    account.id,
                    session.key[1],
                    exc,
                )
                continue
            self.turns_sent += 1
            self.bytes_sent += len(text.encode())
            session.used = self._clock()
            sent = _Sent(canonical, fields, known="previous_response_id" not in body)
            headers: dict[str, str] = {}
            while True:
                kind = first.get("type")
                if kind == "codex.rate_limits":
                    headers.update(rate_limit_frame_headers(first))
                    first = await self._recv(ws)
                    continue
                break
            if kind == "error":
                raw_error = first.get("error")
                error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
                code = str(error.get("code") or error.get("type") or "")
                if code in _RESTART and attempt == 0:
                    log.info(
                        "account %s: the upstream WebSocket said %s; opening a new one with the full input",
                        account.id,
                        code,
                    )
                    continue
                status = first.get("status")
                status = status if isinstance(status, int) and 400 <= status < 600 else 500
                session.used = self._clock()
                return httpx.Response(
                    status,
                    headers={**headers, "content-type": "application/json"},
                    content=json.dumps({"error": error}).encode(),
                    request=httpx.Request(out.method, out.url),
                )
            stream = _TurnStream(self, session, ws, first, sent)
            return httpx.Response(
                200,
                headers={**headers, "content-type": "text/event-stream", "x-headway-transport": "websocket"},
                stream=stream,
                request=httpx.Request(out.method, out.url),
            )
        raise AssertionError("unreachable")  # pragma: no cover

    async def _ensure_socket(
        self, session: _Session, out: Outgoing, account: Account, *, force: bool
    ) -> bool:
        """A usable socket for the session; True when it is a new one (the turn must carry its full input)."""
        now = self._clock()
        old = session.ws
        slept = session.opened < self.sleep_watch.awake_since(now)
        if (
            not force
            and old is not None
            and not old.closed
            and now - session.opened < self.max_age
            and not slept
        ):
            return False
        url = out.url
        headers = {k: v for k, v in out.headers.items() if k.lower() not in _NOT_UPGRADE_HEADERS}
        headers.pop(LITE_HEADER, None)  # per turn, in client_metadata
        headers["openai-beta"] = BETA_HEADER
        from proxy.relay.websocket import WebSocket, WebSocketError

        try:
            ws = await WebSocket.connect(
                self._client(),
                url,
                headers,
                timeout=self._connect_timeout,
                max_message=_MAX_MESSAGE,
                compress=True,  # permessage-deflate: the instructions and tools each turn repeats cost almost nothing
            )
        except WebSocketError as exc:
            if exc.status is not None:
                self._refused[account.id] = now + _REFUSED_FOR
                log.warning(
                    "account %s: the upstream refused a WebSocket (HTTP %s: %s); using HTTP for it for %d minutes",
                    account.id,
                    exc.status,
                    redact(exc.body[:200].decode("utf-8", errors="replace")),
                    _REFUSED_FOR // 60,
                )
            else:
                log.warning(
                    "account %s: no upstream WebSocket (%s); using HTTP", account.id, redact(str(exc))
                )
            raise TransportFailed(f"no upstream WebSocket: {exc}") from exc
        except httpx.HTTPError as exc:
            log.warning(
                "account %s: cannot open an upstream WebSocket (%s); using HTTP",
                account.id,
                redact(str(exc) or type(exc).__name__),
            )
            raise TransportFailed(f"no upstream WebSocket: {exc}") from exc
        if old is not None and not old.closed:
            if force:
                why = "restarted"
            elif slept:
                why = "opened anew: the machine slept since the old one was used"
            else:
                why = f"renewed after {now - session.opened:.0f}s (the service caps it at 60 min)"
            log.info("account %s: upstream WebSocket of session %s %s", account.id, session.key[1], why)
        session.ws, session.opened = ws, now
        session.held, session.last_id, session.fields = None, None, None
        self.sockets_opened += 1
        if old is not None:
            await old.close()
        return True

    async def _recv(self, ws: WebSocket) -> dict[str, Any]:
        from proxy.relay.websocket import WebSocketClosed, WebSocketError

        try:
            raw = await ws.recv(self._read_timeout)
        except WebSocketClosed as exc:
            cause = exc.__cause__
            if isinstance(cause, httpcore.TimeoutException | TimeoutError):
                raise httpx.ReadTimeout("the upstream WebSocket went silent") from exc
            raise httpx.ReadError(f"the upstream WebSocket closed: {exc}") from exc
        except WebSocketError as exc:
            raise httpx.ReadError(f"the upstream WebSocket failed: {exc}") from exc
        try:
            data = json.loads(raw)
        except ValueError:
            raise httpx.DecodingError("the upstream WebSocket sent a frame that is not JSON") from None
        if not isinstance(data, dict):
            raise httpx.DecodingError("the upstream WebSocket sent a frame that is not a JSON object")
        return data

    async def _reset(self, session: _Session) -> None:
        """The socket is mid-answer or broken: close it; the session's next turn opens a new one."""
        ws, session.ws = session.ws, None
        session.held, session.last_id = None, None
        if ws is not None:
            await ws.close()

    async def _close(self, session: _Session, why: str) -> None:
        if session.ws is not None:
            log.debug("closing the upstream WebSocket of session %s (%s)", session.key[1], why)
            await self._reset(session)

    def _completed(self, session: _Session, sent: _Sent, response_id: str | None, output: list[Any]) -> None:
        session.used = self._clock()
        session.last_id = response_id
        session.fields = sent.fields
        session.held = [*sent.conversation, *(canonical_item(o) for o in output)] if sent.known else None


class _TurnStream(httpx.AsyncByteStream):
    """One turn's frames as SSE bytes; it gives the session back when it ends."""

    def __init__(
        self, owner: UpstreamSockets, session: _Session, ws: WebSocket, first: dict[str, Any], sent: _Sent
    ) -> None:
        self._owner = owner
        self._session = session
        self._ws = ws
        self._first: dict[str, Any] | None = first
        self._sent = sent
        self._done = False
        self._released = False
        self._response_id: str | None = None
        self._output: list[Any] = []
        self._final: list[Any] | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while not self._done:
            if self._first is not None:
                frame, self._first = self._first, None
            else:
                frame = await self._owner._recv(self._ws)
            kind = frame.get("type")
            if kind == "codex.rate_limits":  # usage moved during the turn: the quota book hears of it now
                self._owner._on_rate_limits(self._session.key[0], rate_limit_frame_headers(frame))
                continue
            self._watch(frame)
            yield b"event: " + str(kind).encode() + b"\ndata: " + json.dumps(frame).encode() + b"\n\n"

    def _watch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "response.output_item.done" and isinstance(frame.get("item"), dict):
            self._output.append(frame["item"])
        response = frame.get("response")
        if isinstance(response, dict) and isinstance(response.get("id"), str):
            self._response_id = response["id"]
        if kind in _TERMINAL:
            self._done = True
            if kind == "response.completed":
                output = response.get("output") if isinstance(response, dict) else None
                final = output if isinstance(output, list) and output else self._output
                self._owner._completed(self._session, self._sent, self._response_id, final)

    async def aclose(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            if not self._done:
                await self._owner._reset(self._session)
        finally:
            self._session.lock.release()
