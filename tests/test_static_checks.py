"""The project's own checks run with the tests: ruff (lint and format) over everything, mypy --strict over the shipped
packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


SOURCES = ("proxy", "tray", "web_ui", "tests", "benchmarks", "packaging")


def test_ruff() -> None:
    result = _run("ruff", "check", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    """The code's layout is ruff's, not each author's: `ruff format` fixes what this finds."""
    result = _run("ruff", "format", "--check", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = _run("mypy", "proxy", "tray", "web_ui")
    assert result.returncode == 0, result.stdout + result.stderr
