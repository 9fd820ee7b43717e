"""``python -m benchmarks clients`` runs and reports figures for every installed candidate. No speed is asserted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from benchmarks.clients import CANDIDATES, installed
from tests.benchmarks.runner import run_benchmark


def _window(node: Any, where: str) -> None:
    assert node["requests"] > 0, where
    assert node["errors"] == 0, where
    assert isinstance(node["rps"], float) and node["rps"] > 0, where
    assert isinstance(node["cpu_us_per_request"], float) and node["cpu_us_per_request"] > 0, where


@pytest.mark.timeout(150)
def test_quick_clients_benchmark_reports_every_installed_candidate() -> None:
    lines = run_benchmark("clients", "--quick", "--json", "--seconds", "0.3", timeout=140)
    assert len(lines) == 1, lines
    result = json.loads(lines[0])
    assert (
        result["benchmark"] == "upstream-clients" and result["concurrency"] == 20 and result["burst"] == 200
    )
    candidates = result["candidates"]
    assert list(candidates) == [c.name for c in CANDIDATES]
    assert "skipped" not in candidates["httpx"]  # httpx is a runtime dependency: always measured
    for candidate in CANDIDATES:
        node = candidates[candidate.name]
        if not installed(candidate.package):
            assert node == {"skipped": f"{candidate.package} is not installed"}
            continue
        for kind in ("json", "stream"):
            _window(node[kind]["fresh"], f"{candidate.name}.{kind}.fresh")
            after = node[kind]["after_burst"]
            _window(after, f"{candidate.name}.{kind}.after_burst")
            assert isinstance(after["connections_after_burst"], int) and after["connections_after_burst"] >= 0
            assert after["cpu_ratio"] == pytest.approx(
                after["cpu_us_per_request"] / node[kind]["fresh"]["cpu_us_per_request"], rel=0.01
            )
