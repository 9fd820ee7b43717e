"""The bundle is built from a hash-pinned lock that matches pyproject.toml (packaging/requirements.lock, lock.sh).

These read files only (no network, no build): they fail when a dependency is added to pyproject.toml without
regenerating the lock, when a pin falls outside pyproject's range, when a pin has no hash, or when build.sh stops
installing the lock with ``--require-hashes``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "packaging" / "requirements.lock"


def _pyproject_dependencies() -> list[Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [Requirement(text) for text in data["project"]["dependencies"]]


def _lock() -> dict[str, tuple[str, list[str]]]:
    """name → (pinned version, hashes), from the lock's ``name==version [; marker] \\ --hash=...`` entries."""
    entries: dict[str, tuple[str, list[str]]] = {}
    current: str | None = None
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        pin = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
        if pin:
            current = canonicalize_name(pin.group(1))
            assert current not in entries, f"{current} is pinned twice"
            entries[current] = (pin.group(2), [])
            continue
        digest = re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line)
        if digest and current is not None:
            entries[current][1].append(digest.group(1))
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"unexpected line in the lock: {line!r}")
    return entries


def test_every_pin_has_hashes() -> None:
    entries = _lock()
    assert len(entries) > 20
    for name, (version, hashes) in entries.items():
        assert hashes, f"{name}=={version} has no --hash"


def test_every_dependency_of_pyproject_is_locked_within_its_range() -> None:
    entries = _lock()
    for requirement in _pyproject_dependencies():
        name = canonicalize_name(requirement.name)
        assert name in entries, f"{requirement} is not in packaging/requirements.lock; run packaging/lock.sh"
        version = entries[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"the lock pins {name}=={version}, outside pyproject's {requirement}; run packaging/lock.sh"
        )


def test_the_bundle_tools_are_locked() -> None:
    entries = _lock()
    for line in (ROOT / "packaging" / "bundle-tools.in").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in entries, f"{requirement} is not in the lock; run packaging/lock.sh"
            assert requirement.specifier.contains(entries[name][0], prereleases=True)


def test_dependencies_that_surprised_us_have_upper_bounds() -> None:
    """A new major comes in only through a reviewed bump."""
    bounded = {"starlette", "watchdog", "filelock", "httpx", "pydantic", "wsproto", "tomlkit"}
    found = {canonicalize_name(r.name): r for r in _pyproject_dependencies()}
    for name in bounded:
        assert name in found, f"{name} is no longer a dependency; update this test"
        assert any(spec.operator in ("<", "<=", "==", "~=") for spec in found[name].specifier), (
            f"{found[name]} has no upper bound"
        )


def test_sniffio_is_a_dependency() -> None:
    """httpcore retries ``import sniffio`` on every lock and event when it is missing (failed imports are not cached)."""
    assert "sniffio" in {canonicalize_name(r.name) for r in _pyproject_dependencies()}


def test_build_sh_installs_the_lock_with_hash_checking() -> None:
    script = (ROOT / "packaging" / "build.sh").read_text(encoding="utf-8")
    install = re.search(r"pip install[^\n]*(?:\\\n[^\n]*)*", script)
    assert install is not None, "build.sh no longer installs anything"
    assert "--require-hashes" in install.group(0) and "requirements.lock" in script


def test_one_http_stack() -> None:
    """Two HTTP clients by design and no more: httpx for logins, polling and Cloudflare, aiohttp for model requests
    (chosen by benchmark, docs/architecture.md). Neither the bundle nor a running Headway carries another stack
    (httpx2 / httpcore2 / truststore came with genai-prices, for a price updater Headway never ran)."""
    locked = {
        canonicalize_name(line.split("==")[0]) for line in LOCK.read_text().splitlines() if "==" in line
    }
    assert not locked & {"httpx2", "httpcore2", "truststore", "genai-prices", "requests", "urllib3"}
    assert {"httpx", "httpcore", "aiohttp"} <= locked
    code = (
        "import sys, proxy.engine, proxy.features.pricing, proxy.analyzer, tray.cli, web_ui.app;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'httpx2', 'httpcore2', 'genai_prices'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
