"""The tray icon: what each ``summary`` draws, and the pixels at 16, 22, 24 and 32 px on light and dark panels.

Every state is rendered to PNG under ``test-artifacts/icons/`` (a contact sheet, light and dark) to look at; the
checks here are the ones a person would make: each state has its own picture, the digits are exactly the font's
(nothing covers them), a countdown keeps its unit, the badge never touches the text, and text and shape stand out.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from proxy.routing.summary import health_summary
from tray.icon import (
    BADGE_COLORS,
    CHECK,
    COLORS,
    IconState,
    Level,
    badge_box,
    glyph_mask,
    icon_state,
    render,
    ring_width,
    text_box,
)

NOW = 1_800_000_000.0
SIZES = (16, 22, 24, 32)
PANELS = {"light": (240, 240, 240), "dark": (40, 40, 44)}
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "icons"

STATES: dict[str, IconState] = {
    "healthy": IconState(Level.HEALTHY, "71", 0.71),
    "healthy-no-numbers": IconState(Level.HEALTHY, CHECK, 1.0),
    "low": IconState(Level.LOW, "18", 0.18),
    "critical": IconState(Level.CRITICAL, "4", 0.04),
    "exhausted": IconState(Level.EXHAUSTED, "20m", 0.0),
    "needs_login": IconState(Level.NEEDS_LOGIN, "!", None),
    "paused": IconState(Level.PAUSED, "", None),
    "unknown": IconState(Level.UNKNOWN, "?", None),
}


# --------------------------------------------------------------------------- from the summary


def codex(account_id: str, five_h: float, **extra: Any) -> dict[str, Any]:
    return {
        "id": account_id,
        "label": account_id,
        "family": "openai",
        "enabled": True,
        "health": "healthy",
        "last_ok_at": NOW - 60,
        "quota": {
            "updated_at": NOW - 30,
            "windows": [
                {
                    "name": "5h",
                    "remaining_percent": five_h,
                    "resets_in_seconds": 4320,
                    "resets_at": NOW + 4320,
                    "window_minutes": 300,
                    "current": True,
                }
            ],
        },
        **extra,
    }


def test_the_icon_draws_the_summary_and_judges_nothing() -> None:
    # A summary fed by hand: the icon follows it even where the accounts would say otherwise.
    fed = {"state": "low", "percent": 42.0, "tooltip": "Headway — fed", "attention": "blocked"}
    assert icon_state(fed, NOW) == IconState(Level.LOW, "42", 0.42, "Headway — fed", "blocked")
    assert icon_state({"state": "exhausted", "next_reset": NOW + 1190}, NOW).text == "20m"
    assert icon_state({"state": "exhausted", "next_reset": None}, NOW).text == "0"
    assert icon_state({"state": "healthy", "percent": None}, NOW).text == CHECK
    assert icon_state({"state": "needs_login"}, NOW).text == "!"
    assert icon_state({"state": "paused"}, NOW).text == ""
    assert icon_state({}, NOW).level == Level.UNKNOWN


def test_one_blocked_family_and_every_account_blocked_draw_differently() -> None:
    """The first-build bug: "one family cooling" and "every account blocked" both drew a red "20m"."""
    cooling = dict(health="cooling_down", blocked_until=NOW + 1200, blocked_for_seconds=1200.0)
    claude = {**codex("claude", 50), "family": "anthropic", **cooling}
    one = icon_state(health_summary([codex("work", 60), claude], NOW), NOW)
    every = icon_state(health_summary([{**codex("work", 60), **cooling}, claude], NOW), NOW)
    assert (one.level, one.text, one.badge) == (Level.HEALTHY, "60", "blocked")
    assert (every.level, every.text) == (Level.EXHAUSTED, "20m")
    assert render(one, 16).tobytes() != render(every, 16).tobytes()


# --------------------------------------------------------------------------- pixels


def pixels(image: Image.Image) -> list[tuple[int, ...]]:
    data, bands = image.tobytes(), len(image.getbands())
    return [tuple(data[i : i + bands]) for i in range(0, len(data), bands)]


def on_panel(image: Image.Image, panel: tuple[int, int, int]) -> Image.Image:
    base = Image.new("RGBA", image.size, (*panel, 255))
    base.alpha_composite(image)
    return base.convert("RGB")


def luminance(rgb: tuple[int, ...]) -> float:
    def channel(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_render_the_contact_sheet() -> None:
    """Every state at every size on both panels, 4x, for people to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cell = 36
    sheet = Image.new("RGB", (len(SIZES) * 2 * cell, len(STATES) * cell), (128, 128, 128))
    for row, state in enumerate(STATES.values()):
        for col, (panel, size) in enumerate(itertools.product(PANELS.values(), SIZES)):
            tile = Image.new("RGBA", (cell - 4, cell - 4), (*panel, 255))
            tile.alpha_composite(render(state, size), ((cell - 4 - size) // 2, (cell - 4 - size) // 2))
            sheet.paste(tile.convert("RGB"), (col * cell + 2, row * cell + 2))
    for name, state in STATES.items():
        for size in SIZES:
            render(state, size).save(ARTIFACTS / f"{name}-{size}.png")
    sheet.resize((sheet.width * 4, sheet.height * 4), Image.Resampling.NEAREST).save(ARTIFACTS / "sheet.png")
    assert (ARTIFACTS / "sheet.png").stat().st_size > 0


@pytest.mark.parametrize("size", SIZES)
def test_every_state_has_its_own_picture(size: int) -> None:
    """Pairwise: a different silhouette (alpha) or a different colour — and the shapes alone tell the alerts
    (critical, exhausted, needs login) from the ring states."""
    drawn = {name: render(state, size) for name, state in STATES.items()}
    for (a, ia), (b, ib) in itertools.combinations(drawn.items(), 2):
        assert ia.tobytes() != ib.tobytes(), (a, b)
    silhouettes = {
        name: drawn[name].getchannel("A").point(lambda v: 255 if v > 128 else 0).tobytes()
        for name in ("healthy", "critical", "exhausted", "needs_login")
    }
    assert len(set(silhouettes.values())) == 4


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list(STATES))
def test_the_text_is_exactly_the_font_and_stands_out(name: str, size: int) -> None:
    state = STATES[name]
    image = render(state, size)
    placed = text_box(state, size)
    if placed is None:
        assert state.level == Level.PAUSED
        return
    assert placed.text == state.text  # never shortened: "20m" keeps its unit at 16 px
    expected = glyph_mask(placed.text, placed.scale)
    left, top, right, bottom = placed.box
    assert left >= 0 and top >= 0 and right <= size and bottom <= size
    ink = (30, 30, 34) if state.level == Level.NEEDS_LOGIN else (255, 255, 255)  # dark on the light triangle
    crop = image.crop(placed.box)
    drawn = [255 if p == (*ink, 255) else 0 for p in pixels(crop)]
    assert bytes(drawn) == expected.tobytes()
    # Text against what is around it: the background inside the text's box, on both panels.
    for panel in PANELS.values():
        flat = on_panel(image, panel)
        background = [
            p for p, m in zip(pixels(flat.crop(placed.box)), expected.tobytes(), strict=True) if m == 0
        ]
        worst = min((contrast(ink, p) for p in background), default=21.0)
        assert worst >= 4.5, (name, size, worst)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("text", ["9s", "45s", "20m", "59m", "12h", "47h", "3d"])
def test_countdowns_keep_their_unit_at_every_size(text: str, size: int) -> None:
    placed = text_box(IconState(Level.EXHAUSTED, text, 0.0), size)
    assert placed is not None and placed.text == text and placed.scale >= 1
    assert placed.box[2] <= size - 1 and placed.box[0] >= 1


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("badge", ["needs_login", "blocked"])
@pytest.mark.parametrize("text", ["38", "100", "4", CHECK, "20m", "?"])
def test_the_badge_never_touches_the_digits(text: str, badge: str, size: int) -> None:
    level = Level.EXHAUSTED if text.endswith("m") else Level.UNKNOWN if text == "?" else Level.HEALTHY
    state = IconState(level, text, 0.38 if level == Level.HEALTHY else None, badge=badge)
    corner = badge_box(state, size)
    placed = text_box(state, size)
    assert corner is not None and placed is not None
    _, top, right, _ = placed.box
    bl, bt, br, bb = corner
    assert br <= size and bt >= 0 and br - bl >= 3
    assert bb < top or bl > right, (corner, placed.box)  # a gap of at least one pixel
    image = render(state, size)
    crop = image.crop(placed.box)
    drawn = [255 if p == (255, 255, 255, 255) else 0 for p in pixels(crop)]
    assert bytes(drawn) == glyph_mask(placed.text, placed.scale).tobytes()  # "38" still reads 38
    badge_pixels = sum(1 for p in pixels(image) if p[:3] == BADGE_COLORS[badge] and p[3] == 255)
    assert badge_pixels >= 1


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list(STATES))
def test_the_shape_shows_on_light_and_dark_panels(name: str, size: int) -> None:
    """Some of the shape's own pixels stand out from each panel (3:1, the WCAG bar for graphics)."""
    image = render(STATES[name], size)
    for panel_name, panel in PANELS.items():
        flat = on_panel(image, panel)
        opaque = [p for p, a in zip(pixels(flat), pixels(image.getchannel("A")), strict=True) if a[0] > 200]
        standing_out = [p for p in opaque if contrast(p, panel) >= 3]
        assert len(standing_out) >= size, (name, panel_name)


@pytest.mark.parametrize("size", SIZES)
def test_the_level_colour_is_drawn(size: int) -> None:
    for name in ("healthy", "low", "critical", "exhausted", "needs_login"):
        state = STATES[name]
        color = COLORS[state.level]
        hits = sum(1 for p in pixels(render(state, size)) if p[3] == 255 and p[:3] == color)
        assert hits >= max(3, size // 8), name


def ring_coverage(image: Image.Image, rgb: tuple[int, int, int]) -> float:
    size = image.width
    radius = size / 2 - ring_width(size) / 2
    hits = 0
    for step in range(720):
        angle = math.radians(step / 2)
        x, y = size / 2 + radius * math.sin(angle), size / 2 - radius * math.cos(angle)
        pixel = image.getpixel((int(x), int(y)))
        assert isinstance(pixel, tuple)
        if pixel[3] >= 250 and all(abs(a - b) <= 40 for a, b in zip(pixel[:3], rgb, strict=False)):
            hits += 1
    return hits / 720


@pytest.mark.parametrize("left", [0.1, 0.38, 0.5, 0.75, 0.99])
def test_the_arc_is_the_share_left(left: float) -> None:
    image = render(IconState(Level.HEALTHY, str(int(left * 100)), left), 64)
    assert ring_coverage(image, COLORS[Level.HEALTHY]) == pytest.approx(left, abs=0.04)


@pytest.mark.parametrize("size", [32, 44])
def test_template_images_are_black_with_alpha(size: int) -> None:
    for name, state in STATES.items():
        image = render(state, size, template=True)
        every = pixels(image)
        assert {p[:3] for p in every} == {(0, 0, 0)}, name
        assert len({p[3] for p in every}) > 2, name
