"""The gateway's server: uvicorn serving the Starlette app on a socket Headway bound, and live moves.

``start(sock)`` serves on a socket bound beforehand (so a taken port is known before anything starts). ``move()``
goes to the address the settings name now: it binds the new address first and only then stops the old server
(whose open streams finish); when the bind or the start fails it keeps serving where it was and ``listen_error``
says so, until the setting points back at the bound address or a later move succeeds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from proxy.gateway.app import is_loopback
from proxy.gateway.listener import PortInUse, bind_listener, format_address
from proxy.gateway.protocol import GatewayHttpProtocol, WSProtocolOnUpgrade
from proxy.gateway.remote import REMOTE_WARNING, RemoteNotAllowed, check_bind
from proxy.gateway.websocket import MAX_FRAME_BYTES
from proxy.tasks import TaskGroup

__all__ = ["GatewayServer"]

log = logging.getLogger("headway.engine")


class GatewayServer:
    def __init__(
        self,
        *,
        app: Callable[[], ASGIApp],
        tasks: TaskGroup,
        address: Callable[[], tuple[str, int]],
        on_bound: Callable[[], None],
        on_listen_error: Callable[[], None],
        allow_remote: Callable[[], bool] = lambda: False,
    ) -> None:
        self._app = app
        self._tasks = tasks
        self._address = address
        self._on_bound = on_bound
        self._on_listen_error = on_listen_error
        self._allow_remote = allow_remote
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[Any] | None = None
        self._move_lock: asyncio.Lock | None = None
        self.bound: tuple[str, int] = ("127.0.0.1", 0)
        self.listen_error: str | None = None

    async def start(self, sock: socket.socket) -> None:
        """Serve on ``sock`` (already bound and listening)."""
        host = self._address()[0]
        try:
            self._server, self._task = await self._serve(sock)
        except BaseException:
            sock.close()
            raise
        self.bound = (host, sock.getsockname()[1])
        if not is_loopback(host):
            log.warning(REMOTE_WARNING.format(host=host))
        self._on_bound()

    async def _serve(self, sock: socket.socket) -> tuple[uvicorn.Server, asyncio.Task[Any]]:
        config = uvicorn.Config(
            self._app(),
            log_config=None,
            access_log=False,
            lifespan="off",
            http=GatewayHttpProtocol,  # httptools plus request head / body deadlines (slow clients)
            ws=WSProtocolOnUpgrade,  # wsproto, imported on the first upgrade (the Responses API over WebSocket)
            ws_max_size=MAX_FRAME_BYTES,  # the route refuses frames over gateway.max_body_mb with an error frame
            timeout_graceful_shutdown=5,
            timeout_keep_alive=75,
            # Agents connect directly: no proxy in front whose X-Forwarded-For should be believed (uvicorn would
            # trust any local process sending it), and one layer less around every request.
            proxy_headers=False,
        )
        server = uvicorn.Server(config)
        task = self._tasks.spawn(server.serve(sockets=[sock]), name="headway-gateway-server")
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        return server, task

    async def stop(self, timeout: float = 5.0) -> None:
        server, task = self._server, self._task
        self._server = None
        self._task = None
        if server is not None and task is not None:
            await _stop(server, task, timeout)

    async def move(self) -> None:
        """Move to the configured address: bind it first, then close the old one; on failure keep serving."""
        if self._move_lock is None:
            self._move_lock = asyncio.Lock()
        async with self._move_lock:
            host, port = self._address()
            old = format_address(*self.bound)
            if (host, port) == self.bound or (port == 0 and host == self.bound[0]):
                if self.listen_error is not None:
                    log.info("listen address is %s again; the earlier problem no longer applies", old)
                self._set_listen_error(None)
                return
            try:
                check_bind(host, self._allow_remote())
                sock = bind_listener(host, port)
            except RemoteNotAllowed as exc:
                self._failed_move(f"{exc}; still serving on {old}", host, port, exc, old)
                return
            except OSError as exc:
                problem = (
                    str(exc)
                    if isinstance(exc, PortInUse)
                    else f"cannot listen on {format_address(host, port)}: {exc}"
                )
                self._failed_move(f"{problem}; still serving on {old}", host, port, exc, old)
                return
            previous = (self._server, self._task)
            try:
                server, task = await self._serve(sock)
            except Exception as exc:
                sock.close()
                self._failed_move(
                    f"cannot serve on {format_address(host, port)}: {exc}; still serving on {old}",
                    host,
                    port,
                    exc,
                    old,
                )
                return
            self._server, self._task = server, task
            self.bound = (host, sock.getsockname()[1])
            self._on_bound()
            self._set_listen_error(None)
            log.info("the gateway moved from %s to %s", old, format_address(*self.bound))
            if previous[0] is not None and previous[1] is not None:
                await _stop(previous[0], previous[1])

    def _failed_move(self, problem: str, host: str, port: int, exc: Exception, old: str) -> None:
        self._set_listen_error(problem)
        log.error(
            "cannot move the gateway to %s: %s; still serving on %s", format_address(host, port), exc, old
        )

    def _set_listen_error(self, error: str | None) -> None:
        if error != self.listen_error:
            self.listen_error = error
            self._on_listen_error()


async def _stop(server: uvicorn.Server, task: asyncio.Task[Any], timeout: float = 5.0) -> None:
    server.should_exit = True
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        log.warning("open streams did not finish within %.1fs; closing them", timeout)
        server.force_exit = True
        await asyncio.wait({task}, timeout=2.0)
