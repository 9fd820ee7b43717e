"""Runtime state that survives restarts: quota snapshots, account health, sticky pins.

Small, separate from the user's settings file, and owned by the engine loop: only the loop reads or changes it.
:class:`StateSaver` persists it for the loop — serialized on the loop (a consistent copy, never iterated while a
request changes it), written by a worker thread atomically and owner-only (temp file, fsync, replace), one write at
a time. A failed write is logged and retried with backoff; the state stays dirty until a write succeeds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from proxy.config.paths import ensure_private_dir, write_private_file
from proxy.routing.health import HealthBook
from proxy.routing.quota import QuotaBook
from proxy.routing.router import Router

__all__ = ["RuntimeState", "StateSaver"]

log = logging.getLogger("headway.state")


@dataclass
class RuntimeState:
    quota: QuotaBook = field(default_factory=QuotaBook)
    health: HealthBook = field(default_factory=HealthBook)
    router: Router = field(default_factory=Router)
    dirty: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": 1,
                "quota": self.quota.to_json(),
                "health": self.health.to_json(),
                "pins": self.router.to_json(),
            }
        )

    @classmethod
    def load(cls, path: Path, *, owner: bool = False) -> RuntimeState:
        """The saved state; a fresh one on first run or when the file is unreadable.

        The ``owner`` (the engine, which will save over the file) moves an unreadable file aside first, so nothing
        it could not read is overwritten; any other reader (``headway status`` offline) leaves the file alone.
        """
        state = cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return state
        except (OSError, ValueError) as exc:
            if not owner:
                log.warning("ignoring unreadable runtime state %s: %s", path, exc)
                return state
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            try:
                path.replace(aside)
                log.warning(
                    "runtime state %s is unreadable (%s); kept it as %s and started afresh", path, exc, aside
                )
            except OSError as move:
                log.warning(
                    "ignoring unreadable runtime state %s: %s (cannot keep it aside: %s)", path, exc, move
                )
            return state
        if isinstance(data, dict):
            state.quota = QuotaBook.from_json(data.get("quota"))
            state.health = HealthBook.from_json(data.get("health"))
            state.router.load_json(data.get("pins"))
        return state

    def save(self, path: Path) -> None:
        """Write synchronously (for a caller that owns the state and may block, e.g. after the loop stopped)."""
        data = self.to_json().encode()
        ensure_private_dir(path.parent)
        write_private_file(path, data)
        self.dirty = False


def _write(path: Path, data: bytes) -> None:
    ensure_private_dir(path.parent)
    write_private_file(path, data)


class StateSaver:
    """Persists a :class:`RuntimeState` for the loop that owns it. Every method runs on that loop."""

    def __init__(
        self,
        state: RuntimeState,
        path: Path,
        *,
        write: Callable[[Path, bytes], None] = _write,
        max_backoff: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._state = state
        self._path = path
        self._write = write
        self._max_backoff = max_backoff
        self._sleep = sleep
        self._lock: asyncio.Lock | None = None
        self._writing: asyncio.Future[None] | None = None
        self.failures = 0  # consecutive failed saves

    async def save(self) -> bool:
        """Serialize now (on the loop), write in a thread; True when the file holds this state."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            previous = self._writing
            if previous is not None and not previous.done():
                await asyncio.wait(
                    {previous}
                )  # a write whose saver was cancelled still runs: never two at once
            try:
                data = self._state.to_json().encode()
            except Exception:
                self._failed("cannot serialize the runtime state", exc_info=True)
                return False
            self._state.dirty = False
            writing = asyncio.get_running_loop().run_in_executor(None, self._write, self._path, data)
            writing.add_done_callback(self._written)
            self._writing = writing
            try:
                await asyncio.shield(writing)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._state.dirty = True
                self._failed(
                    f"cannot save the runtime state to {self._path}: {exc}",
                    exc_info=not isinstance(exc, OSError),
                )
                return False
        if self.failures:
            log.info("runtime state saved again after %d failed attempt(s)", self.failures)
            self.failures = 0
        return True

    def _written(self, future: asyncio.Future[None]) -> None:
        # Runs on the loop. Also covers a write whose saver was cancelled meanwhile: the state must stay dirty.
        if not future.cancelled() and future.exception() is not None:
            self._state.dirty = True

    def _failed(self, message: str, *, exc_info: bool) -> None:
        self.failures += 1
        log.error("%s (attempt %d; will retry)", message, self.failures, exc_info=exc_info)

    async def run(self, interval: float) -> None:
        """Save whenever the state is dirty, every ``interval`` seconds; back off while saving fails. Never ends."""
        delay = interval
        while True:
            await self._sleep(delay)
            if not self._state.dirty:
                continue
            try:
                ok = await self.save()
            except asyncio.CancelledError:
                raise
            except Exception:  # save() handles its own failures; this keeps the loop alive whatever happens
                log.exception("runtime state persistence failed unexpectedly; will retry")
                ok = False
            delay = interval if ok else min(self._max_backoff, max(interval, delay * 2))
