"""The analysis proper: turns → sessions with hit ratios, gaps, cache events and counterfactual costs.

Pure apart from reading dumped request bodies through :meth:`DumpRef.body`. The model is described in the package
docstring (:mod:`proxy.analyzer`); the constants below are its knobs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from proxy.analyzer.costs import Pricer
from proxy.analyzer.model import (
    CacheEvent,
    CacheReport,
    Costs,
    PrefixSource,
    SessionAnalysis,
    StabilizerEffect,
    Totals,
    Turn,
    TurnRecord,
)
from proxy.analyzer.prefix import PromptDiff, prompt_diff
from proxy.durations import compact_duration
from proxy.wire.usage import Usage

__all__ = [
    "BREAK_RATIO",
    "MIN_BREAK_TOKENS",
    "WINDOW_1H",
    "WINDOW_5M",
    "analyze_records",
]

WINDOW_5M = 5 * 60.0
WINDOW_1H = 60 * 60.0
BREAK_RATIO = 0.5
"""A turn is a cache event when it reads less than this share of what the previous turn left in the cache …"""
MIN_BREAK_TOKENS = 1024
"""… and the shortfall is at least this many tokens (Anthropic caches nothing shorter than 1,024 tokens)."""

Source = Literal["headway", "opencode"]

_NO_BODIES: dict[Source, str] = {
    "headway": "unknown (turn on dumps)",
    "opencode": "unknown (OpenCode keeps no request bodies: run it through Headway with dumps on)",
}


@dataclass
class _Previous:
    """The latest turn of one (provider, model, subagent) in a session: what the next such turn is compared to."""

    record: TurnRecord
    prompt: int
    cached: int
    """Tokens it left in the cache: read + written (Anthropic), its whole prompt (OpenAI caches automatically)."""
    ttl: float
    body: bytes | None


def analyze_records(
    records: Iterable[TurnRecord],
    *,
    source: Source,
    since: float | None = None,
    session_filter: str | None = None,
    pricer: Pricer | None = None,
    now: float | None = None,
) -> CacheReport:
    """Group ``records`` by session (in time order), analyse every turn and add up the sessions."""
    pricer = pricer or Pricer()
    by_session: dict[str | None, list[TurnRecord]] = {}
    for record in sorted(records, key=lambda r: r.start):
        by_session.setdefault(record.session_id, []).append(record)
    sessions = [
        _analyze_session(session_id, items, pricer, source) for session_id, items in by_session.items()
    ]
    sessions.sort(key=lambda s: s.turns[0].start if s.turns else 0.0)
    turns = [turn for session in sessions for turn in session.turns]
    return CacheReport(
        source=source,
        generated_at=time.time() if now is None else now,
        since=since,
        session_filter=session_filter,
        sessions=sessions,
        totals=Totals.of(turns),
        costs=Costs.total([s.costs for s in sessions]),
        stabilizer=_stabilizer_effect(sessions) if source == "headway" else None,
        prices=sorted(pricer.cards(), key=lambda c: (c.provider, c.model)),
        assumptions=_assumptions(source, turns),
        dumps_used=sum(1 for t in turns if t.dump is not None),
    )


def _analyze_session(
    session_id: str | None, records: list[TurnRecord], pricer: Pricer, source: Source
) -> SessionAnalysis:
    previous: dict[tuple[str, str | None, str | None], _Previous] = {}
    latest: TurnRecord | None = None
    turns: list[Turn] = []
    for index, record in enumerate(records, start=1):
        usage = record.usage
        prompt = usage.total_input
        agent = record.dump.agent_id if record.dump is not None else None
        key = (record.provider, record.model, agent)
        prev = previous.get(key) if session_id is not None else None
        body = record.dump.body() if record.dump is not None else None
        gap = None if prev is None else max(record.start - prev.record.start, 0.0)

        diff: PromptDiff | None = None
        prefix_source: PrefixSource = "none"
        shared = 0
        if prev is not None:
            diff, prefix_source = _diff(prev, record, body, adjacent=latest is prev.record)
            if diff is not None:
                shared = min(round(diff.shared_fraction * prompt), prev.prompt, prompt)
            else:
                prefix_source = "previous-turn"
                shared = min(prev.prompt, prompt)

        event = _event(prev, record, gap, diff, prefix_source, source) if prev is not None else None
        turns.append(
            Turn(
                index=index,
                start=record.start,
                gap_s=gap,
                model=record.model,
                provider=record.provider,
                account=record.account,
                purpose=record.purpose,
                prompt=prompt,
                uncached=usage.input_tokens,
                cache_read=usage.cache_read_tokens,
                cache_write=usage.cache_write_tokens,
                cache_write_5m=usage.cache_write_5m_tokens,
                cache_write_1h=usage.cache_write_1h_tokens,
                output=usage.output_tokens,
                hit_ratio=usage.cache_read_tokens / prompt if prompt else None,
                shared_prefix=shared,
                prefix_source=prefix_source,
                idle=None if gap is None else "1h" if gap > WINDOW_1H else "5m" if gap > WINDOW_5M else None,
                event=event,
                costs=_costs(pricer, record, prompt, shared, gap),
                dump=record.dump.request_path.name if record.dump and record.dump.request_path else None,
                stabilizer=_stabilized(record, body),
                agent_id=agent,
            )
        )
        previous[key] = _Previous(
            record=record,
            prompt=prompt,
            cached=_left_in_cache(record),
            ttl=_ttl(record, prev),
            body=body,
        )
        latest = record
    first = records[0]
    return SessionAnalysis(
        session_id=session_id,
        parent_session_id=first.parent_session_id,
        title=first.session_title,
        turns=turns,
        totals=Totals.of(turns),
        costs=Costs.total([t.costs for t in turns]),
        notes=_session_notes(session_id, records, turns, source),
    )


# -- prefix ---------------------------------------------------------------------------------------------------------


def _diff(
    prev: _Previous, record: TurnRecord, body: bytes | None, *, adjacent: bool
) -> tuple[PromptDiff | None, PrefixSource]:
    """The prompt diff from both dumped bodies; else from the current dump's own diff when that diff was taken
    against this same previous turn (it is against the previous request of the session, whatever its model)."""
    if prev.body is not None and body is not None:
        diff = prompt_diff(prev.body, body)
        if diff is not None:
            return diff, "dumps"
    meta = record.dump.diff if record.dump is not None else None
    if meta is not None and adjacent and record.dump is not None:
        size = record.dump.size or 0
        common = meta.get("common_prefix")
        if isinstance(common, int) and size > 0:
            offset = meta.get("first_diff_offset")
            part = meta.get("changed_part")
            return (
                PromptDiff(
                    identical=bool(meta.get("identical")),
                    appended_only=False,
                    part=part if isinstance(part, str) else None,
                    path=part if isinstance(part, str) else None,
                    offset=offset if isinstance(offset, int) else None,
                    shared_fraction=min(common / size, 1.0),
                ),
                "dump-meta",
            )
    return None, "none"


def _left_in_cache(record: TurnRecord) -> int:
    """Tokens a turn leaves cached: what it read and wrote on Anthropic; its whole prompt on OpenAI (automatic)."""
    usage = record.usage
    if record.provider == "anthropic":
        return usage.cache_read_tokens + usage.cache_write_tokens
    return usage.total_input


def _ttl(record: TurnRecord, prev: _Previous | None) -> float:
    """How long what this turn left in the cache lives: 1 hour when it wrote 1h entries or carried 1h
    breakpoints; 5 minutes when it wrote only 5m entries; else what the previous turn of the model had."""
    usage = record.usage
    if usage.cache_write_1h_tokens > 0 or (record.dump is not None and "1h" in record.dump.breakpoint_ttls):
        return WINDOW_1H
    if usage.cache_write_5m_tokens > 0 or (record.dump is not None and record.dump.breakpoint_ttls):
        return WINDOW_5M
    return prev.ttl if prev is not None else WINDOW_5M


# -- events ---------------------------------------------------------------------------------------------------------


def _event(
    prev: _Previous,
    record: TurnRecord,
    gap: float | None,
    diff: PromptDiff | None,
    prefix_source: PrefixSource,
    source: Source,
) -> CacheEvent | None:
    expected = prev.cached
    read = record.usage.cache_read_tokens
    if expected < MIN_BREAK_TOKENS or read >= BREAK_RATIO * expected or expected - read < MIN_BREAK_TOKENS:
        return None
    if gap is not None and gap > prev.ttl:
        ttl = "60 min" if prev.ttl >= WINDOW_1H else "5 min"
        return CacheEvent(
            kind="expiry",
            expected=expected,
            read=read,
            detail=f"idle {compact_duration(gap)} > {ttl} TTL: the cache expired",
        )
    if prev.record.account and record.account and prev.record.account != record.account:
        return CacheEvent(
            kind="account-switch",
            expected=expected,
            read=read,
            detail=f"account changed ({prev.record.account} → {record.account}): caches are per account",
        )
    if diff is not None and not diff.identical and not diff.appended_only and diff.part is not None:
        where = diff.path or diff.part
        at = f" at byte {diff.offset:,}" if diff.offset is not None else ""
        return CacheEvent(
            kind="break",
            expected=expected,
            read=read,
            part=diff.part,
            path=diff.path,
            offset=diff.offset,
            detail=f"prefix broke in {where}{at}"
            + (" (raw byte diff: the previous request file is gone)" if prefix_source == "dump-meta" else ""),
        )
    if diff is not None:
        return CacheEvent(
            kind="miss",
            expected=expected,
            read=read,
            part=diff.part,
            path=diff.path,
            offset=diff.offset,
            detail="prefix intact in the dumps, yet not read (evicted, under the minimum length, "
            "over 20 blocks past the last breakpoint, or a concurrent request)",
        )
    return CacheEvent(kind="break", expected=expected, read=read, detail=_NO_BODIES[source])


# -- costs ----------------------------------------------------------------------------------------------------------


def _costs(pricer: Pricer, record: TurnRecord, prompt: int, shared: int, gap: float | None) -> Costs:
    if record.billing == "subscription":
        return Costs(recorded=record.recorded_cost)
    usage = record.usage
    output = {"output_tokens": usage.output_tokens, "reasoning_tokens": usage.reasoning_tokens}

    def price(scenario: Usage) -> float | None:
        return pricer.price(record.provider, record.model, scenario)

    def cached(window: float, ttl: Literal["5m", "1h"]) -> Usage:
        read = shared if gap is not None and gap <= window else 0
        write = prompt - read
        return Usage(
            cache_read_tokens=read,
            cache_write_tokens=write,
            cache_write_5m_tokens=write if ttl == "5m" else 0,
            cache_write_1h_tokens=write if ttl == "1h" else 0,
            **output,
        )

    return Costs(
        actual=price(usage),
        no_cache=price(Usage(input_tokens=prompt, **output)),
        cache_5m=price(cached(WINDOW_5M, "5m")),
        cache_1h=price(cached(WINDOW_1H, "1h")),
        recorded=record.recorded_cost,
    )


# -- ChatGPT stabilizer ---------------------------------------------------------------------------------------------


def _stabilized(record: TurnRecord, body: bytes | None) -> bool | None:
    """For a tool-bearing ChatGPT request with a dump: whether it carried the web_search stabilizer."""
    if record.account_kind != "chatgpt" or body is None:
        return None
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    tools = obj.get("tools") if isinstance(obj, dict) else None
    if not isinstance(tools, list):
        return None
    kinds = [tool.get("type") for tool in tools if isinstance(tool, dict)]
    if "function" not in kinds:
        return None
    return any(
        isinstance(tool, dict)
        and tool.get("type") == "web_search"
        and tool.get("external_web_access") is False
        for tool in tools
    )


def _stabilizer_effect(sessions: list[SessionAnalysis]) -> StabilizerEffect | None:
    chatgpt = [t for s in sessions for t in s.turns if t.stabilizer is not None]
    warm = [t for t in chatgpt if t.gap_s is not None]
    if not chatgpt:
        return None
    groups = {flag: [t for t in warm if t.stabilizer is flag] for flag in (True, False)}

    def ratio(turns: list[Turn]) -> float | None:
        prompt = sum(t.prompt for t in turns)
        return sum(t.cache_read for t in turns) / prompt if prompt else None

    measurable = bool(groups[True]) and bool(groups[False])
    note = (
        "hit ratio of warm tool-bearing ChatGPT turns, with vs without the web_search stabilizer"
        if measurable
        else "cannot be measured from this data: it needs dumps of tool-bearing ChatGPT requests both with and "
        "without the stabilizer (toggle chatgpt.stabilize_cache with dumps on)"
    )
    return StabilizerEffect(
        measurable=measurable,
        with_turns=len(groups[True]),
        with_hit_ratio=ratio(groups[True]),
        without_turns=len(groups[False]),
        without_hit_ratio=ratio(groups[False]),
        note=note,
    )


# -- notes ----------------------------------------------------------------------------------------------------------


def _session_notes(
    session_id: str | None, records: list[TurnRecord], turns: list[Turn], source: Source
) -> list[str]:
    notes: list[str] = []
    if session_id is None:
        notes.append("requests without a session id: listed without prefix analysis")
    anthropic = [t for t in turns if t.provider == "anthropic"]
    if anthropic and not any(t.cache_read or t.cache_write for t in anthropic):
        notes.append(
            "nothing was cached: the requests set no cache breakpoints (Headway's hybrid cache mode adds them)"
        )
    if any(r.billing == "subscription" for r in records):
        notes.append("subscription account: not billed per token, so no costs")
    if any(t.prefix_source == "previous-turn" for t in turns):
        why = "no dumps for these turns" if source == "headway" else "OpenCode keeps no request bodies"
        notes.append(f"shared prefix approximated by the previous turn's prompt ({why})")
    return notes


def _assumptions(source: Source, turns: list[Turn]) -> list[str]:
    lines = [
        "costs at current list prices (Headway's price table), output included in every scenario",
        "no cache: every prompt token at the uncached input price",
        "5-min / 1-hour cache: the prefix shared with the previous turn of the same model is read at the "
        "cache-read price (Anthropic 0.1x) when the gap is within 5 / 60 minutes; everything else is written "
        "at the 5-minute / 1-hour write price (Anthropic 1.25x / 2x)",
        "gap: start of this request to the start of the previous request of the same model in the session",
    ]
    sources = {t.prefix_source for t in turns}
    if "dumps" in sources or "dump-meta" in sources:
        lines.append("shared prefix from the dumps: common prompt-order bytes → tokens by proportion")
    if "previous-turn" in sources:
        lines.append(
            "shared prefix without dumps: approximated by the previous turn's prompt (agents append)"
        )
    if source == "opencode":
        lines.append("OpenCode records no 5m/1h split of cache writes: they are priced at the 5-minute rate")
    return lines
