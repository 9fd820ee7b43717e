"""The base bodies the gateway keeps per agent session (its lanes), mirrored by the Worker, and how a new body picks
the lane it is the next turn of. Bounded by session count, total bytes and idle time (:class:`SessionBook`).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field

from proxy.relay.patch import common_prefix, common_suffix
from proxy.relay.protocol import session_key

__all__ = ["MAX_LANES", "Lane", "Session", "SessionBook", "kinship"]

MAX_LANES = 3
_PROBES = 16
_PROBE_WINDOW = 64


@dataclass
class Lane:
    """One base body of a session, mirrored by the Worker under (session key, lane id)."""

    id: str
    url: str
    body: bytes | None = None
    hash: str | None = None
    revision: int = 0
    busy: bool = False
    used: float = 0.0

    def reset(self) -> None:
        self.body = None
        self.hash = None
        self.revision = 0


@dataclass
class Session:
    session_id: str
    key: str
    lanes: dict[str, Lane] = field(default_factory=dict)
    next_lane: int = 0
    used: float = 0.0

    @property
    def size(self) -> int:
        return sum(len(lane.body) for lane in self.lanes.values() if lane.body is not None)

    @property
    def busy(self) -> bool:
        return any(lane.busy for lane in self.lanes.values())


def kinship(base: bytes, body: bytes) -> float:
    """How much of ``base`` lives on in ``body`` (0..1): is this request the next turn of that one?

    A next turn keeps the old body and adds to it, at the end or in the middle (a long tool result), and may edit a
    little here and there. The common prefix and suffix answer quickly when they cover most of the base; otherwise
    probe windows of the base are searched anywhere in the body.
    """
    prefix = common_prefix(base, body)
    shared = prefix + common_suffix(base, body, limit=min(len(base), len(body)) - prefix)
    if shared * 2 >= len(base):
        return shared / len(base) if base else 1.0
    if len(base) <= _PROBE_WINDOW:
        return 1.0 if base in body else 0.0
    step = (len(base) - _PROBE_WINDOW) / (_PROBES - 1)
    hits = sum(
        1 for k in range(_PROBES) if body.find(base[int(k * step) : int(k * step) + _PROBE_WINDOW]) >= 0
    )
    return hits / _PROBES


class SessionBook:
    """The base bodies, bounded by session count, total bytes and idle time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            session = Session(session_id, session_key(session_id))
            self.sessions[session_id] = session
        self.sessions.move_to_end(session_id)
        session.used = self._clock()
        return session

    @property
    def size(self) -> int:
        return sum(s.size for s in self.sessions.values())

    def choose(self, session: Session, url: str, body: bytes) -> Lane | None:
        """The idle lane whose base lives on in ``body`` the most, a new lane, or None (all lanes busy)."""
        best: Lane | None = None
        best_kinship = 0.0
        for lane in session.lanes.values():
            if lane.busy or lane.url != url or lane.body is None:
                continue
            share = kinship(lane.body, body)
            if share > best_kinship:
                best, best_kinship = lane, share
        if best is not None and best_kinship >= 0.5:
            chosen = best
        elif len(session.lanes) < MAX_LANES:
            chosen = Lane(str(session.next_lane), url)
            session.next_lane += 1
            session.lanes[chosen.id] = chosen
        else:
            idle = [lane for lane in session.lanes.values() if not lane.busy]
            if not idle:
                return None
            chosen = min(idle, key=lambda lane: lane.used)
            chosen.reset()
            chosen.url = url
        chosen.busy = True
        chosen.used = self._clock()
        return chosen

    def sweep(self, max_sessions: int, max_bytes: int, ttl: float) -> list[Session]:
        """Drop idle-too-long sessions, then the least recently used ones beyond the limits. Returns the dropped."""
        now = self._clock()
        dropped = [s for s in self.sessions.values() if not s.busy and now - s.used > ttl]
        for session in dropped:
            del self.sessions[session.session_id]
        total = self.size
        for session in list(self.sessions.values()):
            if len(self.sessions) <= max_sessions and total <= max_bytes:
                break
            if session.busy:
                continue
            total -= session.size
            del self.sessions[session.session_id]
            dropped.append(session)
        return dropped
