"""The WebSocket benchmark runs and reports every figure (speed and bytes are reported, never asserted)."""

from __future__ import annotations

import json

import pytest

from benchmarks import websocket


@pytest.mark.timeout(180)
def test_the_websocket_benchmark_reports_every_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert websocket.main(["--turns", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["turns"] == 3 and set(report["modes"]) == {"http", "http_ws", "ws_ws"}
    for mode, figures in report["modes"].items():
        assert figures["turns"] == 3
        assert figures["over_http_turns"] == (3 if mode == "http" else 0)
        assert isinstance(figures["later_turns_bytes_total"], int) and figures["later_turns_bytes_total"] > 0
        assert isinstance(figures["ttfd_ms_later_p50"], float)
    assert report["modes"]["ws_ws"]["aim_le_10_percent"] in ("ok", "MISS")
