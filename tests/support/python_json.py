"""Run a Python snippet in a fresh interpreter (from the repository root) and read the JSON line it prints last:
how tests look at what a new process loads, chooses or sees, away from the test process's own imports and state."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["run_python_json"]

ROOT = Path(__file__).resolve().parents[2]


def run_python_json(
    script: str,
    *args: str,
    env: Mapping[str, str],
    timeout: float = 60,
    prefix: Sequence[str] = (),
    more_output: Path | None = None,
) -> dict[str, Any]:
    """``[*prefix, python, -c, script, *args]`` in the repository root with ``env``; it must exit 0, and its last line
    of output is returned, parsed. A failure shows its stderr's tail (and ``more_output``'s, a log it wrote)."""
    done = subprocess.run(
        [*prefix, sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(env),
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        extra = (
            more_output.read_text(errors="replace")[-2000:] if more_output and more_output.exists() else ""
        )
        raise AssertionError(f"exit code {done.returncode}\n{done.stderr[-3000:]}{extra}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
