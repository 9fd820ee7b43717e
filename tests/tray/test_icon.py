"""The tray icon: which state a status snapshot gives, and the pixels drawn for it at 16, 32 and 64 px."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from PIL import Image

from proxy.durations import format_duration, short_duration
from tray.icon import (
    COLORS,
    IconState,
    Level,
    account_line,
    fitted_text,
    glyph_mask,
    render,
    ring_width,
    summarize,
    text_origin,
)

NOW = 1_800_000_000.0
SIZES = (16, 32, 64)


# --------------------------------------------------------------------------- status snapshots


def window(
    name: str, left: float | None, resets_in: float | None = None, minutes: int | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "remaining_percent": left,
        "resets_in_seconds": resets_in,
        "window_minutes": minutes,
        "current": True,
        **extra,
    }


def account(
    account_id: str,
    *windows: dict[str, Any],
    family: str = "openai",
    health: str = "healthy",
    last_ok: float | None = NOW - 60,
    updated: float = NOW - 30,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": account_id,
        "label": account_id,
        "kind": "chatgpt",
        "family": family,
        "enabled": health != "disabled",
        "health": health,
        "blocked_for_seconds": None,
        "last_ok_at": last_ok,
        "quota": {"updated_at": updated, "windows": list(windows)} if windows else None,
        **extra,
    }


def status(*accounts: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "routing": "main-first",
        "paused": False,
        "settings_error": None,
        "accounts": list(accounts),
        **extra,
    }


def codex(account_id: str = "work", five_h: float = 38.0, week: float = 71.0, **kw: Any) -> dict[str, Any]:
    return account(
        account_id,
        window("5h", five_h, 4320, 300),
        window("weekly", week, 3 * 86400, 10080),
        **kw,
    )


# --------------------------------------------------------------------------- summarize


def test_the_tightest_window_of_the_account_in_use_not_a_weekly_total() -> None:
    state = summarize(status(codex(five_h=38, week=71)), NOW)
    assert (state.level, state.text, state.percent) == (Level.HEALTHY, "38", 38)
    assert state.fraction == pytest.approx(0.38)
    assert state.tooltip == "Headway\nwork · 5h: 38% left, resets in 1h 12m · week: 71% left"


def test_levels_follow_the_thresholds() -> None:
    assert summarize(status(codex(five_h=21, week=90)), NOW).level == Level.HEALTHY
    assert summarize(status(codex(five_h=20, week=90)), NOW).level == Level.LOW
    assert summarize(status(codex(five_h=5, week=90)), NOW).level == Level.CRITICAL
    exhausted = summarize(status(codex(five_h=0, week=90)), NOW)
    assert (exhausted.level, exhausted.text, exhausted.fraction) == (Level.EXHAUSTED, "2h", 0.0)


def test_a_window_burning_faster_than_it_refills_is_amber_early() -> None:
    # 4 h of the 5 h window left, but 70 % already used: at this pace it is empty in ~26 min.
    hot = account("work", window("5h", 30, resets_in=4 * 3600, minutes=300))
    assert summarize(status(hot), NOW).level == Level.LOW
    # Same share used with 20 minutes to go: it lasts until the reset.
    calm = account("work", window("5h", 30, resets_in=20 * 60, minutes=300))
    assert summarize(status(calm), NOW).level == Level.HEALTHY


def test_unknown_and_stale_quota_is_grey() -> None:
    assert summarize(status(account("work")), NOW).level == Level.UNKNOWN
    old = codex(updated=NOW - 7 * 3600)
    assert summarize(status(old), NOW).level == Level.UNKNOWN
    reset_passed = account("work", window("requests", 10, current=False))
    state = summarize(status(reset_passed), NOW)
    assert (state.level, state.text) == (Level.UNKNOWN, "?")
    assert "quota unknown" in state.tooltip


def test_login_problems_get_their_own_mark() -> None:
    state = summarize(status(codex(health="needs_login")), NOW)
    assert (state.level, state.text) == (Level.NEEDS_LOGIN, "!")
    assert "work · needs login" in state.tooltip
    assert summarize(status(codex(health="auth_failed")), NOW).level == Level.NEEDS_LOGIN


def test_a_rate_limited_account_shows_the_time_until_it_is_back() -> None:
    limited = codex(health="cooling_down", blocked_for_seconds=250.0)
    state = summarize(status(limited), NOW)
    assert (state.level, state.text) == (Level.EXHAUSTED, "5m")
    assert "rate-limited, back in 4m" in state.tooltip
    out = summarize(status(codex(health="exhausted", blocked_for_seconds=3 * 3600.0)), NOW)
    assert (out.level, out.text) == (Level.EXHAUSTED, "3h")
    assert "work · out of quota, resets in 3h" in out.tooltip
    held = summarize(status(codex(health="killswitch", blocked_for_seconds=600.0)), NOW)
    assert (held.level, held.text) == (Level.EXHAUSTED, "10m")
    assert "held back by its killswitch, resets in 10m" in held.tooltip


def test_another_account_needing_login_adds_a_badge() -> None:
    locked = account("api", family="anthropic", health="needs_login", last_ok=None)
    state = summarize(status(codex(five_h=60), locked), NOW)
    assert (state.level, state.text, state.badge) == (Level.HEALTHY, "60", True)
    assert state.lines[-1] == "api · needs login"
    plain = render(IconState(Level.HEALTHY, "60", 0.6, ""), 32)
    badged = render(state, 32)
    assert count(plain, COLORS[Level.NEEDS_LOGIN]) == 0
    assert count(badged, COLORS[Level.NEEDS_LOGIN]) >= 10
    corner = badged.crop((22, 0, 32, 10))
    assert count(corner, COLORS[Level.NEEDS_LOGIN]) >= 10


def test_paused_no_accounts_and_settings_errors() -> None:
    assert summarize(status(codex(), paused=True), NOW).level == Level.PAUSED
    empty = summarize(status(), NOW)
    assert (empty.level, empty.text) == (Level.UNKNOWN, "?")
    assert "No accounts yet" in empty.tooltip
    broken = summarize(status(codex(), settings_error=["gateway.port: bad"]), NOW)
    assert "Settings file has errors" in broken.tooltip


def test_the_account_that_served_last_is_the_one_shown() -> None:
    main = codex("main", five_h=0, last_ok=NOW - 600)
    fallback = codex("backup", five_h=64, last_ok=NOW - 5)
    state = summarize(status(main, fallback), NOW)
    assert state.text == "64"
    assert state.lines == ("backup · 5h: 64% left, resets in 1h 12m · week: 71% left",)


def test_unused_accounts_follow_the_routing_order() -> None:
    first = codex("first", five_h=50, week=95, last_ok=None)
    second = codex("second", five_h=90, week=95, last_ok=None)
    assert summarize(status(first, second), NOW).text == "50"
    assert summarize(status(first, second, routing="fallback-first"), NOW).text == "90"


def test_each_family_in_use_counts() -> None:
    claude = account("claude", window("tokens", 12), family="anthropic", kind="anthropic-api-key")
    state = summarize(status(codex(five_h=60), claude), NOW)
    assert (state.level, state.text) == (Level.LOW, "12")
    assert len(state.lines) == 2


def test_account_lines_and_durations() -> None:
    api = account("api", window("requests", 80.4, 12), window("tokens", 61.9, 30))
    assert account_line(api, NOW) == "api · requests: 80% left · tokens: 61% left, resets in 30s"
    assert account_line(account("off", health="disabled"), NOW) == "off · disabled"
    assert format_duration(4320) == "1h 12m"
    assert format_duration(45 * 60) == "45m"
    assert format_duration(2 * 86400 + 4 * 3600) == "2d 4h"
    assert format_duration(30) == "30s"
    assert (short_duration(61), short_duration(3601), short_duration(3 * 86400)) == ("2m", "2h", "3d")


# --------------------------------------------------------------------------- pixels


def pixels(image: Image.Image) -> list[tuple[int, ...]]:
    """Every pixel as a tuple (without Pillow's getdata, deprecated in Pillow 13)."""
    data, bands = image.tobytes(), len(image.getbands())
    return [tuple(data[i : i + bands]) for i in range(0, len(data), bands)]


def at(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def close(pixel: tuple[int, ...], rgb: tuple[int, int, int], tolerance: int = 12) -> bool:
    return (
        len(pixel) == 4
        and pixel[3] >= 250
        and all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], rgb, strict=False))
    )


def count(image: Image.Image, rgb: tuple[int, int, int]) -> int:
    return sum(1 for p in pixels(image) if close(p, rgb))


def ring_coverage(image: Image.Image, rgb: tuple[int, int, int]) -> float:
    """Share of the ring's mid-line, sampled at 720 angles, drawn in ``rgb`` (clockwise from twelve o'clock)."""
    size = image.width
    radius = size / 2 - ring_width(size) / 2
    hits = 0
    for step in range(720):
        angle = math.radians(step / 2)
        x = size / 2 + radius * math.sin(angle)
        y = size / 2 - radius * math.cos(angle)
        if close(at(image, (int(x), int(y))), rgb, tolerance=40):
            hits += 1
    return hits / 720


STATES = {
    Level.HEALTHY: IconState(Level.HEALTHY, "71", 0.71, ""),
    Level.LOW: IconState(Level.LOW, "18", 0.18, ""),
    Level.CRITICAL: IconState(Level.CRITICAL, "4", 0.04, ""),
    Level.EXHAUSTED: IconState(Level.EXHAUSTED, "12m", 0.0, ""),
    Level.UNKNOWN: IconState(Level.UNKNOWN, "?", None, ""),
    Level.NEEDS_LOGIN: IconState(Level.NEEDS_LOGIN, "!", None, ""),
    Level.PAUSED: IconState(Level.PAUSED, "", None, ""),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("level", [Level.HEALTHY, Level.LOW, Level.CRITICAL, Level.NEEDS_LOGIN])
def test_the_level_colour_is_drawn_and_no_other(level: Level, size: int) -> None:
    image = render(STATES[level], size)
    assert image.size == (size, size) and image.mode == "RGBA"
    assert count(image, COLORS[level]) >= max(2, size // 8)
    for other in (Level.HEALTHY, Level.LOW, Level.CRITICAL, Level.NEEDS_LOGIN):
        if COLORS[other] != COLORS[level]:
            assert count(image, COLORS[other]) == 0, other


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("level", [Level.EXHAUSTED, Level.UNKNOWN, Level.PAUSED])
def test_states_without_headroom_draw_no_arc(level: Level, size: int) -> None:
    image = render(STATES[level], size)
    assert count(image, COLORS[level]) == 0  # only the dimmed track
    assert ring_coverage(image, COLORS[Level.HEALTHY]) == 0


@pytest.mark.parametrize("size", SIZES)
def test_the_corners_stay_transparent(size: int) -> None:
    for state in STATES.values():
        image = render(state, size)
        assert at(image, (0, 0))[3] == 0 and at(image, (size - 1, size - 1))[3] == 0


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("left", [0.1, 0.38, 0.5, 0.75, 0.99])
def test_the_arc_reflects_the_percentage(left: float, size: int) -> None:
    image = render(IconState(Level.HEALTHY, str(int(left * 100)), left, ""), size)
    assert ring_coverage(image, COLORS[Level.HEALTHY]) == pytest.approx(left, abs=0.04)
    # The arc starts at twelve o'clock and runs clockwise: the first quarter is drawn before the last.
    assert close(at(image, (size // 2 + 2, ring_width(size) // 2)), COLORS[Level.HEALTHY], tolerance=40)


def ink(image: Image.Image, box: tuple[int, int, int, int], rgb: tuple[int, int, int]) -> Image.Image:
    """A 0/255 mask of the pixels in ``box`` that are exactly ``rgb`` at full alpha."""
    crop = image.crop(box)
    mask = Image.new("L", crop.size, 0)
    mask.putdata([255 if p[:3] == rgb and p[3] == 255 else 0 for p in pixels(crop)])
    return mask


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("text", ["38", "7", "100", "12m", "?", "!"])
def test_the_number_is_drawn_in_the_middle(text: str, size: int) -> None:
    level = Level.NEEDS_LOGIN if text == "!" else Level.HEALTHY
    image = render(IconState(level, text, 0.5 if level == Level.HEALTHY else None, ""), size)
    shown, scale = fitted_text(text, size)
    assert scale >= 1
    expected = glyph_mask(shown, scale)
    x, y = text_origin(shown, size, scale)
    drawn = ink(image, (x, y, x + expected.width, y + expected.height), (255, 255, 255))
    assert drawn.tobytes() == expected.tobytes()


def test_numbers_get_bigger_with_the_icon_and_different_numbers_differ() -> None:
    assert [fitted_text("38", s)[1] for s in SIZES] == [1, 2, 5]
    assert fitted_text("12m", 16) == ("12", 1)  # no room for the unit at 16 px
    assert (
        render(STATES[Level.HEALTHY], 32).tobytes()
        != render(IconState(Level.HEALTHY, "38", 0.71, ""), 32).tobytes()
    )


@pytest.mark.parametrize("size", [32, 44, 64])
def test_template_images_are_black_with_alpha(size: int) -> None:
    for state in STATES.values():
        image = render(state, size, template=True)
        every = pixels(image)
        assert {p[:3] for p in every} == {(0, 0, 0)}
        alphas = {p[3] for p in every}
        assert (0 in alphas and 255 in alphas) or state.level == Level.EXHAUSTED
        assert len(alphas) > 2  # anti-aliased edges, dimmed track
    healthy = render(STATES[Level.HEALTHY], 64, template=True)
    left = sum(1 for p in pixels(healthy) if p[3] == 255)
    fuller = sum(
        1 for p in pixels(render(IconState(Level.HEALTHY, "71", 0.95, ""), 64, template=True)) if p[3] == 255
    )
    assert fuller > left


def test_rendering_is_fast_enough_for_a_worker_tick() -> None:
    started = time.perf_counter()
    for state in STATES.values():
        render(state, 64)
    assert time.perf_counter() - started < 0.5
