"""The Responses API over WebSocket, agent side: ``GET /v1/responses`` (and ``/responses``) upgraded.

The upgrade request passes the same local checks as any HTTP request first (:class:`proxy.gateway.app.LocalGuard`
answers a refusal with a plain HTTP 401/403 instead of upgrading). On the open socket, each client text frame
``{"type": "response.create", …a Responses body…}`` is one turn, answered in order:

    frame ─► the body (``type`` removed, ``stream: true``), ``previous_response_id`` resolved from this socket's
             ConversationBook into the full input (unknown id → an error frame; nothing is sent upstream)
          ─► an Incoming for ``POST /v1/responses`` through GatewayHooks.forward — the very path an HTTP request
             takes: routing, fallback before content, quota, killswitch, the cache stabilizer, usage, dumps and
             the request log apply unchanged (an upstream WebSocket, where one is used, is chosen there)
          ─► every SSE event of the answer as one JSON text frame; an error answer as one
             ``{"type": "error", "status": N, "error": {…}}`` frame. The socket stays open for the next turn.

``{"type": "response.create", "generate": false, …}`` (Codex's warm-up) is answered here, without an upstream
request: ``response.created`` and an empty ``response.completed`` whose id later turns may chain from.

The agent's hang-up is seen by a reader task that owns the socket's receive side; the turn's forward sees it as an
``http.disconnect`` (so a turn waiting for an upstream stops at once, as over HTTP) and its answer stream is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterable, MutableMapping
from typing import TYPE_CHECKING, Any

from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from proxy.gateway.conversations import ConversationBook, ResponseTap, input_items
from proxy.gateway.errors import error_body
from proxy.providers.base import Incoming
from proxy.routing.sessions import identify_session
from proxy.secrets.members import MEMBER_SCOPE_KEY
from proxy.wire.errors import BadRequest, HeadwayError, InternalError, RequestTooLarge
from proxy.wire.sse import SSEParser

if TYPE_CHECKING:
    from proxy.gateway.app import GatewayHooks

__all__ = ["MAX_FRAME_BYTES", "WEBSOCKET_HEADERS", "ResponsesSocket", "error_frame"]

log = logging.getLogger("headway.gateway")

# The upgrade's own headers: they describe this socket, not the turns sent upstream.
WEBSOCKET_HEADERS = frozenset(
    {
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
        "upgrade",
        "connection",
        "openai-beta",
    }
)
#: The largest frame the server reassembles (uvicorn's ws_max_size; beyond it the socket is closed with 1009). The
#: route's own limit, gateway.max_body_mb (64 MB by default), answers smaller frames over it with an error frame.
MAX_FRAME_BYTES = 64 * 1024 * 1024
_QUEUE = 8  # frames read ahead of the turn being answered (the reader waits beyond that)


def error_frame(status: int, message: str, code: str | None = None) -> str:
    """An error turn's frame, in OpenAI's shape with the HTTP status it stands for."""
    error = error_body("openai", status, f"Headway: {message}", code)["error"]
    return json.dumps({"type": "error", "status": status, "error": error})


class _Closed(Exception):
    """The agent's socket is gone."""


class ResponsesSocket:
    """One agent WebSocket: its turns, one at a time, and the conversation it built."""

    def __init__(self, websocket: WebSocket, hooks: GatewayHooks) -> None:
        self._ws = websocket
        self._hooks = hooks
        self._headers = {
            k.lower(): v for k, v in websocket.headers.items() if k.lower() not in WEBSOCKET_HEADERS
        }
        self._session = identify_session(self._headers)
        self._member: str | None = websocket.scope.get(MEMBER_SCOPE_KEY)  # tagged by LocalGuard
        self._book = ConversationBook(max_entries=8)
        self._frames: asyncio.Queue[str | bytes] = asyncio.Queue(_QUEUE)
        self._gone = asyncio.Event()
        self.turns = 0

    async def run(self) -> None:
        await self._ws.accept()
        log.info(
            "agent WebSocket opened on %s [session %s, %s]",
            self._ws.url.path,
            self._session.session_id,
            self._headers.get("user-agent", "?")[:80],
        )
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read(), name="headway-ws-agent-reader")
        try:
            while True:
                frame = await self._next()
                if frame is None:
                    return
                try:
                    await self._turn(frame)
                except _Closed:
                    return
        finally:
            reader.cancel()
            await asyncio.wait({reader})
            if self._session.session_id:
                self._hooks.session_closed(self._session.session_id)
            log.debug(
                "agent WebSocket closed after %d turn(s) [session %s]", self.turns, self._session.session_id
            )

    async def _read(self) -> None:
        try:
            while True:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                await self._frames.put(data)
        except Exception as exc:  # a broken connection ends the socket like a close
            log.debug("agent WebSocket read ended: %s", type(exc).__name__)
        finally:
            self._gone.set()

    async def _next(self) -> str | bytes | None:
        if not self._frames.empty():
            return self._frames.get_nowait()
        get = asyncio.ensure_future(self._frames.get())
        gone = asyncio.ensure_future(self._gone.wait())
        try:
            await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not get.done():
                get.cancel()
        if get.done() and not get.cancelled():
            return get.result()
        return None

    async def _receive_disconnect(self) -> MutableMapping[str, Any]:
        """The turn's ASGI receive channel: it says ``http.disconnect`` once the agent's socket is gone."""
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, text: str) -> None:
        if self._gone.is_set():
            raise _Closed
        try:
            await self._ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            self._gone.set()
            raise _Closed from exc

    # ------------------------------------------------------------ one turn

    async def _turn(self, frame: str | bytes) -> None:
        self.turns += 1
        try:
            body = self._body(frame)
            if body.get("generate") is False:
                await self._warm_up(body)
                return
            body.pop("generate", None)
            incoming = self._incoming(body)
            response = await self._hooks.forward(incoming)
        except HeadwayError as exc:
            await self._send(error_frame(exc.status, exc.message, exc.code))
            return
        except RecursionError:
            await self._send(
                error_frame(400, "the frame's JSON is nested too deeply", "invalid_request_error")
            )
            return
        except UnicodeEncodeError:
            await self._send(
                error_frame(400, "the frame contains a lone UTF-16 surrogate escape: not valid Unicode")
            )
            return
        except _Closed:
            raise
        except Exception:
            log.exception("unhandled error answering a WebSocket turn on /v1/responses")
            error = InternalError("internal error in the gateway; the details are in Headway's log file")
            await self._send(error_frame(error.status, error.message, error.code))
            return
        await self._answer(response, incoming)

    def _body(self, frame: str | bytes) -> dict[str, Any]:
        if isinstance(frame, bytes):
            raise BadRequest(
                "binary frames are not part of the protocol: send response.create as a text frame"
            )
        limit_mb = self._hooks.settings().gateway.max_body_mb
        if len(frame) > limit_mb * 1024 * 1024:
            raise RequestTooLarge(
                f"the frame is larger than the gateway's limit of {limit_mb} MB (setting gateway.max_body_mb)"
            )
        try:
            data = json.loads(frame)
        except ValueError as exc:
            raise BadRequest(f"the frame is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("type") != "response.create":
            kind = data.get("type") if isinstance(data, dict) else None
            raise BadRequest(f"expected a response.create frame, got {str(kind)[:60]!r}")
        body = {k: v for k, v in data.items() if k != "type"}
        previous = body.get("previous_response_id")
        if previous is not None:
            expanded = self._book.expand(body)
            if expanded is None:
                raise _UnknownPrevious(previous)
            body = expanded
        return body

    def _incoming(self, body: dict[str, Any]) -> Incoming:
        body["stream"] = True
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return Incoming(
            method="POST",
            path="/v1/responses",
            query="",
            headers=dict(self._headers),
            body=raw,
            json=body,
            protocol="openai-responses",
            family="openai",
            session=self._session,
            receive=self._receive_disconnect,
            member=self._member,
        )

    async def _warm_up(self, body: dict[str, Any]) -> None:
        response_id = f"resp_headway_{uuid.uuid4().hex}"
        response: dict[str, Any] = {
            "id": response_id,
            "object": "response",
            "created_at": int(time.time()),
            "model": body.get("model"),
            "status": "in_progress",
            "output": [],
            "usage": None,
        }
        await self._send(json.dumps({"type": "response.created", "response": response}))
        usage = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        done = {**response, "status": "completed", "usage": usage}
        await self._send(json.dumps({"type": "response.completed", "response": done}))
        self._book.remember(response_id, input_items(body.get("input")), 0)

    async def _answer(self, response: Response, incoming: Incoming) -> None:
        if not isinstance(response, StreamingResponse):
            await self._whole(response)
            return
        tap = ResponseTap()
        parser = SSEParser()
        chunks: AsyncIterable[Any] = response.body_iterator
        try:
            async for chunk in chunks:
                for event in parser.feed(chunk.encode() if isinstance(chunk, str) else bytes(chunk)):
                    data = event.json()
                    if not isinstance(data, dict):
                        continue  # e.g. a [DONE] line: not an event of this protocol
                    text = event.data
                    if "type" not in data and event.event:
                        data = {"type": event.event, **data}
                        text = json.dumps(data)
                    tap.feed_event(data)
                    await self._send(text)
        finally:
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()
        if tap.completed and tap.response_id:
            conversation = [*input_items(incoming.json.get("input")), *tap.output()]
            self._book.remember(tap.response_id, conversation, len(incoming.body))

    async def _whole(self, response: Response) -> None:
        body = bytes(response.body)
        status = response.status_code
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        if status >= 400:
            error = data.get("error") if isinstance(data, dict) else None
            if not isinstance(error, dict):
                text = body.decode("utf-8", errors="replace")[:300]
                error = error_body("openai", status, f"Headway: the upstream answered {status}: {text}")[
                    "error"
                ]
            await self._send(json.dumps({"type": "error", "status": status, "error": error}))
            return
        if isinstance(data, dict):  # a whole answer (an upstream that would not stream): one completed event
            await self._send(json.dumps({"type": "response.completed", "response": data}))
            return
        await self._send(error_frame(502, "the upstream's answer was not a Responses event stream"))


class _UnknownPrevious(BadRequest):
    code = "previous_response_not_found"

    def __init__(self, previous: object) -> None:
        super().__init__(
            f"previous_response_id {str(previous)[:80]!r} is not a response of this WebSocket: Headway resolves "
            "previous_response_id only on the connection that produced it (the ChatGPT backend stores nothing); "
            "send the full input instead"
        )
