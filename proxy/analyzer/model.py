"""The cache analysis' data: what a source yields (:class:`TurnRecord`) and what the analysis returns.

Everything here is a plain frozen dataclass; :meth:`CacheReport.to_dict` is the JSON shape (``--json``, the settings
page). Times are epoch seconds in the dataclasses and ISO 8601 (UTC) in the dict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from proxy.analyzer.costs import PriceCard
from proxy.features.pricing import Billing
from proxy.wire.usage import Usage

__all__ = [
    "CacheEvent",
    "CacheReport",
    "Costs",
    "DumpRef",
    "EventKind",
    "PrefixSource",
    "SessionAnalysis",
    "StabilizerEffect",
    "Totals",
    "Turn",
    "TurnRecord",
]

EventKind = Literal["break", "expiry", "account-switch", "miss"]
"""Why a turn read much less from the cache than the previous turn left there:

``break``  the prompt changed before the end of the cached prefix (where: from the dumps, else unknown);
``expiry`` the idle gap exceeded the cache's TTL;
``account-switch`` the request went to another account (caches are per organisation / account);
``miss``   the dumps show the prefix intact, yet the upstream did not read it (evicted, under the minimum
cacheable length, more than 20 blocks past the last breakpoint, or a concurrent request).
"""

PrefixSource = Literal["dumps", "dump-meta", "previous-turn", "none"]
"""Where a turn's shared-prefix estimate comes from: both turns' dumped bodies (prompt order), the current dump's
raw byte diff only, the previous turn's prompt size (no dumps: agents append), or nothing (first turn)."""


@dataclass(frozen=True, slots=True)
class DumpRef:
    """A request dump matched to a turn."""

    meta_path: Path
    request_path: Path | None
    breakpoint_ttls: tuple[str, ...] = ()
    diff: Mapping[str, Any] | None = None
    """The meta's ``diff`` against the previous body the dump writer saw for the session."""
    size: int | None = None
    agent_id: str | None = None
    """Claude Code's ``x-claude-code-agent-id`` from the dumped headers: a subagent inside the session."""

    def body(self) -> bytes | None:
        """The request body as sent, or None when its file is gone."""
        if self.request_path is None:
            return None
        try:
            return self.request_path.read_bytes()
        except OSError:
            return None


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """One upstream request with its usage, from Headway's log or OpenCode's database."""

    session_id: str | None
    start: float
    provider: str
    """Price-table provider and cache behaviour: ``anthropic`` (explicit writes) or ``openai`` (automatic)."""
    model: str | None
    usage: Usage
    parent_session_id: str | None = None
    session_title: str | None = None
    end: float | None = None
    account: str | None = None
    account_kind: str | None = None
    billing: Billing = "metered"
    purpose: str = "agent"
    recorded_cost: float | None = None
    """The cost the source recorded at the time (Headway's estimate, OpenCode's ``cost``)."""
    dump: DumpRef | None = None


@dataclass(frozen=True, slots=True)
class CacheEvent:
    """A turn that read much less from the cache than expected."""

    kind: EventKind
    expected: int
    """Tokens the previous turn of the same model left in the cache."""
    read: int
    part: str | None = None
    """``tools``, ``system``, ``messages[N]`` … (from the dumps)."""
    path: str | None = None
    offset: int | None = None
    """Byte offset of the change in this turn's ``.request.json``."""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Costs:
    """USD at current prices. None: not priced (unknown model, or a subscription account)."""

    actual: float | None = None
    """The recorded usage."""
    no_cache: float | None = None
    cache_5m: float | None = None
    cache_1h: float | None = None
    recorded: float | None = None
    """What the source itself recorded (at the prices of the time)."""

    @staticmethod
    def total(items: list[Costs]) -> Costs:
        def add(values: list[float | None]) -> float | None:
            known = [v for v in values if v is not None]
            return sum(known) if known else None

        return Costs(
            actual=add([c.actual for c in items]),
            no_cache=add([c.no_cache for c in items]),
            cache_5m=add([c.cache_5m for c in items]),
            cache_1h=add([c.cache_1h for c in items]),
            recorded=add([c.recorded for c in items]),
        )


@dataclass(frozen=True, slots=True)
class Turn:
    """One request of a session, analysed."""

    index: int
    start: float
    gap_s: float | None
    """Seconds since the previous request of the same model in this session started (None: first of its model)."""
    model: str | None
    provider: str
    account: str | None
    purpose: str
    prompt: int
    """All input tokens: uncached + cache read + cache write."""
    uncached: int
    cache_read: int
    cache_write: int
    cache_write_5m: int
    cache_write_1h: int
    output: int
    hit_ratio: float | None
    """cache_read / prompt."""
    shared_prefix: int
    """Estimated tokens this prompt shares with the previous one (the counterfactuals read these)."""
    prefix_source: PrefixSource
    idle: Literal["5m", "1h"] | None
    """The gap exceeded 5 minutes / 60 minutes."""
    event: CacheEvent | None
    costs: Costs
    dump: str | None = None
    """The ``.request.json`` file name, when a dump matched."""
    agent_id: str | None = None
    """A subagent within the session (Claude Code; known from the dumps)."""
    stabilizer: bool | None = None
    """ChatGPT, tool-bearing request: whether it carried the web_search cache stabilizer (None: not applicable)."""


@dataclass(frozen=True, slots=True)
class Totals:
    turns: int = 0
    prompt: int = 0
    uncached: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output: int = 0
    hit_ratio: float | None = None
    breaks: int = 0
    expiries: int = 0
    unpriced_turns: int = 0

    @staticmethod
    def of(turns: list[Turn]) -> Totals:
        prompt = sum(t.prompt for t in turns)
        read = sum(t.cache_read for t in turns)
        return Totals(
            turns=len(turns),
            prompt=prompt,
            uncached=sum(t.uncached for t in turns),
            cache_read=read,
            cache_write=sum(t.cache_write for t in turns),
            cache_write_5m=sum(t.cache_write_5m for t in turns),
            cache_write_1h=sum(t.cache_write_1h for t in turns),
            output=sum(t.output for t in turns),
            hit_ratio=read / prompt if prompt else None,
            breaks=sum(1 for t in turns if t.event is not None and t.event.kind != "expiry"),
            expiries=sum(1 for t in turns if t.event is not None and t.event.kind == "expiry"),
            unpriced_turns=sum(1 for t in turns if t.costs.actual is None),
        )


@dataclass(frozen=True, slots=True)
class SessionAnalysis:
    session_id: str | None
    parent_session_id: str | None
    title: str | None
    turns: list[Turn]
    totals: Totals
    costs: Costs
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StabilizerEffect:
    """Hit ratio of tool-bearing ChatGPT requests with and without the web_search stabilizer (warm turns only)."""

    measurable: bool
    with_turns: int = 0
    with_hit_ratio: float | None = None
    without_turns: int = 0
    without_hit_ratio: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class CacheReport:
    source: Literal["headway", "opencode"]
    generated_at: float
    since: float | None
    session_filter: str | None
    sessions: list[SessionAnalysis]
    totals: Totals
    costs: Costs
    stabilizer: StabilizerEffect | None
    prices: list[PriceCard]
    assumptions: list[str]
    dumps_used: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape: the dataclasses as dicts, with ISO 8601 times added next to epoch seconds."""
        data = asdict(self)
        data["generated_at"] = _iso(self.generated_at)
        data["since"] = None if self.since is None else _iso(self.since)
        for session in data["sessions"]:
            for turn in session["turns"]:
                turn["time"] = _iso(turn["start"])
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
