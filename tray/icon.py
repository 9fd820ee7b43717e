"""Drawing the tray icon from the status ``summary`` (:mod:`proxy.routing.summary`).

:func:`icon_state` maps the summary to what is drawn — it judges nothing itself — and :func:`render` draws it with
Pillow at any pixel size, natively, so it stays crisp from 16 px to HiDPI. Each state has its own silhouette, so it
reads without colour too:

- healthy / low: a dark disc with a ring whose arc is the share left (green / amber), the percentage inside; a
  healthy pool with no fresh numbers (API keys whose per-minute windows expired) gets a full ring and a tick.
- critical: a filled red disc with the percentage.
- exhausted: a filled red rounded square with the time to the next reset, its unit always kept ("20m").
- needs login: a violet warning triangle with "!".
- paused: a grey disc with a pause sign. unknown: a grey ring with "?".

A corner badge (violet: an account needs login; red: a whole family is blocked) is sized and placed so it never
touches the digits. ``template=True`` gives the black-and-alpha variant macOS tints for the menu bar.

Pure: no I/O, no pystray; safe on any thread.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from PIL import Image, ImageDraw

from proxy.durations import short_duration
from proxy.routing.summary import shown_percent

__all__ = [
    "BADGE_COLORS",
    "COLORS",
    "IconState",
    "Level",
    "TextBox",
    "badge_box",
    "glyph_mask",
    "icon_state",
    "render",
    "ring_width",
    "text_box",
    "text_size",
]


class Level(StrEnum):
    HEALTHY = "healthy"
    LOW = "low"
    CRITICAL = "critical"
    EXHAUSTED = "exhausted"
    UNKNOWN = "unknown"
    NEEDS_LOGIN = "needs_login"
    PAUSED = "paused"


#: Shape colour per level (RGB). Filled shapes are dark enough for white digits at 4.5:1.
COLORS: dict[Level, tuple[int, int, int]] = {
    Level.HEALTHY: (48, 200, 90),
    Level.LOW: (255, 170, 0),
    Level.CRITICAL: (205, 30, 30),
    Level.EXHAUSTED: (205, 30, 30),
    Level.UNKNOWN: (150, 150, 158),
    Level.NEEDS_LOGIN: (200, 150, 255),
    Level.PAUSED: (150, 150, 158),
}
BADGE_COLORS = {"needs_login": (170, 90, 255), "blocked": (255, 60, 60)}
_DISC = (30, 30, 34)
_INK = (255, 255, 255)
_RING_LEVELS = (Level.HEALTHY, Level.LOW, Level.UNKNOWN, Level.PAUSED)
CHECK = "v"  # the tick's key in the bitmap font


@dataclass(frozen=True)
class IconState:
    level: Level
    #: What is drawn in the middle: a percentage ("38"), a time to reset ("20m"), "?", "!", the tick; "" for none.
    text: str
    #: Share of the ring drawn (headroom left), or None for no arc.
    fraction: float | None
    tooltip: str = ""
    #: "needs_login" / "blocked": a dot in the corner; None: no badge.
    badge: str | None = None

    @property
    def key(self) -> tuple[Any, ...]:
        """Two states with the same key draw the same picture."""
        return (self.level, self.text, None if self.fraction is None else round(self.fraction, 2), self.badge)


def icon_state(summary: Mapping[str, Any], now: float | None = None) -> IconState:
    """What to draw for one ``summary``: its state, its number or countdown, its badge, its tooltip."""
    now = time.time() if now is None else now
    level = Level(str(summary.get("state") or "unknown"))
    tooltip = str(summary.get("tooltip") or "Headway")
    badge = summary.get("attention")
    percent = summary.get("percent")
    if level == Level.PAUSED:
        return IconState(level, "", None, tooltip, badge)
    if level == Level.UNKNOWN:
        return IconState(level, "?", None, tooltip, badge)
    if level == Level.NEEDS_LOGIN:
        return IconState(level, "!", None, tooltip)
    if level == Level.EXHAUSTED:
        reset = summary.get("next_reset")
        text = short_duration(float(reset) - now) if reset is not None else "0"
        return IconState(level, text, 0.0, tooltip, badge)
    if percent is None:
        return IconState(level, CHECK, 1.0, tooltip, badge)
    return IconState(level, str(shown_percent(float(percent))), float(percent) / 100, tooltip, badge)


# --------------------------------------------------------------------------- the pixel font

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
    CHECK: ("00000", "00001", "00010", "10100", "01000"),
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


# --------------------------------------------------------------------------- layout


def ring_width(size: int) -> int:
    return max(2, round(size * 0.14))


@dataclass(frozen=True)
class TextBox:
    text: str
    scale: int
    x: int
    y: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Left, top, right, bottom (exclusive) of the drawn text."""
        w, h = text_size(self.text, self.scale)
        return (self.x, self.y, self.x + w, self.y + h)


def _fits(text: str, scale: int, size: int, level: Level) -> bool:
    w, h = text_size(text, scale)
    if level == Level.EXHAUSTED:  # the rounded square: everything but a one-pixel margin
        return w <= size - 2 and h <= size - 2 - 2 * (size // 8)
    if level == Level.NEEDS_LOGIN:
        return h <= size * 0.5
    inner = size - 2 - (2 * ring_width(size) if level in _RING_LEVELS else 2)
    if size < 28:  # small icons: the text may touch the ring's inner edge; a pixel of overlap beats no number
        return w <= inner + 2 and h <= inner
    return math.hypot(w, h) <= inner


def text_box(state: IconState, size: int) -> TextBox | None:
    """Where ``state``'s text goes at ``size``: the largest integer scale that fits (at least 1: never cut)."""
    if not state.text or state.level == Level.PAUSED:
        return None
    scale = 1
    while _fits(state.text, scale + 1, size, state.level):
        scale += 1
    if state.badge:  # leave the badge its corner: a smaller number rather than a covered one
        while scale > 1 and _corner_room(state.text, scale, size) < 4:
            scale -= 1
    w, h = text_size(state.text, scale)
    x, y = (size - w) // 2, (size - h) // 2
    if state.level == Level.NEEDS_LOGIN:  # in the lower, wider part of the triangle
        y = size - 2 - h - max(0, round(size * 0.06))
    return TextBox(state.text, scale, x, y)


def _corner_room(text: str, scale: int, size: int) -> int:
    """The largest badge that fits in the top-right corner beside centred text (one pixel apart)."""
    w, h = text_size(text, scale)
    x, y = (size - w) // 2, (size - h) // 2
    return max(y - 1, size - (x + w) - 1)


def badge_box(state: IconState, size: int) -> tuple[int, int, int, int] | None:
    """The badge's square in the top-right corner, as big as it may be without touching the text (None: no badge).

    Left, top, right, bottom (exclusive); a one-pixel gap is kept from the text's box.
    """
    if not state.badge:
        return None
    wanted = max(4, round(size * 0.34))
    box = text_box(state, size)
    if box is None:
        room = wanted
    else:
        _, top, right, _ = box.box
        room = max(top - 1, size - right - 1)
    diameter = min(wanted, room)
    if diameter < 3:
        return None
    return (size - diameter, 0, size, diameter)


# --------------------------------------------------------------------------- drawing


def _shape(state: IconState, size: int, template: bool) -> Image.Image:
    color = COLORS[state.level]
    big = size * _SUPERSAMPLE
    ring = ring_width(size) * _SUPERSAMPLE
    shapes = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(shapes)
    box = (0, 0, big - 1, big - 1)
    solid = (0, 0, 0, 255) if template else (*color, 255)
    if state.level == Level.EXHAUSTED:
        margin = (size // 8) * _SUPERSAMPLE
        draw.rounded_rectangle((0, margin, big - 1, big - 1 - margin), radius=big * 0.2, fill=solid)
    elif state.level == Level.NEEDS_LOGIN:
        # Light violet inside a dark edge: it stands out on dark panels by its fill, on light ones by its edge.
        corners = [(big / 2, 0), (big - 1, big - 1), (0, big - 1)]
        draw.polygon(corners, fill=solid if template else (*_DISC, 255))
        edge = max(1, round(size / 16)) * _SUPERSAMPLE * 1.6
        inner = [
            (big / 2, edge * 1.9),
            (big - 1 - edge * 1.1, big - 1 - edge * 0.8),
            (edge * 1.1, big - 1 - edge * 0.8),
        ]
        draw.polygon(inner, fill=solid)
    elif state.level == Level.CRITICAL:
        draw.ellipse(box, fill=solid)
    else:
        if template:
            draw.ellipse(box, outline=(0, 0, 0, 90), width=ring)
        else:
            draw.ellipse(box, fill=(*_DISC, 235))
            track = 255 if state.level == Level.UNKNOWN else 90
            draw.ellipse(box, outline=(*color, track), width=ring)
        if state.fraction is not None and state.fraction > 0:
            if state.fraction >= 0.999:
                draw.ellipse(box, outline=solid, width=ring)
            else:
                # A sliver still shows: at least about one ring-width of arc, whatever the size.
                sweep = max(360 * state.fraction, 360 * 1.3 * ring / (math.pi * big))
                draw.arc(box, -90, -90 + sweep, fill=solid, width=ring)
    return shapes.resize((size, size), Image.Resampling.BOX)  # exact coverage, no ringing


def render(state: IconState, size: int, *, template: bool = False) -> Image.Image:
    """Draw ``state`` as a ``size`` x ``size`` RGBA image (see the module docstring for the shapes)."""
    image = _shape(state, size, template)
    draw = ImageDraw.Draw(image)
    filled = state.level in (Level.CRITICAL, Level.EXHAUSTED, Level.NEEDS_LOGIN)
    ink = (0, 0, 0, 255) if template else (*_INK, 255)
    if state.level == Level.PAUSED:
        bar = max(1, round(size * 0.11))
        gap = max(1, round(size * 0.09))
        height = max(3, round(size * 0.36))
        top = (size - height) // 2
        left = (size - (2 * bar + gap)) // 2
        draw.rectangle((left, top, left + bar - 1, top + height - 1), fill=ink)
        draw.rectangle((left + bar + gap, top, left + 2 * bar + gap - 1, top + height - 1), fill=ink)
    placed = text_box(state, size)
    if placed is not None:
        mask = glyph_mask(placed.text, placed.scale)
        if state.level in _RING_LEVELS and not template:
            # Where the text meets the ring (small sizes), the ring gives way: digits always sit on the dark disc.
            left, top, right, bottom = placed.box
            draw.rectangle((left, top, right - 1, bottom - 1), fill=(*_DISC, 235))
        # On a filled shape a template knocks the text out (macOS tints what is left).
        fill = (0, 0, 0, 0) if template and filled else ink
        if state.level == Level.NEEDS_LOGIN and not template:
            fill = (*_DISC, 255)
        image.paste(Image.new("RGBA", mask.size, fill), (placed.x, placed.y), mask)
    corner = badge_box(state, size)
    if corner is not None and state.badge is not None:
        left, top, right, bottom = corner
        dot = (0, 0, 0, 255) if template else (*BADGE_COLORS[state.badge], 255)
        draw.ellipse((left, top, right - 1, bottom - 1), fill=(0, 0, 0, 0) if template else (*_DISC, 255))
        border = 1 if right - left >= 6 else 0
        draw.ellipse((left + border, top + border, right - 1 - border, bottom - 1 - border), fill=dot)
    if template:
        # Keep only the alpha: macOS ignores colour in template images, and tests check it is pure black.
        alpha = image.getchannel("A")
        image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        image.putalpha(alpha)
    return image
