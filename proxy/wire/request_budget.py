"""One request's bounds before its answer starts: the total deadline, and the agent hanging up.

The forwarder runs every step that waits on an upstream (response headers, an error body, the pre-content hold, a
retry's back-off, a whole non-streaming answer) through :meth:`Budget.step`, which ends the step — cancelling it, so
the upstream connection is closed and no quota is spent for nobody — as soon as one of these happens:

    the agent hung up            → AgentGone      (stop: no further attempt, nothing to answer)
    the request's deadline passed → DeadlinePassed (stop: the agent gets a 504 in its protocol's shape)
    the step's own limit passed   → StepTimeout    (this account is too slow: the next one may serve)

The agent's hang-up is read from the ASGI receive channel: once the request body has been read, the next message a
server delivers is ``http.disconnect``. The watch stops before the answer is handed to the server, which watches the
connection itself from then on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any, TypeVar

__all__ = ["AgentGone", "Budget", "DeadlinePassed", "Receive", "StepTimeout"]

T = TypeVar("T")
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


class AgentGone(Exception):
    """The agent disconnected before its answer started."""


class DeadlinePassed(Exception):
    """The request's total deadline passed."""


class StepTimeout(Exception):
    """One step's own limit passed (the request's deadline has not)."""


async def _hang_up(receive: Receive) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


class Budget:
    """Created on the event loop for one request; :meth:`close` it before handing the answer to the server.

    A step runs in the request's own task (no task per step: a step costs no extra turns of the loop), under
    ``asyncio.timeout``; the agent's hang-up cancels that task from the watch's done callback and the step turns the
    cancellation into :class:`AgentGone`.
    """

    def __init__(self, seconds: float, receive: Receive | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self.seconds = seconds
        self.deadline = self._loop.time() + seconds
        self._stepping: asyncio.Task[Any] | None = None  # the task inside step(), which a hang-up cancels
        self._hung_up_during_step = False
        self._watch: asyncio.Task[None] | None = None
        if receive is not None:
            self._watch = self._loop.create_task(_hang_up(receive), name="headway-agent-hangup")
            self._watch.add_done_callback(self._on_watch_done)

    def remaining(self) -> float:
        return self.deadline - self._loop.time()

    @property
    def agent_gone(self) -> bool:
        watch = self._watch
        return watch is not None and watch.done() and not watch.cancelled() and watch.exception() is None

    def check(self) -> None:
        """Raise AgentGone / DeadlinePassed if either already happened."""
        if self.agent_gone:
            raise AgentGone
        if self.remaining() <= 0:
            raise DeadlinePassed

    def _on_watch_done(self, watch: asyncio.Task[None]) -> None:
        stepping = self._stepping
        if stepping is not None and self.agent_gone and not self._hung_up_during_step:
            self._hung_up_during_step = True
            stepping.cancel()

    async def step(self, work: Awaitable[T], limit: float | None = None) -> T:
        """Await ``work`` within the budget (and within ``limit`` seconds, if given); cancel it otherwise."""
        try:
            self.check()
        except BaseException:
            if isinstance(work, Coroutine):
                work.close()
            raise
        remaining = self.remaining()
        timeout = remaining if limit is None else min(limit, remaining)
        task = asyncio.current_task()
        assert task is not None, "Budget.step runs in a task"
        self._stepping = task
        self._hung_up_during_step = False
        try:
            async with asyncio.timeout(timeout) as bound:
                return await work
        except asyncio.CancelledError:
            if self._hung_up_during_step:
                task.uncancel()
                raise AgentGone from None
            raise
        except TimeoutError:
            if not bound.expired():
                raise  # the work's own TimeoutError, not this step's bound
            if limit is not None and limit < remaining:
                raise StepTimeout from None
            raise DeadlinePassed from None
        finally:
            self._stepping = None

    async def close(self) -> None:
        """Stop watching the agent's connection (the server does from here on)."""
        watch, self._watch = self._watch, None
        if watch is not None and not watch.done():
            watch.remove_done_callback(self._on_watch_done)
            watch.cancel()  # it ends at the loop's next turn; nothing waits on it
