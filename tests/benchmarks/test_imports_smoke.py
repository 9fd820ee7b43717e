"""`python -m benchmarks imports` runs end to end and reports every figure per mode. No speed is asserted here."""

from __future__ import annotations

import importlib.util
import json
import marshal
from pathlib import Path
from typing import Any

import pytest

import proxy.wire.tls
from benchmarks.imports import parse_importtime
from benchmarks.processes import compile_headway
from tests.benchmarks.runner import run_benchmark


def _spread(node: Any, where: str) -> None:
    assert node["n"] >= 1, where
    assert 0 < node["min"] <= node["median"] <= node["max"], where


def test_importtime_lines_are_parsed_with_their_depth() -> None:
    text = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |   wsproto.events\n"
        "import time:        80 |        200 | wsproto\n"
        "not an importtime line\n"
    )
    assert parse_importtime(text) == [("wsproto.events", 120, 120, 1), ("wsproto", 80, 200, 0)]


def test_headways_bytecode_is_written_before_anything_is_timed() -> None:
    # A checkout run with PYTHONDONTWRITEBYTECODE=1 compiled every Headway module at every spawn: +0.1 s cold start.
    source = Path(proxy.wire.tls.__file__)
    cached = Path(importlib.util.cache_from_source(str(source)))
    cached.unlink(missing_ok=True)
    compile_headway()
    data = cached.read_bytes()
    assert data[:4] == importlib.util.MAGIC_NUMBER
    code = marshal.loads(data[16:])
    assert code.co_filename == str(source)


@pytest.mark.timeout(240)
def test_quick_run_reports_each_mode() -> None:
    lines = run_benchmark("imports", "--quick", "--runs", "1", "--json", timeout=220)
    assert len(lines) == 1, lines
    modes = json.loads(lines[0])["modes"]
    assert set(modes) == {"serve-file", "serve-keychain", "status", "tray"}
    measured = [name for name, mode in modes.items() if "skipped" not in mode]
    assert {"serve-file", "status"} <= set(measured)
    for name in measured:
        mode = modes[name]
        _spread(mode["cold_start_s"], f"{name}.cold_start_s")
        _spread(mode["idle_rss_mb"], f"{name}.idle_rss_mb")
        assert mode["modules"] > 100 and mode["import_rss_mb"] > 0, name
        assert set(mode["not_in_bundle"]) <= {"pygments", "rich"}, name
        packages = mode["packages"]
        assert packages and all(
            {"package", "self_us", "cum_us", "rss_kb", "modules"} <= set(p) for p in packages
        )
        assert [p["cum_us"] for p in packages] == sorted((p["cum_us"] for p in packages), reverse=True), name
    # The gateway's own code is in the budget, by subpackage.
    assert "proxy.engine" in {p["package"] for p in modes["serve-file"]["packages"]}
    for name, mode in modes.items():
        if "skipped" in mode:
            assert isinstance(mode["skipped"], str) and mode["skipped"], name
