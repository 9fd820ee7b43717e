"""One agent session's WebSocket to the Worker: its requests take turns on it, frames arrive through an inbox, and
a response's body streams from it (:class:`ChannelBody`) until ``done``, then the socket goes to the next request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from proxy.relay.protocol import PROTOCOL_HEADER, PROTOCOL_VERSION, TOKEN_HEADER, WS_PATH
from proxy.relay.websocket import WebSocket, WebSocketClosed, WebSocketError
from proxy.tasks import TaskGroup

__all__ = [
    "ACCEPT_TIMEOUT",
    "WS_IDLE_CLOSE",
    "Channel",
    "ChannelBody",
    "Closed",
    "Item",
    "describe",
]

log = logging.getLogger("headway.relay")

ACCEPT_TIMEOUT = 15.0  # the Worker acknowledges a WebSocket request once the body is rebuilt and verified
WS_DEAD_AFTER = 45.0  # no frame (the Worker sends a keepalive every 15 s) for this long: the socket is dead
WS_KEEPALIVE = 15.0
WS_IDLE_CLOSE = 300.0  # close a session's socket after this long without requests


class Closed:
    def __init__(self, reason: str) -> None:
        self.reason = reason


Item = dict[str, Any] | bytes | Closed


class Channel:
    """One agent session's WebSocket: requests take turns (``lock``), frames arrive through ``inbox``."""

    def __init__(self, key: str, tasks: TaskGroup, clock: Callable[[], float]) -> None:
        self.key = key
        self.lock = asyncio.Lock()
        self.ws: WebSocket | None = None
        self.inbox: asyncio.Queue[Item] = asyncio.Queue(maxsize=4096)
        self.used = clock()
        self.opened = -math.inf  # on `clock`: when the current socket was opened
        self._tasks = tasks
        self._clock = clock
        self._reader: asyncio.Task[Any] | None = None
        self._pinger: asyncio.Task[Any] | None = None

    @property
    def open(self) -> bool:
        return self.ws is not None and not self.ws.closed

    async def ensure(self, client: httpx.AsyncClient, url: str, secret: str) -> WebSocket:
        if self.ws is not None and not self.ws.closed:
            return self.ws
        await self.drop()
        ws = await WebSocket.connect(
            client,
            f"{url}{WS_PATH}?session={self.key}",
            {TOKEN_HEADER: secret, PROTOCOL_HEADER: str(PROTOCOL_VERSION)},
        )
        self.ws = ws
        self.opened = self._clock()
        self.inbox = asyncio.Queue(maxsize=4096)
        self._reader = self._tasks.spawn(
            self._read(ws, self.inbox), name=f"headway-relay-ws-read-{self.key[:8]}"
        )
        self._pinger = self._tasks.spawn(
            self._keepalive(ws), name=f"headway-relay-ws-keepalive-{self.key[:8]}"
        )
        ready = await self.next(ACCEPT_TIMEOUT)
        if not (isinstance(ready, dict) and ready.get("t") == "ready"):
            await self.drop()
            raise WebSocketError(f"the relay did not say ready ({describe(ready)})")
        return ws

    async def next(self, timeout: float | None) -> Item:
        try:
            async with asyncio.timeout(timeout):
                return await self.inbox.get()
        except TimeoutError:
            return Closed(f"no answer within {timeout:.0f}s") if timeout is not None else Closed("timeout")

    async def _read(self, ws: WebSocket, inbox: asyncio.Queue[Item]) -> None:
        try:
            while True:
                message = await ws.recv(timeout=WS_DEAD_AFTER)
                if isinstance(message, bytes):
                    await inbox.put(message)
                    continue
                try:
                    data = json.loads(message)
                except ValueError:
                    continue
                if isinstance(data, dict) and data.get("t") != "keepalive":
                    await inbox.put(data)
        except (WebSocketClosed, WebSocketError) as exc:
            await inbox.put(Closed(str(exc)))

    async def _keepalive(self, ws: WebSocket) -> None:
        while not ws.closed:
            await asyncio.sleep(WS_KEEPALIVE)
            if not self.lock.locked() and self._clock() - self.used > WS_IDLE_CLOSE:
                log.debug("relay socket %s idle; closing it", self.key[:8])
                await ws.close()
                return
            try:
                await ws.send_text('{"t":"keepalive"}')
            except WebSocketClosed:
                return

    async def drop(self) -> None:
        """Close the socket (the Worker stops what it was streaming on it); the next request reconnects."""
        ws, self.ws = self.ws, None
        if ws is not None:
            await ws.close()
        for task in (self._reader, self._pinger):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
        self._reader = self._pinger = None


def describe(item: Item) -> str:
    if isinstance(item, Closed):
        return item.reason
    if isinstance(item, bytes):
        return f"{len(item)} unexpected bytes"
    return json.dumps(item)[:300]


class ChannelBody(httpx.AsyncByteStream):
    """The response body arriving on a session's socket; releases the socket to the next request when done."""

    def __init__(self, channel: Channel, request_id: str, read_timeout: float | None) -> None:
        self._channel = channel
        self._id = request_id
        self._timeout = read_timeout
        self._finished = False
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            while not self._finished:
                item = await self._channel.next(self._timeout)
                if isinstance(item, bytes):
                    yield item
                    continue
                if isinstance(item, Closed):
                    self._finished = True
                    await self._channel.drop()
                    raise httpx.ReadError(f"the relay connection broke mid-stream: {item.reason}")
                kind = item.get("t")
                if kind == "done":
                    self._finished = True
                elif kind == "error":
                    self._finished = True
                    raise httpx.ReadError(f"the relay lost the upstream mid-stream: {item.get('message')}")
        finally:
            await self._release()

    async def aclose(self) -> None:
        await self._release()

    async def _release(self) -> None:
        if self._released:
            return
        self._released = True
        if not self._finished:
            await self._channel.drop()  # the rest of this stream would still arrive on the socket
        self._channel.used = self._channel._clock()
        self._channel.lock.release()
