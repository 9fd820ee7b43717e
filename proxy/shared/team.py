"""What a gateway needs for team use, in one object the engine owns: member keys, their spend, the shared state.

- Member keys come from ``members.json`` (:class:`~proxy.secrets.members.MemberFile`), re-read within a second
  of ``headway keys add/revoke`` changing it. In team mode Redis is their authority instead: the file is loaded at
  start (a replica can start while Redis is away) and then kept as this replica's copy of what Redis says.
- The shared state link (:class:`~proxy.shared.link.SharedState`) exists only when a Redis URL is configured
  (``shared_state.url`` or ``HEADWAY_SHARED_STATE_URL``); without one nothing here touches the network and the
  books have no listeners — a lone gateway behaves exactly as before.
- A settings edit applies live, like every other setting: :meth:`Team.reconfigure` notes a new URL or namespace (or
  none) and :meth:`Team.run` ends the current link (its connection closed, the books' listeners removed) and starts
  the new one, which resyncs — it reads what the others wrote and publishes everything this replica holds.

Every method runs on the engine loop except :meth:`Team.__init__` (the engine's constructor).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from proxy.config.paths import Paths
from proxy.config.settings import Settings
from proxy.features.member_usage import member_summary
from proxy.features.request_log import RequestLogError
from proxy.routing.spend import SpendBook
from proxy.routing.state import RuntimeState
from proxy.secrets.members import Member, MemberBook, MemberFile, MembersError
from proxy.shared.records import Names
from proxy.tasks import TaskGroup

if TYPE_CHECKING:
    from proxy.shared.link import SharedState

__all__ = ["Team"]

log = logging.getLogger("headway.team")


class Team:
    def __init__(
        self,
        paths: Paths,
        state: RuntimeState,
        *,
        url: str | None,
        settings: Callable[[], Settings],
        on_change: Callable[[], None],
        reload_interval: float = 0.5,
    ) -> None:
        self.members = MemberBook()
        self.spend = SpendBook()
        self._file = MemberFile(paths.members_file)
        self._request_log = paths.request_log
        self._settings = settings
        self._reload_interval = reload_interval
        self._signature: tuple[int, int] | None = None
        self.members_error: str | None = None
        self._state = state
        self._on_change = on_change
        self._load_file()
        self._restore_spend()
        self._wanted = _target(url, settings())
        self.link = self._new_link(self._wanted)
        self._copy_due = asyncio.Event()
        self._reconfigured = asyncio.Event()

    def _new_link(self, target: tuple[str, str] | None) -> SharedState | None:
        if target is None:
            return None
        from proxy.shared.link import SharedState  # redis is imported by team mode only

        url, namespace = target
        link = SharedState(
            url,
            Names(namespace),
            self._state,
            self.members,
            self.spend,
            pin_ttl=lambda: self._settings().routing.sticky_idle_minutes * 60,
            on_change=self._on_change,
            on_members=self._members_from_redis,
        )
        link.attach()
        return link

    def reconfigure(self, url: str | None, settings: Settings) -> None:
        """The settings changed: team mode on, off, or to another Redis or namespace — applied by :meth:`run`."""
        wanted = _target(url, settings)
        if wanted != self._wanted:
            self._wanted = wanted
            self._reconfigured.set()

    @property
    def shared(self) -> bool:
        return self.link is not None

    def member_of(self, key: str) -> str | None:
        """The member a presented key belongs to (hot path: one SHA-256 and a dict lookup), or None."""
        member = self.members.find(key)
        return None if member is None else member.name

    def member(self, name: str) -> Member | None:
        return self.members.get(name)

    def _read(self) -> tuple[tuple[int, int] | None, list[Member] | MembersError]:
        """members.json as it is now (any thread: touches no state)."""
        signature = self._file.signature()
        try:
            return signature, self._file.load()
        except MembersError as exc:
            return signature, exc

    def _take(self, read: tuple[tuple[int, int] | None, list[Member] | MembersError]) -> None:
        """Use what :meth:`_read` found; an unreadable file keeps the members known so far and says why."""
        signature, members = read
        if isinstance(members, MembersError):
            if str(members) != self.members_error:
                log.error("%s; keeping the %d member key(s) known so far", members, len(self.members))
            self.members_error = str(members)
            return
        before = len(self.members)
        self._signature = signature
        self.members_error = None
        self.members.replace(members)
        if before or members:
            log.info("member keys: %d (were %d)", len(self.members), before)

    def _load_file(self) -> None:
        self._take(self._read())

    async def run(self) -> None:
        """Serve the current mode until the settings change it, then switch (see the module's docstring)."""
        while True:
            self._reconfigured.clear()
            tasks = TaskGroup()
            try:
                tasks.spawn(self._serve(), name="headway-team-mode")
                await self._reconfigured.wait()
            finally:
                await tasks.close(timeout=3.0)  # a link's connection is closed by then
            self._switch()

    def _switch(self) -> None:
        old, self.link = self.link, None
        if old is not None:
            old.detach()
        self.link = self._new_link(self._wanted)
        self._signature = None  # without Redis, members.json is read again at once
        if self.link is not None:
            log.info(
                "team mode: shared state is now %s (namespace %s)",
                self.link.stats()["url"],
                self.link.names.namespace,
            )
        else:
            log.info("team mode: shared state is off; member keys come from %s again", self._file.path)
        self._on_change()

    async def _serve(self) -> None:
        """Team mode: the link to Redis, and this replica's copy of the members. Else: watch members.json."""
        if self.link is not None:
            tasks = TaskGroup()
            try:
                tasks.spawn(self._keep_copy(), name="headway-members-copy")
                await self.link.run()
            finally:
                await tasks.close(timeout=2.0)
            return
        while True:
            await asyncio.sleep(self._reload_interval)
            signature = await asyncio.to_thread(self._file.signature)
            if signature != self._signature:
                self._take(await asyncio.to_thread(self._read))

    def _restore_spend(self) -> None:
        """Today's spend per member from the request log, so a restart does not reset the daily caps (at start,
        before the gateway serves: like the runtime state, read in the engine's constructor)."""
        day, _ = self.spend.totals()
        midnight = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()
        try:
            rows = member_summary(self._request_log, since=midnight)
        except RequestLogError as exc:
            log.warning("cannot read today's member spend from the request log: %s", exc)
            return
        for row in rows:
            if row["member"] is not None and row["cost_usd"]:
                self.spend.adopt(day, row["member"], row["cost_usd"])

    def _members_from_redis(self) -> None:
        self._copy_due.set()

    async def _keep_copy(self) -> None:
        """Redis changed the members: keep this replica's copy of them in members.json (off the loop)."""
        while True:
            await self._copy_due.wait()
            self._copy_due.clear()
            members = {m.name: m for m in self.members.all()}
            try:
                await asyncio.to_thread(self._file.change, functools.partial(_replace, members=members))
                self._signature = await asyncio.to_thread(self._file.signature)
            except (OSError, MembersError) as exc:
                log.warning("cannot keep a copy of the member keys in %s: %s", self._file.path, exc)

    def stats(self) -> dict[str, Any]:
        return {
            "members": len(self.members),
            "members_error": self.members_error,
            "shared_state": None if self.link is None else self.link.stats(),
        }


def _target(url: str | None, settings: Settings) -> tuple[str, str] | None:
    """Where team mode links to: the Redis URL and the namespace, or None for a lone gateway."""
    return (url, settings.shared_state.namespace) if url else None


def _replace(current: dict[str, Member], *, members: dict[str, Member]) -> None:
    current.clear()
    current.update(members)
