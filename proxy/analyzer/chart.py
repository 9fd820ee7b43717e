"""A self-contained SVG of a cache report: one panel per session, one stacked bar per turn.

Each bar stacks the turn's prompt tokens: read from the cache (bottom), written to it, and uncached (top); a marker
above a bar flags a break (red) or an expiry (amber). Each bar is one ``<g class="turn">`` with a ``<title>`` (the
browser's tooltip) and ``data-session`` / ``data-turn`` attributes, so the settings page can inline the same SVG.
No scripts, stylesheets, fonts or images are referenced.
"""

from __future__ import annotations

import math
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from proxy.analyzer.model import CacheReport, SessionAnalysis, Turn
from proxy.durations import compact_duration

__all__ = ["COLORS", "DARK_COLORS", "render_svg", "write_svg"]

COLORS = {
    "read": "#3b8f5e",
    "write": "#e3a33b",
    "uncached": "#9aa0a6",
    "break": "#d93025",
    "expiry": "#5b6bd8",
    "text": "#202124",
    "grid": "#dadce0",
    "background": "#ffffff",
}
# For a dark page (the settings page asks for it when the browser is in dark mode): the same meanings, lighter inks.
DARK_COLORS = {
    "read": "#4cc38a",
    "write": "#f0b35a",
    "uncached": "#7b8494",
    "break": "#ff7b72",
    "expiry": "#9aa5ff",
    "text": "#e6e9ef",
    "grid": "#3a4250",
    "background": "#171b23",
}

_LEFT = 72
_RIGHT = 16
_PLOT_H = 140
_PANEL_GAP = 56
_TOP = 44
_MAX_PLOT_W = 960
_MIN_WIDTH = 640


def write_svg(report: CacheReport, path: Path) -> None:
    """Write :func:`render_svg` to ``path`` (UTF-8)."""
    path.write_text(render_svg(report), encoding="utf-8")


def render_svg(report: CacheReport, *, dark: bool = False) -> str:
    """The chart as an SVG document string; ``dark`` draws it for a dark background."""
    colors = DARK_COLORS if dark else COLORS
    sessions = [s for s in report.sessions if s.turns]
    most = max((len(s.turns) for s in sessions), default=1)
    slot = max(2.0, min(28.0, _MAX_PLOT_W / most))
    plot_w = slot * most
    width = max(_LEFT + plot_w + _RIGHT, _MIN_WIDTH)
    height = _TOP + len(sessions) * (_PLOT_H + _PANEL_GAP) + 8
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="system-ui, sans-serif" font-size="11">',
        "<title>Prompt-cache analysis</title>",
        f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="{colors["background"]}"/>',
        _legend(colors),
    ]
    if not sessions:
        out.append(
            f'<text x="{_LEFT}" y="{_TOP + 20}" fill="{colors["text"]}">No requests in this period.</text>'
        )
    for n, session in enumerate(sessions):
        out.append(_panel(session, _TOP + n * (_PLOT_H + _PANEL_GAP), slot, colors))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _legend(colors: dict[str, str]) -> str:
    items = [
        ("read", "cache read"),
        ("write", "cache write"),
        ("uncached", "uncached"),
        ("break", "break"),
        ("expiry", "expiry"),
    ]
    parts = ['<g class="legend">']
    x = _LEFT
    for key, label in items:
        parts.append(f'<rect x="{x}" y="12" width="10" height="10" fill="{colors[key]}"/>')
        parts.append(f'<text x="{x + 14}" y="21" fill="{colors["text"]}">{escape(label)}</text>')
        x += 24 + 7 * len(label)
    parts.append("</g>")
    return "".join(parts)


def _panel(session: SessionAnalysis, top: float, slot: float, colors: dict[str, str]) -> str:
    peak = max(t.prompt for t in session.turns) or 1
    base = top + 28 + _PLOT_H
    title = f"Session {session.session_id or '(none)'}"
    if session.title:
        title += f" “{session.title}”"
    hit = session.totals.hit_ratio
    title += f" · {session.totals.turns} turns · hit {'-' if hit is None else f'{hit * 100:.0f}%'}"
    parts = [
        f'<g class="session" data-session={quoteattr(session.session_id or "")}>',
        f'<text x="{_LEFT}" y="{top + 10}" fill="{colors["text"]}" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{_LEFT}" y1="{base}" x2="{_LEFT + slot * len(session.turns):.1f}" y2="{base}" '
        f'stroke="{colors["grid"]}"/>',
        f'<text x="{_LEFT - 6}" y="{base - _PLOT_H + 4}" text-anchor="end" fill="{colors["text"]}">'
        f"{_short(peak)}</text>",
        f'<text x="{_LEFT - 6}" y="{base + 4}" text-anchor="end" fill="{colors["text"]}">0</text>',
    ]
    every = max(1, math.ceil(24 / slot))
    for i, turn in enumerate(session.turns):
        x = _LEFT + i * slot
        parts.append(_bar(session, turn, x, slot, base, peak, colors))
        if i % every == 0:
            parts.append(
                f'<text x="{x + slot * 0.4:.1f}" y="{base + 13}" text-anchor="middle" '
                f'fill="{colors["text"]}">{turn.index}</text>'
            )
    parts.append("</g>")
    return "\n".join(parts)


def _bar(
    session: SessionAnalysis,
    turn: Turn,
    x: float,
    slot: float,
    base: float,
    peak: int,
    colors: dict[str, str],
) -> str:
    width = max(slot * 0.8, 1.0)
    scale = _PLOT_H / peak
    parts = [
        f'<g class="turn" data-session={quoteattr(session.session_id or "")} data-turn="{turn.index}">',
        f"<title>{escape(_tooltip(turn))}</title>",
    ]
    y = base
    for key, tokens in (("read", turn.cache_read), ("write", turn.cache_write), ("uncached", turn.uncached)):
        h = tokens * scale
        if h > 0:
            y -= h
            parts.append(
                f'<rect class="{key}" x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="{h:.1f}" '
                f'fill="{colors[key]}"/>'
            )
    if turn.event is not None:
        color = colors["expiry" if turn.event.kind == "expiry" else "break"]
        cx, ty = x + width / 2, y - 4
        parts.append(
            f'<polygon class="marker {turn.event.kind}" points="{cx - 4:.1f},{ty - 7:.1f} {cx + 4:.1f},{ty - 7:.1f} '
            f'{cx:.1f},{ty:.1f}" fill="{color}"/>'
        )
    parts.append("</g>")
    return "".join(parts)


def _tooltip(turn: Turn) -> str:
    hit = "-" if turn.hit_ratio is None else f"{turn.hit_ratio * 100:.0f}%"
    text = (
        f"Turn {turn.index} · {turn.model or '?'} · read {turn.cache_read:,} · write {turn.cache_write:,} · "
        f"uncached {turn.uncached:,} · hit {hit}"
    )
    if turn.gap_s is not None:
        text += f" · gap {compact_duration(turn.gap_s)}"
    if turn.event is not None:
        text += f" · {turn.event.kind}: {turn.event.detail}"
    return text


def _short(tokens: int) -> str:
    if tokens >= 1_000_000:
        return f"{tokens / 1_000_000:.1f}M"
    if tokens >= 1_000:
        return f"{tokens / 1_000:.0f}k"
    return str(tokens)
