"""`python -m benchmarks shared-state --quick` runs end to end and reports every figure (no speed is asserted)."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.runner import run_benchmark
from tests.support.redis_server import redis_server_binary


@pytest.mark.timeout(150)
def test_shared_state_benchmark_reports_every_figure() -> None:
    redis_server_binary()  # present (CI: installed by scripts/install-test-deps)
    lines = run_benchmark("shared-state", "--quick", "--json", timeout=140)
    result = json.loads(lines[-1])
    assert result["benchmark"] == "headway-shared-state-cost"
    for side in ("alone", "shared"):
        assert result["latency_ms"][side]["n"] == result["requests_per_gateway"] > 0
        assert result["cpu_ms_per_request"][side] > 0
        assert result["hot_path_us"][side] > 0
    assert isinstance(result["latency_ms"]["added_p50"], float)
    # Quota snapshots are coalesced (at most one publish a second per account, none for an unchanged snapshot): far
    # fewer publishes than requests. A quick run may publish none in its measured window (read from a status that is
    # itself up to 0.5 s old); that publishing happens at all is tested with two replicas (tests/proxy/shared).
    assert 0 <= result["published_per_request"] < 0.5
