"""The human-readable cache report: a table per session, session totals and the counterfactual cost line."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from proxy.analyzer.model import CacheReport, Costs, SessionAnalysis, Totals, Turn
from proxy.durations import compact_duration

__all__ = ["format_report"]

_HEADERS = ("#", "time", "gap", "model", "uncached", "cache read", "cache write", "hit %", "")
_RIGHT = frozenset({0, 2, 4, 5, 6, 7})


def format_report(report: CacheReport) -> str:
    """The report as plain text (local times)."""
    source = "Headway request log" if report.source == "headway" else "OpenCode database"
    lines: list[str] = []
    if not report.sessions:
        lines.append(f"No requests with usage in the {source} for this period.")
        return "\n".join(lines)
    lines.append(
        f"Prompt-cache analysis of the {source}: {len(report.sessions)} session(s), {report.totals.turns} turn(s)"
        + (f", {report.dumps_used} with dumps" if report.source == "headway" else "")
    )
    for session in report.sessions:
        lines.append("")
        lines.extend(_session(session))
    if len(report.sessions) > 1:
        lines.append("")
        lines.append(f"All sessions: {_totals_text(report.totals)}")
        lines.append(f"  {_costs_text(report.costs)}")
    if report.stabilizer is not None:
        effect = report.stabilizer
        lines.append("")
        if effect.measurable:
            lines.append(
                f"ChatGPT cache stabilizer: hit {_pct(effect.with_hit_ratio)} with it ({effect.with_turns} turns) "
                f"vs {_pct(effect.without_hit_ratio)} without ({effect.without_turns} turns)"
            )
        else:
            lines.append(f"ChatGPT cache stabilizer: {effect.note}")
    if report.prices:
        lines.append("")
        lines.append("Prices (USD per million tokens: input / cache read / write 5m / write 1h / output):")
        for card in report.prices:
            lines.append(
                f"  {card.provider}/{card.model}: {card.input:g} / {card.cache_read:g} / {card.cache_write_5m:g} / "
                f"{card.cache_write_1h:g} / {card.output:g}"
            )
    lines.append("")
    lines.append("Model:")
    lines.extend(f"  - {line}" for line in report.assumptions)
    return "\n".join(lines)


def _session(session: SessionAnalysis) -> list[str]:
    turns = session.turns
    head = f"Session {session.session_id or '(none)'}"
    if session.title:
        head += f" “{session.title}”"
    if session.parent_session_id:
        head += f" · subagent of {session.parent_session_id}"
    if turns:
        head += f" · {_day(turns[0].start)} {_clock(turns[0].start)} → {_clock(turns[-1].start)}"
    accounts = sorted({t.account for t in turns if t.account})
    if accounts:
        head += f" · {', '.join(accounts)}"
    rows: list[tuple[str, ...]] = [_HEADERS]
    rows.extend(_turn_row(turn) for turn in turns)
    totals = session.totals
    rows.append(
        (
            "",
            "total",
            "",
            "",
            _n(totals.uncached),
            _n(totals.cache_read),
            _write(totals.cache_write, totals.cache_write_5m, totals.cache_write_1h),
            _pct(totals.hit_ratio),
            _events(totals),
        )
    )
    lines = [head, *_table(rows)]
    lines.append(f"  {_costs_text(session.costs)}")
    lines.extend(f"  note: {note}" for note in session.notes)
    return lines


def _turn_row(turn: Turn) -> tuple[str, ...]:
    return (
        str(turn.index),
        _clock(turn.start),
        "-" if turn.gap_s is None else compact_duration(turn.gap_s),
        (turn.model or "?")
        + ("" if turn.purpose == "agent" else f" ({turn.purpose})")
        + ("" if turn.agent_id is None else " (subagent)"),
        _n(turn.uncached),
        _n(turn.cache_read),
        _write(turn.cache_write, turn.cache_write_5m, turn.cache_write_1h),
        _pct(turn.hit_ratio),
        _marker(turn),
    )


def _marker(turn: Turn) -> str:
    event = turn.event
    if event is not None:
        label = {"break": "BREAK", "expiry": "EXPIRY", "account-switch": "SWITCH", "miss": "MISS"}[event.kind]
        return f"{label} {event.detail}"
    if turn.gap_s is None:
        return "first"
    if turn.idle is not None:
        return f"idle > {'60' if turn.idle == '1h' else '5'} min"
    return ""


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADERS) - 1)]

    def render(row: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(width) if i in _RIGHT else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row[:-1], widths, strict=True))
        ]
        return ("  " + "  ".join(cells) + "  " + row[-1]).rstrip()

    rule = "  " + "  ".join("-" * w for w in widths)
    return [render(rows[0]), rule, *(render(r) for r in rows[1:-1]), rule, render(rows[-1])]


def _costs_text(costs: Costs) -> str:
    parts = [
        f"actual {_money(costs.actual)}",
        f"no cache {_money(costs.no_cache)}",
        f"5-min cache {_money(costs.cache_5m)}",
        f"1-hour cache {_money(costs.cache_1h)}",
    ]
    text = "cost at current prices: " + " · ".join(parts)
    if costs.recorded is not None:
        text += f"  (recorded {_money(costs.recorded)})"
    return text


def _totals_text(totals: Totals) -> str:
    return (
        f"{totals.turns} turns, uncached {_n(totals.uncached)}, cache read {_n(totals.cache_read)}, "
        f"cache write {_write(totals.cache_write, totals.cache_write_5m, totals.cache_write_1h)}, "
        f"hit {_pct(totals.hit_ratio)}, {_events(totals) or 'no breaks'}"
    )


def _events(totals: Totals) -> str:
    parts = []
    if totals.breaks:
        parts.append(f"{totals.breaks} break{'s' if totals.breaks > 1 else ''}")
    if totals.expiries:
        parts.append(f"{totals.expiries} {'expiries' if totals.expiries > 1 else 'expiry'}")
    return ", ".join(parts)


def _write(total: int, five: int, hour: int) -> str:
    if total == 0:
        return "0"
    if five and hour:
        return f"{_n(total)} (5m {_n(five)} + 1h {_n(hour)})"
    if hour:
        return f"{_n(total)} (1h)"
    if five:
        return f"{_n(total)} (5m)"
    return _n(total)


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.0f}%"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d")
