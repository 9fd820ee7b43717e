"""What the tray icon says, and drawing it.

:func:`summarize` turns one ``Engine.status()`` snapshot into an :class:`IconState`: the headroom left on the most
constrained quota window of the account(s) in use, a level (healthy, low, critical, exhausted, unknown, needs login,
paused) and the tooltip text. :func:`render` draws that state with Pillow at any pixel size — natively, never by
scaling a bigger picture down — so it stays crisp from 16 px to HiDPI; ``template=True`` gives the black-and-alpha
variant macOS tints for the menu bar.

Levels: at most :data:`LOW_PERCENT` left is *low* (amber), at most :data:`CRITICAL_PERCENT` is *critical* (red),
nothing left or the account cooling down is *exhausted* (red, time to reset drawn instead of the number). A window
burning faster than it refills — at this pace it runs out well before it resets — is *low* even with plenty left.
Quota older than :data:`STALE_AFTER_SECONDS`, or whose window has reset since, is *unknown* (grey).

Pure: no I/O, no pystray; safe on any thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from PIL import Image, ImageDraw

from proxy.durations import format_duration, short_duration

__all__ = [
    "BLOCKED_UNTIL_RESET",
    "COLORS",
    "CRITICAL_PERCENT",
    "LOW_PERCENT",
    "STALE_AFTER_SECONDS",
    "IconState",
    "Level",
    "account_line",
    "active_accounts",
    "render",
    "summarize",
    "window_label",
]

LOW_PERCENT = 20.0
CRITICAL_PERCENT = 5.0
STALE_AFTER_SECONDS = 6 * 3600.0
RECENT_USE_SECONDS = 12 * 3600.0
#: A window is "hot" when, at the pace it has been used, it would be empty before this share of its reset time.
PACE_MARGIN = 0.8
#: Pace is judged only once this share of the window has gone by (too noisy before).
PACE_MIN_ELAPSED = 0.1


class Level(StrEnum):
    HEALTHY = "healthy"
    LOW = "low"
    CRITICAL = "critical"
    EXHAUSTED = "exhausted"
    UNKNOWN = "unknown"
    NEEDS_LOGIN = "needs_login"
    PAUSED = "paused"


#: Ring / badge colour per level (RGB).
COLORS: dict[Level, tuple[int, int, int]] = {
    Level.HEALTHY: (48, 200, 90),
    Level.LOW: (255, 170, 0),
    Level.CRITICAL: (235, 40, 40),
    Level.EXHAUSTED: (235, 40, 40),
    Level.UNKNOWN: (140, 140, 148),
    Level.NEEDS_LOGIN: (160, 80, 230),
    Level.PAUSED: (140, 140, 148),
}
_DISC = (30, 30, 34)
_INK = (255, 255, 255)

#: Health states that keep an account out of routing until a time (``blocked_for_seconds``), as the menu says them.
BLOCKED_UNTIL_RESET = {
    "cooling_down": "rate-limited, back in {wait}",
    "exhausted": "out of quota, resets in {wait}",
    "killswitch": "held back by its killswitch, resets in {wait}",
}
_SEVERITY = {Level.HEALTHY: 0, Level.LOW: 1, Level.CRITICAL: 2, Level.EXHAUSTED: 3}
_LOGIN_STATES = ("needs_login", "auth_failed", "no_secret")
_WINDOW_NAMES = {"weekly": "week", "input-tokens": "input", "output-tokens": "output"}


@dataclass(frozen=True)
class IconState:
    level: Level
    #: What is drawn in the middle: a percentage ("38"), a time to reset ("1h"), "?" or "!"; "" for a glyph.
    text: str
    #: Share of the ring drawn (remaining headroom), or None for no arc.
    fraction: float | None
    tooltip: str
    #: The percentage left on the most constrained window, when known.
    percent: float | None = None
    lines: tuple[str, ...] = field(default=())
    #: Another (not the active) account needs login: a violet dot in the corner.
    badge: bool = False

    @property
    def key(self) -> tuple[Any, ...]:
        """Two states with the same key draw the same picture."""
        return (self.level, self.text, None if self.fraction is None else round(self.fraction, 2), self.badge)


# --------------------------------------------------------------------------- text


def window_label(name: str) -> str:
    return _WINDOW_NAMES.get(name, name)


def _shown_percent(value: float) -> int:
    """Rounded down (never promise headroom that is not there), but a sliver left is 1, not 0."""
    return max(1, int(value)) if value > 0 else 0


# --------------------------------------------------------------------------- reading a status snapshot


def _usable_windows(account: Mapping[str, Any], now: float) -> list[Mapping[str, Any]]:
    quota = account.get("quota") or {}
    updated = quota.get("updated_at")
    if updated is None or now - float(updated) > STALE_AFTER_SECONDS:
        return []
    return [
        w
        for w in quota.get("windows") or ()
        if w.get("current", True) and w.get("remaining_percent") is not None
    ]


def _most_constrained(windows: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return min(windows, key=lambda w: float(w["remaining_percent"]), default=None)


def _runs_out_early(window: Mapping[str, Any]) -> bool:
    """At the pace this window has been used so far, does it run dry well before it resets?"""
    minutes = window.get("window_minutes")
    resets_in = window.get("resets_in_seconds")
    if not minutes or resets_in is None:
        return False
    length = float(minutes) * 60
    elapsed = length - float(resets_in)
    used = 1 - float(window["remaining_percent"]) / 100
    if elapsed < PACE_MIN_ELAPSED * length or used <= 0:
        return False
    time_to_empty = (1 - used) / (used / elapsed)
    return time_to_empty < float(resets_in) * PACE_MARGIN


def _window_level(window: Mapping[str, Any]) -> Level:
    left = float(window["remaining_percent"])
    if left <= 0:
        return Level.EXHAUSTED
    if left <= CRITICAL_PERCENT:
        return Level.CRITICAL
    if left <= LOW_PERCENT or _runs_out_early(window):
        return Level.LOW
    return Level.HEALTHY


def _routing_order(accounts: Sequence[Mapping[str, Any]], routing: str | None) -> list[Mapping[str, Any]]:
    if routing == "fallback-first" and len(accounts) > 1:
        return [*accounts[1:], accounts[0]]
    return list(accounts)


def _last_used(account: Mapping[str, Any]) -> float:
    value = account.get("last_used_at") or account.get("last_ok_at")
    return float(value) if value else 0.0


def active_accounts(status: Mapping[str, Any], now: float | None = None) -> list[Mapping[str, Any]]:
    """The account in use per family: the one that served last, else the first the router would try.

    Families used within :data:`RECENT_USE_SECONDS` win over families nobody has used lately.
    """
    now = time.time() if now is None else now
    families: dict[str, list[Mapping[str, Any]]] = {}
    for account in status.get("accounts") or ():
        if account.get("enabled", True) and account.get("health") != "disabled":
            families.setdefault(str(account.get("family", "")), []).append(account)
    chosen: list[Mapping[str, Any]] = []
    for members in families.values():
        used = max(members, key=_last_used)
        if _last_used(used) > 0:
            chosen.append(used)
            continue
        ordered = _routing_order(members, status.get("routing"))
        chosen.append(next((a for a in ordered if a.get("health") == "healthy"), ordered[0]))
    recent = [a for a in chosen if now - _last_used(a) < RECENT_USE_SECONDS]
    return recent or chosen


def _window_text(window: Mapping[str, Any], *, with_reset: bool) -> str:
    text = f"{window_label(str(window['name']))}: {_shown_percent(float(window['remaining_percent']))}% left"
    if with_reset and window.get("resets_in_seconds") is not None:
        text += f", resets in {format_duration(window['resets_in_seconds'])}"
    return text


def account_line(account: Mapping[str, Any], now: float | None = None) -> str:
    """``work · 5h: 38% left, resets in 1h 12m · week: 71% left`` (the reset of the tightest window)."""
    now = time.time() if now is None else now
    label = str(account.get("label") or account.get("id") or "?")
    health = account.get("health", "healthy")
    if health == "disabled" or not account.get("enabled", True):
        return f"{label} · disabled"
    if health == "needs_login":
        return f"{label} · needs login"
    if health == "auth_failed":
        return f"{label} · key rejected — replace it in settings"
    if health == "no_secret":
        return f"{label} · no key stored"
    windows = _usable_windows(account, now)
    parts = [label]
    if health in BLOCKED_UNTIL_RESET:
        wait = format_duration(account.get("blocked_for_seconds"))
        parts.append(BLOCKED_UNTIL_RESET[str(health)].format(wait=wait))
    elif health not in ("healthy", None):
        parts.append(str(health).replace("_", " "))
    if windows:
        tightest = _most_constrained(windows)
        parts.extend(_window_text(w, with_reset=w is tightest) for w in windows)
    elif health == "healthy":
        parts.append("quota unknown until the next request")
    return " · ".join(parts)


def summarize(
    status: Mapping[str, Any], now: float | None = None, *, paused: bool | None = None
) -> IconState:
    """The icon's state for one status snapshot (see the module docstring for the rules)."""
    now = time.time() if now is None else now
    state = _summarize(status, now, paused)
    active_ids = {a.get("id") for a in active_accounts(status, now)}
    locked_out = [
        a
        for a in status.get("accounts") or ()
        if a.get("health") in _LOGIN_STATES and a.get("enabled", True) and a.get("id") not in active_ids
    ]
    if not locked_out or state.level == Level.NEEDS_LOGIN:
        return state
    extra = tuple(account_line(a, now) for a in locked_out)
    return replace(state, badge=True, lines=state.lines + extra, tooltip="\n".join([state.tooltip, *extra]))


def _summarize(status: Mapping[str, Any], now: float, paused: bool | None) -> IconState:
    paused = bool(status.get("paused")) if paused is None else paused
    active = active_accounts(status, now)
    lines = [account_line(a, now) for a in active]
    if status.get("settings_error"):
        lines.append("Settings file has errors — using the last good settings")
    if paused:
        return _state(Level.PAUSED, "", None, ["Headway — gateway paused", *lines])
    if not active:
        none = (
            "No accounts yet — open settings to add one"
            if not status.get("accounts")
            else "All accounts are disabled"
        )
        return _state(Level.UNKNOWN, "?", None, [f"Headway — {none}", *lines])

    login = [a for a in active if a.get("health") in _LOGIN_STATES]
    if login:
        return _state(
            Level.NEEDS_LOGIN, "!", None, [f"Headway — {login[0].get('label')} needs attention", *lines]
        )

    cooling = [a for a in active if a.get("health") in BLOCKED_UNTIL_RESET]
    if cooling:
        wait = min(float(a.get("blocked_for_seconds") or 0.0) for a in cooling)
        return _state(Level.EXHAUSTED, short_duration(wait), 0.0, ["Headway", *lines], percent=0.0)

    windows = [w for a in active for w in _usable_windows(a, now)]
    tightest = _most_constrained(windows)
    if tightest is None:
        return _state(Level.UNKNOWN, "?", None, ["Headway — quota unknown until the next request", *lines])
    left = float(tightest["remaining_percent"])
    level = max((_window_level(w) for w in windows), key=lambda lv: _SEVERITY[lv])
    if left <= 0:
        return _state(
            Level.EXHAUSTED,
            short_duration(tightest.get("resets_in_seconds")),
            0.0,
            ["Headway", *lines],
            percent=0.0,
        )
    return _state(level, str(_shown_percent(left)), left / 100, ["Headway", *lines], percent=left)


def _state(
    level: Level, text: str, fraction: float | None, lines: list[str], *, percent: float | None = None
) -> IconState:
    return IconState(level, text, fraction, "\n".join(lines), percent=percent, lines=tuple(lines[1:]))


# --------------------------------------------------------------------------- drawing

# A 3x5 bitmap font: crisp at any integer scale and identical on every platform (no font files to bundle).
_GLYPHS: dict[str, tuple[str, ...]] = {
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "001", "010", "010"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
    "s": ("000", "011", "110", "011", "110"),
    "m": ("00000", "11110", "10101", "10101", "10101"),
    "h": ("100", "100", "111", "101", "101"),
    "d": ("001", "001", "111", "101", "111"),
    "?": ("111", "001", "011", "000", "010"),
    "!": ("1", "1", "1", "0", "1"),
}
GLYPH_HEIGHT = 5
_SUPERSAMPLE = 4


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """Width and height in pixels of ``text`` in the bitmap font at ``scale``."""
    if not text:
        return (0, 0)
    width = sum(len(_GLYPHS[c][0]) for c in text) + (len(text) - 1)
    return (width * scale, GLYPH_HEIGHT * scale)


def glyph_mask(text: str, scale: int = 1) -> Image.Image:
    """The text as a 1-bit mask (white = ink); tests compare drawn pixels against it."""
    width, height = text_size(text, scale)
    mask = Image.new("L", (max(width, 1), max(height, 1)), 0)
    draw = ImageDraw.Draw(mask)
    x = 0
    for char in text:
        rows = _GLYPHS[char]
        for gy, row in enumerate(rows):
            for gx, bit in enumerate(row):
                if bit == "1":
                    draw.rectangle(
                        (x + gx * scale, gy * scale, x + (gx + 1) * scale - 1, (gy + 1) * scale - 1), fill=255
                    )
        x += (len(rows[0]) + 1) * scale
    return mask


def ring_width(size: int) -> int:
    return max(2, round(size * 0.14))


def text_scale(text: str, size: int) -> int:
    """The largest integer scale at which ``text`` fits inside the ring (0: it does not fit at all).

    Below 28 px the text may touch the ring's inner edge: a pixel of overlap beats no number at all.
    """
    inner = size - 2 * ring_width(size) - 2
    scale = 0
    while True:
        w, h = text_size(text, scale + 1)
        fits = (w <= inner + 2 and h <= inner) if size < 28 else math.hypot(w, h) <= inner
        if not fits:
            return scale
        scale += 1


def fitted_text(text: str, size: int) -> tuple[str, int]:
    """``text`` and its scale; a time that does not fit loses its unit ("12m" → "12") before it is dropped."""
    scale = text_scale(text, size)
    if scale == 0 and len(text) > 1 and text[-1] in "smhd":
        return fitted_text(text[:-1], size)
    return (text, scale)


def text_origin(text: str, size: int, scale: int) -> tuple[int, int]:
    w, h = text_size(text, scale)
    return ((size - w) // 2, (size - h) // 2)


def render(state: IconState, size: int, *, template: bool = False) -> Image.Image:
    """Draw ``state`` as a ``size`` x ``size`` RGBA image.

    A dark disc with a ring at its rim: the ring's track in the level colour, dimmed, and an arc from twelve
    o'clock clockwise over the share of headroom left; in the middle the number (or the time to reset, "?", "!",
    or a pause sign) in a pixel font at the largest integer scale that fits. ``template`` draws the same shapes in
    black with alpha only: macOS recolours template images for light and dark menu bars.
    """
    color = COLORS[state.level]
    big = size * _SUPERSAMPLE
    ring = ring_width(size) * _SUPERSAMPLE
    shapes = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(shapes)
    box = (0, 0, big - 1, big - 1)
    if template:
        draw.ellipse(box, outline=(0, 0, 0, 90), width=ring)
    else:
        draw.ellipse(box, fill=(*_DISC, 235))
        draw.ellipse(box, outline=(*color, 90), width=ring)
    if state.level == Level.NEEDS_LOGIN and not template:
        draw.ellipse(box, fill=(*color, 255))
    elif state.fraction is not None and state.fraction > 0:
        ink = (0, 0, 0, 255) if template else (*color, 255)
        if state.fraction >= 0.999:
            draw.ellipse(box, outline=ink, width=ring)
        else:
            # A sliver still shows: at least about one ring-width of arc, whatever the size.
            sweep = max(360 * state.fraction, 360 * 1.3 * ring / (math.pi * big))
            draw.arc(box, -90, -90 + sweep, fill=ink, width=ring)
    image = shapes.resize((size, size), Image.Resampling.BOX)  # exact coverage, no ringing

    glyph = ImageDraw.Draw(image)
    ink_rgba = (0, 0, 0, 255) if template else (*_INK, 255)
    if state.level == Level.PAUSED:
        bar = max(1, round(size * 0.11))
        gap = max(1, round(size * 0.09))
        height = max(3, round(size * 0.36))
        top = (size - height) // 2
        left = (size - (2 * bar + gap)) // 2
        glyph.rectangle((left, top, left + bar - 1, top + height - 1), fill=ink_rgba)
        glyph.rectangle((left + bar + gap, top, left + 2 * bar + gap - 1, top + height - 1), fill=ink_rgba)
    elif state.text:
        text, scale = fitted_text(state.text, size)
        if scale > 0:
            mask = glyph_mask(text, scale)
            image.paste(Image.new("RGBA", mask.size, ink_rgba), text_origin(text, size, scale), mask)
    if state.badge:
        radius = max(2.5, size * 0.2)
        cx, cy = size - radius - 0.5, radius + 0.5
        border = max(1.0, size / 32)
        dot = (0, 0, 0, 255) if template else (*COLORS[Level.NEEDS_LOGIN], 255)
        glyph.ellipse(
            (cx - radius, cy - radius, cx + radius, cy + radius),
            fill=(*_DISC, 255) if not template else (0, 0, 0, 0),
        )
        glyph.ellipse(
            (cx - radius + border, cy - radius + border, cx + radius - border, cy + radius - border), fill=dot
        )
    if template:
        # Keep only the alpha: macOS ignores colour in template images, and tests check it is pure black.
        alpha = image.getchannel("A")
        image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        image.putalpha(alpha)
    return image
