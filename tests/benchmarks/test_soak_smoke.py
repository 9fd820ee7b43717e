"""The soak runs end to end for a few seconds and reports its samples. A functional check: no figure is asserted."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.runner import run_benchmark


@pytest.mark.timeout(120)
def test_a_short_soak_reports_memory_descriptors_and_outcomes() -> None:
    lines = run_benchmark(
        "soak", "--seconds", "3", "--concurrency", "4", "--interval", "1", "--json", timeout=110
    )
    assert len(lines) == 1, lines
    result = json.loads(lines[0])
    assert result["benchmark"] == "headway-soak"
    assert result["gateway_alive"] is True
    assert result["status_errors"] == 0 and result["status_reads"] > 0
    assert result["state_file_unparsable"] == 0
    assert result["requests"] > 0
    assert any(kind.endswith(":200") for kind in result["outcomes"])
    assert len(result["samples"]) >= 3
    for sample in result["samples"]:
        assert sample["rss_mb"] > 5 and sample["fds"] > 0 and sample["threads"] > 0
    assert set(result["drift_after_warmup"]) == {"rss_mb", "fds", "threads"}
