"""Build the Linux bundle with the real spec and smoke-test the frozen binary (packaging/smoke_test.py --tray).

About a minute on a 2-core machine: a one-folder build of ~40-55 s (230 MB with GTK) plus a ~6 s smoke test.
Marked ``bundle``; deselect with ``-m "not bundle"``. Skips locally without PyInstaller; fails in CI.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "test-bundle"

pytestmark = [pytest.mark.bundle, pytest.mark.timeout(900)]


def need(condition: bool, message: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_frozen_bundle_builds_and_works() -> None:
    if sys.platform != "linux":
        pytest.skip("this test builds the Linux bundle")
    need(
        importlib.util.find_spec("PyInstaller") is not None,
        "PyInstaller is not installed (pip install pyinstaller)",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    started = time.monotonic()
    build = subprocess.run(
        [
            sys.executable, "-m", "PyInstaller", "--noconfirm",
            "--distpath", str(BUILD / "dist"), "--workpath", str(BUILD / "work"),
            str(ROOT / "packaging" / "headway.spec"),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    build_seconds = time.monotonic() - started
    assert build.returncode == 0, build.stderr[-5000:]
    bundle = BUILD / "dist" / "headway"
    binary = bundle / "headway"
    assert binary.is_file()
    size_mb = folder_size(bundle) / 1e6
    print(f"\nbundle built in {build_seconds:.1f}s, {size_mb:.0f} MB")

    for data in ("web_ui/templates/index.html", "web_ui/static/app.css", "proxy/relay/worker/worker.js"):
        if (ROOT / data).exists():
            assert (bundle / "_internal" / data).is_file(), f"{data} is missing from the bundle"

    tray = shutil.which("Xvfb") is not None and shutil.which("dbus-run-session") is not None
    smoke = subprocess.run(
        [sys.executable, str(ROOT / "packaging" / "smoke_test.py"), str(binary), *(["--tray"] if tray else [])],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    print(smoke.stdout)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr[-3000:]
    assert "smoke test passed" in smoke.stdout
    assert size_mb < 400, f"the bundle grew to {size_mb:.0f} MB"
