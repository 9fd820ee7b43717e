"""``python -m benchmarks soak [--seconds N]``: minutes of mixed traffic with faults through ``headway serve``,
printing the gateway's memory, open file descriptors and threads over time. Not run in CI (a few-second smoke is).

Traffic, from ``--concurrency`` workers, each its own agent session on a keep-alive connection: mostly streamed
answers, some plain JSON ones, and faults the gateway must absorb — rate limits with ``retry-after`` (cooldowns,
fallback to the second account, sticky pins moving), 500s (bounded retries), streams the upstream cuts mid-way, and
agents that hang up mid-stream. A fault rides in the request body, so it hits every account the request tries: a
rate-limited request cools both accounts down, and requests arriving meanwhile get the gateway's own 429. One more client reads ``/status`` twice a second, as the tray does, and each sample
checks that ``data/state.json`` parses. A leak shows as RSS or descriptors that keep rising after the warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import Connection, HTTPError
from .load import Target, body_for
from .processes import Server, cli, rss_mb, start_gateway, start_mock

__all__ = ["main", "run_soak"]

_TIMEOUT = 30.0

# (kind, weight, bench knobs sent to the mock, stream)
_MIX: list[tuple[str, int, dict[str, Any], bool]] = [
    ("stream", 780, {"events": 12, "gap_ms": 2}, True),
    ("json", 100, {}, False),
    ("rate_limited_briefly", 20, {"status": 429, "retry_after": 0}, True),  # falls back; the pin moves
    ("rate_limited", 2, {"status": 429, "retry_after": 0.2}, True),  # every account cools down briefly
    ("server_error", 30, {"status": 500}, True),
    ("upstream_drop", 40, {"events": 12, "gap_ms": 2, "drop_after_events": 4}, True),
    ("agent_hangs_up", 40, {"events": 40, "gap_ms": 5}, True),
]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


@dataclass
class _Tally:
    requests: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)
    status_reads: int = 0
    status_errors: int = 0

    def count(self, outcome: str) -> None:
        self.requests += 1
        self.by_outcome[outcome] = self.by_outcome.get(outcome, 0) + 1


async def _worker(target: Target, n: int, deadline: float, tally: _Tally, rng: random.Random) -> None:
    headers = {**target.headers, "x-session-id": f"soak-{n}"}
    conn = Connection(target.host, target.port, headers)
    kinds = list(_MIX)
    weights = [k[1] for k in _MIX]
    try:
        while time.monotonic() < deadline:
            kind, _, bench, stream = rng.choices(kinds, weights)[0]
            body = body_for(stream, bench or None)
            hang_up = (
                asyncio.get_running_loop().call_later(0.05, conn.close) if kind == "agent_hangs_up" else None
            )
            try:
                response = await conn.request("POST", "/v1/messages", body, _TIMEOUT)
            except HTTPError:
                tally.count("agent_hung_up" if hang_up else "connection_lost")
                conn.close()
                continue
            except (TimeoutError, OSError) as exc:
                tally.count(f"client_error:{type(exc).__name__}")
                conn.close()
                await asyncio.sleep(0.1)
                continue
            finally:
                if hang_up is not None:
                    hang_up.cancel()
            tally.count(f"{kind}:{response.status}")
            if response.status >= 500 or response.status == 429:
                await asyncio.sleep(0.05)  # an agent backs off a little
    finally:
        conn.close()


async def _status_reader(target: Target, deadline: float, tally: _Tally) -> None:
    conn = Connection(target.host, target.port, target.headers)
    try:
        while time.monotonic() < deadline:
            try:
                response = await conn.request("GET", "/status", b"", 10.0)
                tally.status_reads += 1
                if response.status != 200:
                    tally.status_errors += 1
            except (HTTPError, TimeoutError, OSError):
                tally.status_errors += 1
                conn.close()
            await asyncio.sleep(0.5)
    finally:
        conn.close()


def _state_parses(home: Path | None) -> bool | None:
    if home is None:
        return None
    path = home / "data" / "state.json"
    try:
        json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return False
    return True


async def run_soak(
    gateway: Server, seconds: float, concurrency: int, interval: float, say: Any
) -> dict[str, Any]:
    target = Target.of("via", gateway, gateway.key)
    tally = _Tally()
    started = time.monotonic()
    deadline = started + seconds
    rng = random.Random(7)
    tasks = [
        asyncio.ensure_future(_worker(target, n, deadline, tally, random.Random(rng.random())))
        for n in range(concurrency)
    ]
    tasks.append(asyncio.ensure_future(_status_reader(target, deadline, tally)))
    samples: list[dict[str, Any]] = []
    unparsable = 0
    while True:
        now = time.monotonic()
        sample = {
            "t": round(now - started, 1),
            "requests": tally.requests,
            "rss_mb": round(rss_mb(gateway.pid), 1),
            "fds": open_fds(gateway.pid),
            "threads": threads(gateway.pid),
        }
        if _state_parses(gateway.home) is False:
            unparsable += 1
        samples.append(sample)
        say(
            f"t={sample['t']:>6.1f}s  requests={sample['requests']:>7}  rss={sample['rss_mb']:>6.1f} MB  "
            f"fds={sample['fds']:>4}  threads={sample['threads']:>3}"
        )
        if now >= deadline or not gateway.alive():
            break
        await asyncio.sleep(min(interval, max(0.0, deadline - now)))
    await asyncio.wait_for(asyncio.gather(*tasks), _TIMEOUT + 10)
    after_warmup = [s for s in samples if s["t"] >= min(30.0, seconds / 4)] or samples
    return {
        "benchmark": "headway-soak",
        "seconds": round(time.monotonic() - started, 1),
        "concurrency": concurrency,
        "requests": tally.requests,
        "outcomes": dict(sorted(tally.by_outcome.items())),
        "status_reads": tally.status_reads,
        "status_errors": tally.status_errors,
        "state_file_unparsable": unparsable,
        "gateway_alive": gateway.alive(),
        "samples": samples,
        "drift_after_warmup": {
            "rss_mb": round(after_warmup[-1]["rss_mb"] - after_warmup[0]["rss_mb"], 1),
            "fds": after_warmup[-1]["fds"] - after_warmup[0]["fds"],
            "threads": after_warmup[-1]["threads"] - after_warmup[0]["threads"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks soak", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=300.0, help="how long to run the traffic (default 300)"
    )
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent agent sessions (default 20)")
    parser.add_argument(
        "--interval", type=float, default=None, help="seconds between samples (default: 20 samples)"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    interval = args.interval if args.interval is not None else max(0.5, args.seconds / 20)
    began = time.monotonic()

    def say(line: str) -> None:
        if not args.json:
            print(f"[{time.monotonic() - began:6.1f}s] {line}", file=sys.stderr, flush=True)

    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="headway-soak-") as tmp:
        try:
            mock = start_mock(Path(tmp))
            servers.append(mock)
            gateway = start_gateway(Path(tmp), mock.url)
            servers.append(gateway)
            assert gateway.home is not None
            cli(
                gateway.home,
                "accounts",
                "add",
                "anthropic",
                "--label",
                "bench-2",
                "--api-key-stdin",
                stdin="sk-ant-bench-2222222222\n",
            )
            say(
                f"gateway pid {gateway.pid} on {gateway.url}; {args.concurrency} agents for {args.seconds:.0f}s"
            )
            result = asyncio.run(run_soak(gateway, args.seconds, args.concurrency, interval, say))
        except (RuntimeError, OSError, TimeoutError) as exc:
            print(f"soak failed: {exc}", file=sys.stderr)
            for server in servers:
                print(f"--- {server.name} output ---\n{server.log_tail()}", file=sys.stderr)
            return 1
        finally:
            for server in reversed(servers):
                server.stop()
    if not args.json:
        drift = result["drift_after_warmup"]
        print(
            f"{result['requests']} requests in {result['seconds']}s; outcomes {result['outcomes']}\n"
            f"after warm-up: RSS {drift['rss_mb']:+.1f} MB, fds {drift['fds']:+d}, threads {drift['threads']:+d}; "
            f"status reads {result['status_reads']} ({result['status_errors']} failed); "
            f"state.json unparsable {result['state_file_unparsable']} time(s)"
        )
    print(json.dumps(result, separators=(",", ":")))
    ok = result["gateway_alive"] and result["status_errors"] == 0 and result["state_file_unparsable"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
