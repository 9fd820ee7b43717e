"""``python -m benchmarks clients [--quick] [--json]``: upstream HTTP client candidates, side by side, in one process.

The gateway's upstream client is where most of its CPU per request goes (issue 12). This drives the same load
through each candidate against the same mock upstream and reports, for each:

- CPU µs per request: this process's CPU time (``time.process_time()``, all threads) over the measured window,
  divided by the requests completed in it. The mock is another process; the load loop around the client is the same
  few lines for every candidate, so differences are the clients'.
- requests/s at concurrency 20 (20 tasks, each sending back to back).

Each candidate gets a fresh client, a warm-up that is not measured, then a window of non-streaming requests and one
of streaming requests (every chunk read). Then 200 requests are opened at once, so the pool holds as many
connections as the client allows, and released; the same two windows run again straight after (``after_burst``),
with how many connections to the mock were still open. httpcore checks every idle connection on every request, so
its cost grows with the pool; this is what the ``after_burst`` figures show.

A candidate whose package is not installed is reported as skipped, never as failed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .client import Connection
from .load import PATH, body_for
from .processes import start_mock

__all__ = ["CANDIDATES", "installed", "main", "run_candidates"]

_CONCURRENCY = 20
_BURST = 200
_HEADERS = {
    "x-api-key": "sk-ant-bench-clients",
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
    "accept": "application/json",
}
_STREAM_BENCH = {"events": 3, "gap_ms": 0, "pre_gap_ms": 0}  # 9 events, as in the main benchmark's req/s
_BURST_BENCH = {"events": 2, "gap_ms": 20, "pre_gap_ms": 0}  # long enough for all 200 to be open together


class Client(Protocol):
    async def post(self, body: bytes, stream: bool) -> int: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Candidate:
    name: str
    package: str  # the distribution that must be installed
    describe: str
    make: Callable[[str], Client]


class _Httpx:
    def __init__(self, url: str, **kwargs: Any) -> None:
        import httpx

        self._url = url + PATH
        self._client = httpx.AsyncClient(**kwargs)

    async def post(self, body: bytes, stream: bool) -> int:
        if not stream:
            response = await self._client.post(self._url, content=body, headers=_HEADERS)
            return response.status_code
        async with self._client.stream("POST", self._url, content=body, headers=_HEADERS) as response:
            async for _ in response.aiter_raw():
                pass
            return response.status_code

    async def aclose(self) -> None:
        await self._client.aclose()


def _httpx_default(url: str) -> Client:
    return _Httpx(url)


def _httpx_gateway(url: str) -> Client:
    import httpx

    return _Httpx(
        url, limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=60)
    )


def _httpx_small_pool(url: str) -> Client:
    import httpx

    return _Httpx(url, limits=httpx.Limits(max_connections=200, max_keepalive_connections=10))


def _httpx_aiohttp(url: str) -> Client:
    from httpx_aiohttp import AiohttpTransport

    return _Httpx(url, transport=AiohttpTransport())


class _Aiohttp:
    def __init__(self, url: str) -> None:
        import aiohttp

        self._url = url + PATH
        self._session = aiohttp.ClientSession()

    async def post(self, body: bytes, stream: bool) -> int:
        async with self._session.post(self._url, data=body, headers=_HEADERS) as response:
            if stream:
                async for _ in response.content.iter_any():
                    pass
            else:
                await response.read()
            return response.status

    async def aclose(self) -> None:
        await self._session.close()


class _Headway:
    """The gateway's own upstream client (proxy/wire/upstream_client.py: aiohttp underneath, httpx.Response out)."""

    def __init__(self, url: str) -> None:
        from proxy.wire.upstream_client import Timeouts, UpstreamClient

        self._url = url + PATH
        self._client = UpstreamClient(lambda: Timeouts(connect=10.0, read=60.0), environ={})

    async def post(self, body: bytes, stream: bool) -> int:
        response = await self._client.send("POST", self._url, _HEADERS, body)
        try:
            async for _ in response.aiter_raw():
                pass
        finally:
            await response.aclose()
        return response.status_code

    async def aclose(self) -> None:
        await self._client.aclose()


class _Floor:
    """The benchmark's own asyncio client (no pool: one connection per task, reopened when none is free)."""

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._idle: list[Connection] = []

    async def post(self, body: bytes, stream: bool) -> int:
        connection = self._idle.pop() if self._idle else Connection(self._host, self._port, _HEADERS)
        response = await connection.request("POST", PATH, body, 30.0)
        self._idle.append(connection)
        return response.status

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


CANDIDATES = (
    Candidate("floor", "", "the benchmark's own asyncio client: what the machine and the mock allow", _Floor),
    Candidate(
        "httpx", "httpx", "httpx.AsyncClient() with its defaults (keep-alive 20 of 100)", _httpx_default
    ),
    Candidate(
        "httpx-gateway",
        "httpx",
        "httpx as the gateway configured it before aiohttp (keep-alive 50 of 200, 60 s)",
        _httpx_gateway,
    ),
    Candidate(
        "httpx-small-pool", "httpx", "httpx with max_keepalive_connections=10 (of 200)", _httpx_small_pool
    ),
    Candidate(
        "httpx-aiohttp",
        "httpx-aiohttp",
        "httpx over httpx_aiohttp.AiohttpTransport() (aiohttp's pool)",
        _httpx_aiohttp,
    ),
    Candidate("aiohttp", "aiohttp", "aiohttp.ClientSession() with its defaults (100 connections)", _Aiohttp),
    Candidate(
        "headway",
        "aiohttp",
        "the gateway's own: proxy.wire.upstream_client.UpstreamClient (aiohttp, answers as httpx.Response)",
        _Headway,
    ),
)


@dataclass(frozen=True)
class Window:
    seconds: float
    warm_seconds: float


def _established_to(port: int) -> int:
    """TCP connections from this machine to 127.0.0.1:``port`` that are established (from /proc/net/tcp)."""
    wanted = f"0100007F:{port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[2] == wanted and fields[3] == "01":
            count += 1
    return count


async def _load(client: Client, body: bytes, stream: bool, seconds: float) -> tuple[int, int]:
    """``_CONCURRENCY`` tasks sending back to back for ``seconds``; (completed, failed)."""
    deadline = time.monotonic() + seconds
    tally = {"ok": 0, "failed": 0}

    async def worker() -> None:
        while time.monotonic() < deadline:
            try:
                status = await client.post(body, stream)
            except Exception:  # any client's error counts the same
                tally["failed"] += 1
                await asyncio.sleep(0.01)
                continue
            tally["ok" if status == 200 else "failed"] += 1

    async with asyncio.timeout(seconds + 60):
        await asyncio.gather(*(worker() for _ in range(_CONCURRENCY)))
    return tally["ok"], tally["failed"]


async def _window(client: Client, stream: bool, window: Window) -> dict[str, Any]:
    body = body_for(stream, _STREAM_BENCH if stream else None)
    if window.warm_seconds:
        await _load(client, body, stream, window.warm_seconds)
    cpu_before = time.process_time()
    started = time.monotonic()
    done, failed = await _load(client, body, stream, window.seconds)
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu_before
    return {
        "rps": round(done / elapsed, 1) if elapsed else None,
        "cpu_us_per_request": round(cpu * 1e6 / done, 1) if done else None,
        "requests": done,
        "errors": failed,
    }


async def _burst(client: Client) -> int:
    """``_BURST`` slow streams at once, then all released; failed requests."""
    body = body_for(True, _BURST_BENCH)
    results = await asyncio.gather(*(client.post(body, True) for _ in range(_BURST)), return_exceptions=True)
    return sum(1 for r in results if r != 200)


async def _measure(candidate: Candidate, url: str, port: int, window: Window) -> dict[str, Any]:
    client = candidate.make(url)
    out: dict[str, Any] = {"describe": candidate.describe}
    if candidate.package:
        out["version"] = importlib.metadata.version(candidate.package)
    try:
        for kind, stream in (("json", False), ("stream", True)):
            out[kind] = {"fresh": await _window(client, stream, window)}
        for kind, stream in (("json", False), ("stream", True)):
            burst_errors = await _burst(client)
            kept = _established_to(port)
            after = await _window(client, stream, Window(window.seconds, 0.0))
            after["connections_after_burst"] = kept
            after["errors"] += burst_errors
            fresh = out[kind]["fresh"]["cpu_us_per_request"]
            cpu = after["cpu_us_per_request"]
            after["cpu_ratio"] = round(cpu / fresh, 3) if cpu and fresh else None
            out[kind]["after_burst"] = after
    finally:
        await client.aclose()
    return out


def installed(package: str) -> bool:
    """Whether the candidate's package is installed (an empty name: part of Headway or the standard library)."""
    if not package:
        return True
    try:
        importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


async def run_candidates(
    url: str, port: int, window: Window, progress: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for candidate in CANDIDATES:
        if not installed(candidate.package):
            progress(f"{candidate.name}: skipped ({candidate.package} is not installed)")
            results[candidate.name] = {"skipped": f"{candidate.package} is not installed"}
            continue
        progress(f"{candidate.name}: {candidate.describe}")
        results[candidate.name] = await _measure(candidate, url, port, window)
        await asyncio.sleep(0.2)  # let the mock see the closed connections go
    return results


def _render(result: dict[str, Any]) -> str:
    def cell(node: dict[str, Any]) -> str:
        cpu = node["cpu_us_per_request"]
        return f"{node['rps']:>7.0f} {'n/a' if cpu is None else f'{cpu:.0f}':>6}"

    out = [
        f"Upstream client candidates — {result['mode']} run, concurrency {result['concurrency']}, "
        f"{result['window_seconds']:g} s windows, Python {result['python']}",
        "CPU µs/request is this process's CPU over the window per completed request; "
        f"'after' is right after {result['burst']} requests were opened at once and released.",
        "",
        f"{'':<18}{'non-streaming':^30}{'streaming (9 events)':^30}  idle conns",
        f"{'':<18}" + f"{'fresh req/s µs':>15}{'after req/s µs':>15}" * 2 + "  after burst",
    ]
    for name, node in result["candidates"].items():
        if "skipped" in node:
            out.append(f"{name:<18}skipped: {node['skipped']}")
            continue
        cells = "".join(
            f"{cell(node[k]['fresh'])} {cell(node[k]['after_burst'])}" for k in ("json", "stream")
        )
        kept = node["json"]["after_burst"]["connections_after_burst"]
        ratios = ", ".join(f"{k} x{node[k]['after_burst']['cpu_ratio']}" for k in ("json", "stream"))
        out.append(f"{name:<18}{cells}  {kept:>5}   ({ratios})")
    out.append("")
    for name, node in result["candidates"].items():
        if "skipped" not in node:
            version = f" {node['version']}" if "version" in node else ""
            out.append(f"  {name}: {node['describe']}{version}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks clients", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (about 30 s in all)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument(
        "--seconds", type=float, help="length of each measured window (default 3, 0.75 with --quick)"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    seconds = args.seconds or (0.75 if args.quick else 3.0)
    window = Window(seconds, seconds / 3 if args.quick else min(0.5, seconds / 3))
    started = time.monotonic()

    def say(step: str) -> None:
        if not args.json:
            print(f"[{time.monotonic() - started:6.1f}s] {step}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="headway-clients-") as tmp:
        try:
            mock = start_mock(Path(tmp))
        except (RuntimeError, OSError) as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
        try:
            candidates = asyncio.run(run_candidates(mock.url, mock.port, window, say))
        finally:
            mock.stop()
    result = {
        "benchmark": "upstream-clients",
        "mode": "quick" if args.quick else "default",
        "concurrency": _CONCURRENCY,
        "burst": _BURST,
        "window_seconds": window.seconds,
        "candidates": candidates,
        "elapsed_s": round(time.monotonic() - started, 1),
        "python": platform.python_version(),
    }
    line = json.dumps(result, separators=(",", ":"))
    if not args.json:
        print(_render(result))
        print()
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
