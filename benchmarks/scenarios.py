"""The measurements. Each one runs the same load straight at the mock ("direct") and through the gateway ("via").

Every loop is bounded twice: by a count (requests per worker) and by a time budget, after which workers stop
starting requests; each request has its own timeout as well.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .client import Arrival, Connection, HTTPError, Response
from .processes import Server, cpu_seconds, machine_busy_seconds, rss_mb
from .stats import added, summary

__all__ = ["DEFAULT", "QUICK", "Profile", "Target", "run_all"]

_PATH = "/v1/messages"
_REQUEST_TIMEOUT = 30.0
_CONTENT_EVENTS = frozenset(
    {b"content_block_start", b"content_block_delta", b"content_block_stop", b"message_delta", b"message_stop"}
)
_SAME_SEND_NS = 1_000_000  # events written less than 1 ms apart were not sent "with a gap"


@dataclass(frozen=True)
class Profile:
    """How much of each measurement to take. Counts are per side (direct, via)."""

    name: str
    warmup: int  # requests per worker left out of the TTFB figures
    ttfb_c1: int  # measured requests at concurrency 1 (short streams, no gaps)
    ttfb_c10: int  # measured requests per worker at concurrency 10 (streams paced like token output)
    ttfb_events: int
    delay_c1: int  # streams at concurrency 1
    delay_c10: int  # streams per worker at concurrency 10
    delay_events: int
    gap_ms: float  # the pace of streamed events in the paced scenarios
    rps_seconds: float
    rps_warm_seconds: float
    open_streams: int
    open_gap_ms: float
    open_events: int
    budget_seconds: float  # per measurement and side; workers start no request after it


QUICK = Profile(
    name="quick",
    warmup=2,
    ttfb_c1=60,
    ttfb_c10=12,
    ttfb_events=3,
    delay_c1=2,
    delay_c10=1,
    delay_events=20,
    gap_ms=15,
    rps_seconds=0.75,
    rps_warm_seconds=0.25,
    open_streams=100,
    open_gap_ms=200,
    open_events=6,
    budget_seconds=10,
)

DEFAULT = Profile(
    name="default",
    warmup=3,
    ttfb_c1=400,
    ttfb_c10=60,
    ttfb_events=3,
    delay_c1=15,
    delay_c10=6,
    delay_events=20,
    gap_ms=15,
    rps_seconds=3.0,
    rps_warm_seconds=0.5,
    open_streams=100,
    open_gap_ms=200,
    open_events=20,
    budget_seconds=30,
)


@dataclass(frozen=True)
class Target:
    """Where requests go, and with which headers: the mock itself, or the gateway with its access key."""

    name: str
    host: str
    port: int
    headers: dict[str, str]

    @classmethod
    def of(cls, name: str, server: Server, key: str) -> Target:
        headers = {
            "x-api-key": key,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": "headway-benchmark/1",
        }
        return cls(name, server.host, server.port, headers)


def _body(stream: bool, bench: dict[str, Any] | None = None) -> bytes:
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Reply with a short greeting."}],
        "stream": stream,
    }
    if bench:
        request["bench"] = bench
    return json.dumps(request).encode()


@dataclass
class _Run:
    responses: list[Response]
    errors: int
    completed_at: list[int]


async def _workers(
    target: Target,
    concurrency: int,
    per_worker: int,
    budget: float,
    body: bytes,
    *,
    think_ms: float = 0.0,
    stagger_s: float = 0.0,
    seed: int = 1,
    skip: int = 0,
    on_first_body: Callable[[], None] | None = None,
    on_done: Callable[[], None] | None = None,
) -> _Run:
    """``concurrency`` workers, each on its own keep-alive connection, each sending up to ``per_worker`` requests.

    Each worker's first ``skip`` successful responses (new connections, cold pools) are left out of the result.
    """
    deadline = time.monotonic() + budget
    run = _Run([], 0, [])

    async def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        connection = Connection(target.host, target.port, target.headers)
        try:
            if stagger_s:
                await asyncio.sleep(stagger_s * index / concurrency)
            for n in range(per_worker):
                if time.monotonic() >= deadline:
                    break
                try:
                    response = await connection.request("POST", _PATH, body, _REQUEST_TIMEOUT, on_first_body)
                except (HTTPError, OSError, TimeoutError):
                    run.errors += 1
                    await asyncio.sleep(0.01)  # a refusing server must not turn this into a busy loop
                    continue
                finally:
                    if on_done is not None:
                        on_done()
                if response.status != 200:
                    run.errors += 1
                    continue
                if n >= skip:
                    run.responses.append(response)
                    run.completed_at.append(response.done_ns)
                if think_ms:
                    await asyncio.sleep(rng.uniform(0, think_ms) / 1000)
        finally:
            connection.close()

    async with asyncio.timeout(budget + _REQUEST_TIMEOUT + 5), asyncio.TaskGroup() as group:
        for index in range(concurrency):
            group.create_task(worker(index), name=f"bench-{target.name}-worker-{index}")
    return run


# --------------------------------------------------------------------------------------------- TTFB


async def _ttfb(target: Target, profile: Profile, concurrency: int) -> tuple[list[float], int]:
    """Request sent → first body byte. Alone: short streams back to back. With 10 workers: streams paced at
    ``gap_ms``, so each request meets nine others streaming at a token-like pace."""
    gap = 0.0 if concurrency == 1 else profile.gap_ms
    body = _body(True, {"events": profile.ttfb_events, "gap_ms": gap, "pre_gap_ms": 0})
    stream_ms = gap * (profile.ttfb_events + 4)
    per_worker = (profile.ttfb_c1 if concurrency == 1 else profile.ttfb_c10) + profile.warmup
    run = await _workers(
        target,
        concurrency,
        per_worker,
        profile.budget_seconds,
        body,
        think_ms=5.0,
        stagger_s=stream_ms / 1000,
        skip=profile.warmup,
    )
    return [(r.first_body_ns - r.started_ns) / 1e6 for r in run.responses if r.first_body_ns], run.errors


# --------------------------------------------------------------------------------------------- per-event delay


@dataclass
class _EventFigures:
    content_delay_ms: list[float]
    held_delay_ms: list[float]
    content_events: int = 0
    coalesced_content: int = 0
    held_events: int = 0
    held_with_first_content: int = 0


def _events_of(responses: list[Response]) -> _EventFigures:
    """Split each stream at its first content event: before it the held events, from it on the streamed ones.

    A streamed event is coalesced when it completed in the same read as another streamed event sent at least 1 ms
    apart from it. Held events are counted apart, with how many arrived within 1 ms of the first content event.
    """
    figures = _EventFigures([], [])
    for response in responses:
        events = response.events
        first = next((i for i, e in enumerate(events) if e.name in _CONTENT_EVENTS), len(events))
        held, streamed = events[:first], events[first:]
        by_read: dict[int, list[Arrival]] = {}
        for event in streamed:
            by_read.setdefault(event.read_no, []).append(event)
        for event in held:
            figures.held_events += 1
            figures.held_delay_ms.append((event.arrived_ns - event.sent_ns) / 1e6)
            if streamed and abs(streamed[0].arrived_ns - event.arrived_ns) < _SAME_SEND_NS:
                figures.held_with_first_content += 1
        for event in streamed:
            figures.content_events += 1
            figures.content_delay_ms.append((event.arrived_ns - event.sent_ns) / 1e6)
            if any(
                other is not event and abs(other.sent_ns - event.sent_ns) >= _SAME_SEND_NS
                for other in by_read[event.read_no]
            ):
                figures.coalesced_content += 1
    return figures


async def _event_delay(target: Target, profile: Profile, concurrency: int) -> tuple[_EventFigures, int]:
    gap = profile.gap_ms
    body = _body(True, {"events": profile.delay_events, "gap_ms": gap, "pre_gap_ms": gap})
    stream_ms = gap * (profile.delay_events + 5)
    per_worker = profile.delay_c1 if concurrency == 1 else profile.delay_c10
    run = await _workers(
        target,
        concurrency,
        per_worker,
        profile.budget_seconds,
        body,
        think_ms=gap if concurrency > 1 else 0.0,
        stagger_s=stream_ms / 1000,
    )
    return _events_of(run.responses), run.errors


# --------------------------------------------------------------------------------------------- requests/s


async def _rps(
    target: Target, profile: Profile, concurrency: int, stream: bool, pid: int | None
) -> tuple[float, int, float | None]:
    body = _body(stream, {"events": 3, "gap_ms": 0, "pre_gap_ms": 0} if stream else None)
    cpu_before = cpu_seconds(pid) if pid else 0.0
    started = time.monotonic_ns()
    total = profile.rps_seconds + profile.rps_warm_seconds
    run = await _workers(target, concurrency, 1_000_000, total, body)
    window_start = started + int(profile.rps_warm_seconds * 1e9)
    window_end = started + int(total * 1e9)
    counted = sum(1 for t in run.completed_at if window_start <= t <= window_end)
    rps = counted / profile.rps_seconds
    cpu_ms = None
    if pid and run.responses:
        cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / len(run.responses)
    return rps, run.errors, cpu_ms


# --------------------------------------------------------------------------------------------- memory


async def _open_streams(target: Target, profile: Profile, pid: int) -> tuple[float, int, int]:
    """RSS of the gateway while ``open_streams`` slow streams are open through it: the peak of samples."""
    body = _body(True, {"events": profile.open_events, "gap_ms": profile.open_gap_ms, "pre_gap_ms": 0})
    state = {"open": 0, "peak_open": 0, "peak_rss": 0.0}
    sampling = asyncio.Event()

    def opened() -> None:
        state["open"] += 1

    def closed() -> None:
        state["open"] -= 1

    async def sample() -> None:
        stop_at = time.monotonic() + profile.budget_seconds
        while not sampling.is_set() and time.monotonic() < stop_at:
            if state["open"] >= state["peak_open"]:
                state["peak_open"] = state["open"]
                state["peak_rss"] = max(state["peak_rss"], rss_mb(pid))
            await asyncio.sleep(0.05)

    async with asyncio.TaskGroup() as group:
        sampler = group.create_task(sample(), name="bench-rss-sampler")
        run_task = group.create_task(
            _workers(
                target,
                profile.open_streams,
                1,
                profile.budget_seconds,
                body,
                on_first_body=opened,
                on_done=closed,
            ),
            name="bench-open-streams",
        )
        run = await run_task
        sampling.set()
        await sampler
    return float(state["peak_rss"]), int(state["peak_open"]), run.errors


# --------------------------------------------------------------------------------------------- all of it


async def _warm(target: Target) -> int:
    errors = 0
    for stream in (True, False):
        body = _body(stream, {"events": 3, "gap_ms": 0} if stream else None)
        errors += (await _workers(target, 2, 5, 10.0, body)).errors
    return errors


def _pair(direct: list[float], via: list[float]) -> dict[str, Any]:
    d, v = summary(direct), summary(via)
    return {"direct": d, "via": v, "added": added(v, d)}


async def run_all(
    mock: Server, gateway: Server, profile: Profile, progress: Callable[[str], None]
) -> dict[str, Any]:
    direct = Target.of("direct", mock, "sk-ant-bench-direct")
    via = Target.of("via", gateway, gateway.key)
    sides = (direct, via)
    errors = {"direct": 0, "via": 0}
    result: dict[str, Any] = {}

    progress("warm-up")
    for target in sides:
        errors[target.name] += await _warm(target)
    await asyncio.sleep(0.5)
    idle_rss = rss_mb(gateway.pid)
    pids = (os.getpid(), mock.pid, gateway.pid)
    own_before = sum(cpu_seconds(pid) for pid in pids)
    busy_before = machine_busy_seconds()
    measured_from = time.monotonic()
    load_before = _loadavg()

    result["ttfb_ms"] = {}
    for concurrency in (1, 10):
        progress(f"time to first byte, concurrency {concurrency}")
        samples: dict[str, list[float]] = {}
        for target in sides:
            samples[target.name], failed = await _ttfb(target, profile, concurrency)
            errors[target.name] += failed
        result["ttfb_ms"][f"c{concurrency}"] = _pair(samples["direct"], samples["via"])

    result["event_delay_ms"] = {}
    figures: dict[str, list[_EventFigures]] = {"direct": [], "via": []}
    for concurrency in (1, 10):
        progress(f"per-event delay, concurrency {concurrency}")
        delays: dict[str, list[float]] = {}
        for target in sides:
            found, failed = await _event_delay(target, profile, concurrency)
            errors[target.name] += failed
            figures[target.name].append(found)
            delays[target.name] = found.content_delay_ms
        result["event_delay_ms"][f"c{concurrency}"] = _pair(delays["direct"], delays["via"])

    def total(side: str, name: str) -> int:
        return sum(getattr(f, name) for f in figures[side])

    result["content_events"] = {side: total(side, "content_events") for side in figures}
    result["coalesced_content_events"] = total("via", "coalesced_content")
    result["coalesced_content_events_direct"] = total("direct", "coalesced_content")
    held_via = [d for f in figures["via"] for d in f.held_delay_ms]
    held_direct = [d for f in figures["direct"] for d in f.held_delay_ms]
    result["held_events"] = {
        "pre_gap_ms": profile.gap_ms,
        "count": {"direct": total("direct", "held_events"), "via": total("via", "held_events")},
        "released_with_first_content": {
            "direct": total("direct", "held_with_first_content"),
            "via": total("via", "held_with_first_content"),
        },
        "delay_ms": _pair(held_direct, held_via),
    }

    result["rps"] = {}
    cpu: dict[str, float | None] = {}
    for kind, stream in (("json", False), ("stream", True)):
        result["rps"][kind] = {}
        for concurrency in (1, 10):
            progress(f"requests/s, {kind}, concurrency {concurrency}")
            rates: dict[str, float] = {}
            for target in sides:
                pid = gateway.pid if target is via else None
                rate, failed, cpu_ms = await _rps(target, profile, concurrency, stream, pid)
                errors[target.name] += failed
                rates[target.name] = round(rate, 1)
                if cpu_ms is not None and concurrency == 10:
                    cpu[kind] = round(cpu_ms, 3)
            ratio = rates["via"] / rates["direct"] if rates["direct"] else None
            result["rps"][kind][f"c{concurrency}"] = {
                **rates,
                "via_over_direct": None if ratio is None else round(ratio, 3),
            }
    result["gateway_cpu_ms_per_request"] = cpu

    progress(f"memory with {profile.open_streams} open streams")
    peak_rss, peak_open, failed = await _open_streams(via, profile, gateway.pid)
    errors["via"] += failed
    await asyncio.sleep(0.5)
    result["rss_mb"] = {
        "idle": round(idle_rss, 1),
        "with_open_streams": round(peak_rss, 1),
        "open_streams": peak_open,
        "after": round(rss_mb(gateway.pid), 1),
    }
    result["errors"] = errors
    seconds = time.monotonic() - measured_from
    others = machine_busy_seconds() - busy_before - (sum(cpu_seconds(pid) for pid in pids) - own_before)
    cpus = os.cpu_count() or 1
    result["machine"] = {
        "cpus": cpus,
        "loadavg_1m_before": load_before,
        "other_processes_cpu_percent": round(max(0.0, others) * 100 / (seconds * cpus), 1),
    }
    return result


def _loadavg() -> float:
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])
