"""The network loses a kept connection (a VPN switched on, another Wi-Fi, a router that lost its state): for real, in
a network namespace of the test's own where iptables drops the packets of that one connection
(``tests/support/lost_network.py``, run under ``unshare -n``; the machine's own network is not touched).

Before, the next request on that connection waited out its read timeout (two minutes for a stream, ten for a plain
answer) and failed; the kernel gave no sign, since nothing answered at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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


def test_a_connection_the_network_lost_costs_seconds_not_the_read_timeout() -> None:
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
            "--unacked",
            "1.0",
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
    report = json.loads(run.stdout.strip().splitlines()[-1])
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
