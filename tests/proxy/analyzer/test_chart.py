from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from proxy.analyzer import CacheReport, TurnRecord, analyze_records, render_svg, write_svg
from proxy.wire.usage import Usage

NS = {"svg": "http://www.w3.org/2000/svg"}
T0 = 1_767_225_600.0


def record(session: str, at: float, **usage: int) -> TurnRecord:
    return TurnRecord(
        session_id=session,
        start=T0 + at,
        provider="anthropic",
        model="claude-sonnet-4-5",
        usage=Usage(**usage),
    )


def report_of(records: list[TurnRecord]) -> CacheReport:
    return analyze_records(records, source="headway", now=T0)


def test_one_bar_group_per_turn_with_stacked_parts(tmp_path: Path) -> None:
    records = [
        record("a", 0, input_tokens=100, cache_write_tokens=4_000, cache_write_1h_tokens=4_000),
        record(
            "a",
            30,
            input_tokens=100,
            cache_read_tokens=4_000,
            cache_write_tokens=500,
            cache_write_1h_tokens=500,
        ),
        record("a", 60, input_tokens=100, cache_write_tokens=4_700, cache_write_1h_tokens=4_700),  # a break
        record(
            "a", 8000, input_tokens=100, cache_write_tokens=4_900, cache_write_1h_tokens=4_900
        ),  # an expiry
        record("b <&>", 0, input_tokens=50),
    ]
    report = report_of(records)
    path = tmp_path / "cache.svg"
    write_svg(report, path)
    root = ET.fromstring(path.read_text(encoding="utf-8"))
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    turns = root.findall(".//svg:g[@class='turn']", NS)
    assert len(turns) == 5
    assert [(g.get("data-session"), g.get("data-turn")) for g in turns] == [
        ("a", "1"),
        ("a", "2"),
        ("a", "3"),
        ("a", "4"),
        ("b <&>", "1"),
    ]
    for g in turns:
        assert g.find("svg:title", NS) is not None
    second = {r.get("class"): float(r.get("height", "0")) for r in turns[1].findall("svg:rect", NS)}
    assert set(second) == {"read", "write", "uncached"}
    assert second["read"] / second["write"] == pytest.approx(4_000 / 500, rel=0.02)
    markers = {m.get("class") for m in root.findall(".//svg:polygon", NS)}
    assert markers == {"marker break", "marker expiry"}
    # self-contained: no external references, scripts or stylesheets
    text = path.read_text()
    assert "href" not in text and "<script" not in text and "<style" not in text and "url(" not in text


def test_an_empty_report_still_parses() -> None:
    root = ET.fromstring(render_svg(report_of([])))
    assert root.findall(".//svg:g[@class='turn']", NS) == []


def test_many_turns_fit() -> None:
    records = [
        record("s", i * 10, input_tokens=10, cache_read_tokens=1000 * i, cache_write_tokens=100)
        for i in range(600)
    ]
    root = ET.fromstring(render_svg(report_of(records)))
    assert len(root.findall(".//svg:g[@class='turn']", NS)) == 600
    assert float(root.get("width", "0")) <= 72 + 2 * 600 + 16


def test_the_dark_chart_uses_only_the_dark_palette() -> None:
    from proxy.analyzer.chart import COLORS, DARK_COLORS

    records = [
        record("s", i * 10, input_tokens=10, cache_read_tokens=100 * i, cache_write_tokens=50)
        for i in range(4)
    ]
    light, dark = render_svg(report_of(records)), render_svg(report_of(records), dark=True)
    root = ET.fromstring(dark)
    assert root.find("svg:rect", NS).get("fill") == DARK_COLORS["background"]  # type: ignore[union-attr]
    for key, ink in COLORS.items():
        assert ink not in dark, key
        assert DARK_COLORS[key] not in light, key
