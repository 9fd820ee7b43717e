"""How the benchmark smoke tests run a benchmark: ``python -m benchmarks ARGS`` from the checkout, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_benchmark(*args: str, timeout: float) -> list[str]:
    """The lines the benchmark printed on stdout; it must have exited 0 (else its output is the failure message)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()
