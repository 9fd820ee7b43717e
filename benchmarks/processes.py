"""The two servers the benchmark runs as real subprocesses: the mock upstream and ``headway serve``.

The gateway gets a throwaway ``HEADWAY_HOME`` whose settings keep secrets in a plain file (no OS keychain), one
Anthropic API-key account added through the CLI, and ``HEADWAY_ANTHROPIC_BASE_URL`` pointing at the mock. Proxy
variables are removed from its environment: its client trusts the environment, and loopback traffic must not
detour through a proxy. Memory and CPU are read from ``/proc/<pid>``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = [
    "GATEWAY_LISTENING",
    "GatewayHome",
    "Server",
    "clean_env",
    "cli",
    "compile_headway",
    "cpu_seconds",
    "listening_url",
    "machine_busy_seconds",
    "prepare_gateway",
    "rss_mb",
    "spawn_gateway",
    "start_floor",
    "start_gateway",
    "start_mock",
    "wait_for_line",
]

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
_SCRUB_PREFIXES = ("HEADWAY_", "ANTHROPIC_", "OPENAI_")
GATEWAY_LISTENING = "Headway gateway on "


@dataclass
class Server:
    """A running subprocess and where it listens."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    output: Path
    key: str = ""
    home: Path | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        assert port is not None
        return port

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB, from ``VmRSS`` in ``/proc/<pid>/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_busy_seconds() -> float:
    """CPU time every process on the machine has used (all CPUs, not idle or waiting for I/O), from ``/proc/stat``."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in _PROXY_VARS and not k.startswith(_SCRUB_PREFIXES)
    }
    env.update(extra)
    return env


def wait_for_line(proc: subprocess.Popen[bytes], path: Path, prefix: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise RuntimeError(f"no line starting with {prefix!r} within {timeout:.0f}s")


def _start_module(
    name: str, what: str, module: str, args: list[str], workdir: Path, timeout: float
) -> Server:
    """``python -m <module> <args>`` from the checkout, its output to ``workdir/<name>.out``; it prints its URL."""
    output = workdir / f"{name}.out"
    with open(output, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env({}),
            cwd=Path(__file__).resolve().parents[1],
            start_new_session=True,
        )
    try:
        url = wait_for_line(proc, output, "http://", timeout).strip()
    except RuntimeError as exc:
        proc.kill()
        proc.wait(5)
        raise RuntimeError(f"the {what} did not start: {exc}\n{output.read_text(errors='replace')}") from exc
    return Server(name, proc, url, output)


def start_mock(workdir: Path, timeout: float = 15.0) -> Server:
    """``python -m benchmarks.mock_upstream`` on a free port."""
    return _start_module(
        "mock", "mock upstream", "benchmarks.mock_upstream", ["--port", "0"], workdir, timeout
    )


def start_floor(workdir: Path, upstream_url: str, timeout: float = 15.0) -> Server:
    """``python -m benchmarks.floor`` on a free port, relaying to ``upstream_url``'s host and port: the floor."""
    args = ["--upstream", urlsplit(upstream_url).netloc, "--port", "0"]
    return _start_module("floor", "bare relay", "benchmarks.floor", args, workdir, timeout)


def compile_headway() -> None:
    """Write the bytecode of Headway's own packages before anything is timed, as an install has it (pip compiles what
    it installs, the bundle holds it). From a checkout under ``PYTHONDONTWRITEBYTECODE=1`` every spawn would
    otherwise compile each of Headway's modules again: about 0.1 s more cold start, measured. Where the packages
    cannot be written (an installed copy), nothing is written and nothing fails."""
    import compileall

    import proxy

    root = Path(proxy.__file__).resolve().parent.parent
    for package in ("proxy", "tray", "web_ui"):
        if (root / package).is_dir():
            compileall.compile_dir(root / package, quiet=2)


def _headway_command() -> list[str]:
    """The ``headway`` console script beside this interpreter, else the same entry point through ``-m tray``."""
    script = Path(sys.executable).with_name("headway")
    if script.exists():
        return [str(script)]
    found = shutil.which("headway")
    return [found] if found else [sys.executable, "-m", "tray"]


def cli(home: Path, *args: str, stdin: str | None = None, timeout: float = 60.0) -> str:
    done = subprocess.run(
        [*_headway_command(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=clean_env({"HEADWAY_HOME": str(home)}),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"`headway {' '.join(args)}` failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done.stdout


@dataclass(frozen=True)
class GatewayHome:
    """A throwaway HEADWAY_HOME with one account on the mock, and what ``headway serve`` needs to run in it."""

    home: Path
    key: str
    env: dict[str, str]


def prepare_gateway(
    workdir: Path,
    upstream_url: str,
    *,
    provider: str = "anthropic",
    settings: Mapping[str, object] | None = None,
    env: dict[str, str] | None = None,
) -> GatewayHome:
    """A fresh HEADWAY_HOME under ``workdir`` with one account of ``provider`` (anthropic or openai) on the mock.

    ``settings`` are merged into the settings file (secrets in a plain file unless they say otherwise); ``env`` is
    more environment for the gateway (e.g. HEADWAY_SHARED_STATE_URL).
    """
    home = Path(tempfile.mkdtemp(prefix="headway-home-", dir=workdir))
    config = home / "config"
    config.mkdir(mode=0o700)
    (config / "settings.json").write_text(json.dumps({"secrets": {"backend": "file"}, **(settings or {})}))
    api_key = "sk-ant-bench-0000000000" if provider == "anthropic" else "sk-bench-0000000000"
    cli(home, "accounts", "add", provider, "--label", "bench", "--api-key-stdin", stdin=api_key + "\n")
    key = cli(home, "key").strip()
    gateway_env = {
        "HEADWAY_HOME": str(home),
        f"HEADWAY_{provider.upper()}_BASE_URL": upstream_url,
        **(env or {}),
    }
    return GatewayHome(home, key, gateway_env)


def spawn_gateway(prepared: GatewayHome, output: Path) -> subprocess.Popen[bytes]:
    """``headway serve --port 0`` in ``prepared``'s home, its output to ``output``."""
    with open(output, "wb") as out:
        return subprocess.Popen(
            [*_headway_command(), "serve", "--port", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(prepared.env),
            start_new_session=True,
        )


def listening_url(line: str) -> str:
    return line.removeprefix(GATEWAY_LISTENING).strip()


def start_gateway(
    workdir: Path,
    upstream_url: str,
    timeout: float = 30.0,
    *,
    provider: str = "anthropic",
    settings: Mapping[str, object] | None = None,
    env: dict[str, str] | None = None,
    name: str = "gateway",
) -> Server:
    """``headway serve --port 0`` in a fresh HEADWAY_HOME under ``workdir`` (see :func:`prepare_gateway`)."""
    prepared = prepare_gateway(workdir, upstream_url, provider=provider, settings=settings, env=env)
    output = workdir / f"{name}.out"
    proc = spawn_gateway(prepared, output)
    try:
        line = wait_for_line(proc, output, GATEWAY_LISTENING, timeout)
    except RuntimeError as exc:
        proc.kill()
        proc.wait(5)
        raise RuntimeError(
            f"headway serve did not start: {exc}\n{output.read_text(errors='replace')}"
        ) from exc
    return Server(name, proc, listening_url(line), output, key=prepared.key, home=prepared.home)
