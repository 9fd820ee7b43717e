"""``python -m benchmarks shared-state [--quick] [--json]``: what team mode's shared state costs per request.

Two `headway serve` processes on the same mock upstream: one alone, one with ``HEADWAY_SHARED_STATE_URL`` pointing
at a redis-server started here on a free port (same host). The mock answers every request with rate-limit headers,
so every request through the shared gateway changes its quota book and publishes a snapshot to Redis (coalesced per
account) — the busiest realistic case. Figures:

- ``latency_ms``: request written → whole (non-streamed) answer read, concurrency 1, alternating between the two
  gateways in rounds so that drift of the machine hits both alike; p50 / p99 of each and the difference (aim: the
  added p50 under 0.5 ms, the issue's bound).
- ``cpu_ms_per_request``: each gateway's CPU time per request over a concurrency-10 run (Redis's own CPU is listed
  apart).
- ``hot_path_us``: in this process, the books' change calls with team mode's listeners attached vs without (what a
  request pays on the loop; publishing happens in the background).
- ``published``: what the shared gateway published to Redis during the run, per request.

Needs redis-server on PATH (Debian's package: scripts/install-test-deps installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .client import Connection, HTTPError
from .processes import Server, cpu_seconds, start_gateway, start_mock
from .stats import summary

_BODY = json.dumps(
    {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
).encode()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not answer PING")


def _headers(server: Server) -> dict[str, str]:
    return {
        "x-api-key": server.key or "",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "user-agent": "headway-benchmark/1",
    }


def _status(server: Server) -> dict[str, Any]:
    import httpx

    response = httpx.get(f"{server.url}/status", headers={"x-api-key": server.key or ""}, timeout=5)
    response.raise_for_status()
    return dict(response.json())


async def _latencies(server: Server, count: int) -> list[float]:
    connection = Connection(server.host, server.port, _headers(server))
    found: list[float] = []
    try:
        for _ in range(count):
            response = await connection.request("POST", "/v1/messages", _BODY, 30.0, None)
            if response.status != 200:
                raise RuntimeError(f"{server.name} answered {response.status}")
            found.append((response.done_ns - response.started_ns) / 1e6)
    finally:
        connection.close()
    return found


async def _cpu_per_request(server: Server, seconds: float, workers: int = 10) -> float:
    done = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done
        connection = Connection(server.host, server.port, _headers(server))
        try:
            while time.monotonic() < deadline:
                try:
                    response = await connection.request("POST", "/v1/messages", _BODY, 30.0, None)
                except (HTTPError, OSError):
                    continue
                if response.status == 200:
                    done += 1
        finally:
            connection.close()

    before = cpu_seconds(server.pid)
    await asyncio.gather(*(worker() for _ in range(workers)))
    return (cpu_seconds(server.pid) - before) * 1000 / max(1, done)


def _hot_path(calls: int) -> dict[str, float]:
    """Microseconds per quota update + cooldown + pin on the books, with and without team mode's listeners."""
    from proxy.routing.quota import Window
    from proxy.routing.spend import SpendBook
    from proxy.routing.state import RuntimeState
    from proxy.secrets.members import MemberBook
    from proxy.shared.link import SharedState
    from proxy.shared.records import Names

    windows = [Window("requests", limit=4000, remaining=3999, resets_at=time.time() + 60)]

    def run(state: RuntimeState) -> float:
        started = time.perf_counter()
        for i in range(calls):
            state.quota.update("bench", windows, float(i))
            state.router.pin(f"s{i % 100}", "bench", float(i))
        return (time.perf_counter() - started) / calls * 1e6

    alone = RuntimeState()
    shared = RuntimeState()
    link = SharedState(
        "redis://127.0.0.1:1/0",
        Names("bench"),
        shared,
        MemberBook(),
        SpendBook(),
        pin_ttl=lambda: 3600.0,
        on_change=lambda: None,
        on_members=lambda: None,
    )

    async def attached() -> float:
        link.attach()  # never connected: only what a request pays, the queueing
        return run(shared)

    return {"alone": round(run(alone), 3), "shared": round(asyncio.run(attached()), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks shared-state", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small counts (seconds)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    rounds, per_round, cpu_seconds_each = (4, 50, 1.0) if args.quick else (10, 200, 4.0)
    servers: list[Server] = []
    redis: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="headway-bench-shared-") as tmp:
        workdir = Path(tmp)
        try:
            mock = start_mock(workdir)
            servers.append(mock)
            redis, redis_url = _start_redis(workdir)
            alone = start_gateway(workdir, mock.url, name="alone")
            servers.append(alone)
            shared = start_gateway(
                workdir, mock.url, env={"HEADWAY_SHARED_STATE_URL": redis_url}, name="shared"
            )
            servers.append(shared)
            deadline = time.monotonic() + 10
            while not (_status(shared)["team"]["shared_state"] or {}).get("connected"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the shared gateway did not connect to Redis")
                time.sleep(0.05)
            latency: dict[str, list[float]] = {"alone": [], "shared": []}

            async def measure() -> dict[str, float]:
                for server in (alone, shared):  # warm-up: connections, pools, first quota snapshot
                    await _latencies(server, 20)
                published_before = _status(shared)["team"]["shared_state"]["published"]
                for _ in range(rounds):
                    latency["alone"] += await _latencies(alone, per_round)
                    latency["shared"] += await _latencies(shared, per_round)
                published = _status(shared)["team"]["shared_state"]["published"] - published_before
                redis_cpu_before = cpu_seconds(redis.pid) if redis is not None else 0.0
                cpu_alone = await _cpu_per_request(alone, cpu_seconds_each)
                cpu_shared = await _cpu_per_request(shared, cpu_seconds_each)
                redis_cpu = (cpu_seconds(redis.pid) - redis_cpu_before) if redis is not None else 0.0
                return {
                    "cpu_alone": cpu_alone,
                    "cpu_shared": cpu_shared,
                    "published_per_request": published / (rounds * per_round),
                    "redis_cpu_s": redis_cpu,
                }

            measured = asyncio.run(measure())
        except (RuntimeError, OSError, TimeoutError) as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            for server in servers:
                print(f"--- {server.name} output ---\n{server.log_tail()}", file=sys.stderr)
            return 1
        finally:
            for server in reversed(servers):
                server.stop()
            if redis is not None:
                redis.terminate()
                redis.wait(10)
    a, s = summary(latency["alone"]), summary(latency["shared"])
    result: dict[str, Any] = {
        "benchmark": "headway-shared-state-cost",
        "mode": "quick" if args.quick else "default",
        "requests_per_gateway": rounds * per_round,
        "latency_ms": {
            "alone": a,
            "shared": s,
            "added_p50": round(s["p50"] - a["p50"], 3),
            "added_p99": round(s["p99"] - a["p99"], 3),
        },
        "cpu_ms_per_request": {
            "alone": round(measured["cpu_alone"], 3),
            "shared": round(measured["cpu_shared"], 3),
        },
        "redis_cpu_seconds": round(measured["redis_cpu_s"], 3),
        "published_per_request": round(measured["published_per_request"], 3),
        "hot_path_us": _hot_path(20_000 if args.quick else 200_000),
    }
    result["aim_added_p50_under_0_5_ms"] = result["latency_ms"]["added_p50"] < 0.5
    line = json.dumps(result, separators=(",", ":"))
    if not args.json:
        lat = result["latency_ms"]
        print(f"latency p50 ms  alone {a['p50']:.3f}  shared {s['p50']:.3f}  added {lat['added_p50']:+.3f}")
        print(f"latency p99 ms  alone {a['p99']:.3f}  shared {s['p99']:.3f}  added {lat['added_p99']:+.3f}")
        cpu = result["cpu_ms_per_request"]
        print(f"gateway CPU ms/request  alone {cpu['alone']:.3f}  shared {cpu['shared']:.3f}")
        print(f"published to Redis per request: {result['published_per_request']}")
        hot = result["hot_path_us"]
        print(f"books' change calls, µs: alone {hot['alone']}  with listeners {hot['shared']}")
        print(f"aim (added p50 < 0.5 ms): {'ok' if result['aim_added_p50_under_0_5_ms'] else 'MISS'}")
        print()
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
