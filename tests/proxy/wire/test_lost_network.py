"""The network loses a connection (a VPN switched on, another Wi-Fi, a router that lost its state): for real, in a
network namespace of the test's own where iptables drops the packets of chosen connections
(``tests/support/lost_network.py``, run under ``unshare -n``; the machine's own network is not touched). The client
gets liveness settings of a second each (Headway's own: 15 s unacknowledged, probes after 30 s of silence).

Before, a request on a kept connection the network lost, and a stream it cut, waited out the read timeout (two
minutes for a stream's first byte, ten for a plain answer or between two events) and failed; the kernel gave no
sign, since nothing answered at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _namespaces_usable() -> str | None:
    """Why the test cannot make a network namespace with a firewall of its own here; None when it can."""
    if shutil.which("unshare") is None or shutil.which("iptables") is None:
        return "unshare (util-linux) and iptables are needed: ./scripts/install-test-deps installs them"
    probe = subprocess.run(
        ["unshare", "-n", "iptables", "-L", "OUTPUT"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        return f"cannot make a network namespace with a firewall: {probe.stderr.strip()} (it takes root)"
    return None


def _lost_network(scenario: str) -> dict[str, Any]:
    why = _namespaces_usable()
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    run = subprocess.run(
        [
            "unshare",
            "-n",
            sys.executable,
            "-m",
            "tests.support.lost_network",
            scenario,
            "--quick",
            "--read",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    report: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return report


def test_a_kept_connection_the_network_lost_costs_seconds_not_the_read_timeout() -> None:
    report = _lost_network("kept")
    *first, lost, after = report["results"]
    assert [r["status"] for r in first] == [200, 200]
    # the lost connection gave up after ~1 s of unacknowledged bytes; the request went out again on a new one
    assert lost.get("status") == 200, lost
    assert lost["seconds"] < 30, "it waited for the read timeout"
    assert after["status"] == 200
    assert report["upstream_requests"] == 4, "a request reached the upstream twice, or not at all"
    # the pool was retired with the first lost connection: the last request did not try the other one
    lost_lines = [line for line in report["log"] if "the network lost a kept-alive connection" in line]
    assert len(lost_lines) == 1, report["log"]
    assert report["connections"] == 4  # the two lost, the resend's, the new pool's


def test_a_stream_the_network_cut_ends_in_seconds_not_the_read_timeout() -> None:
    """Nothing of ours is outstanding while a stream is read, so only keep-alive probes can tell that the other side
    is gone; before, the stream sat silent until the read timeout (ten minutes by default), and the agent with it."""
    report = _lost_network("stream")
    (cut,) = report["results"]
    assert cut["events"] == 2, cut  # the events before the cut came through
    assert "Connection timed out" in cut.get("error", ""), cut  # the kernel gave the connection up
    assert cut["seconds"] < 30, "it waited for the read timeout"
