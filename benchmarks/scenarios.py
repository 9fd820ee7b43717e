"""The measurements. Each one runs the same load straight at the mock ("direct") and through each gateway ("via":
``headway serve``; "peer": another gateway to compare with, when one is given).

The latency measurements (first byte, first content, per-event delay) also run through a bare byte relay
("floor": ``benchmarks/floor.py``), which shows what any extra Python hop adds on this machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .burst import after_burst, open_streams
from .client import Arrival, Response
from .load import Target, body_for, warm, workers
from .processes import Server, cpu_seconds, machine_busy_seconds, rss_mb
from .stats import added, summary

__all__ = ["DEFAULT", "QUICK", "Profile", "run_all"]

_CONTENT_EVENTS = frozenset(
    {b"content_block_start", b"content_block_delta", b"content_block_stop", b"message_delta", b"message_stop"}
)
_FIRST_CONTENT = b"content_block_delta"  # the first event that carries text
_SAME_SEND_NS = 1_000_000  # events written less than 1 ms apart were not sent "with a gap"
_RPS_LEVELS = {"json": (1, 10, 20), "stream": (1, 10)}
_CPU_LEVEL = {"json": 20, "stream": 10}  # the run each kind's headline CPU/request comes from


@dataclass(frozen=True)
class Profile:
    """How much of each measurement to take. Counts are per side (direct, via, peer)."""

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
    open_streams: int  # the burst: this many streams opened at once, each on its own connection
    open_gap_ms: float
    open_events: int
    cold_starts: int  # spawns of `headway serve` for the cold-start figure (the median is reported)
    budget_seconds: float  # per measurement and side; workers start no request after it
    # The latency figures are taken in this many rounds, each going through every side in turn, and pooled: a machine
    # that gets slower or faster during the run then moves every side alike instead of the side measured last.
    latency_rounds: int = 1


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
    open_streams=200,
    open_gap_ms=200,
    open_events=6,
    cold_starts=1,
    budget_seconds=10,
    latency_rounds=2,  # pooled rounds exercised by the smoke test too
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
    open_streams=200,
    open_gap_ms=200,
    open_events=20,
    cold_starts=3,
    budget_seconds=30,
    latency_rounds=3,
)


@dataclass(frozen=True)
class Gateway:
    """A gateway under measurement: its side's name ("via", "peer"), its process, and how to reach it."""

    side: str
    server: Server
    target: Target


def _share(count: int, rounds: int) -> int:
    """One round's part of ``count`` (rounded up: the rounds together take at least ``count``)."""
    return -(-count // rounds)


# --------------------------------------------------------------------------------------------- first byte, content


async def _first(
    target: Target, profile: Profile, concurrency: int, rounds: int = 1
) -> tuple[list[float], list[float], int]:
    """Request written → first body byte, and → arrival of the first content event (``content_block_delta``).

    Alone: short streams back to back. With 10 workers: streams paced at ``gap_ms``, so each request meets nine
    others streaming at a token-like pace. Headway holds ``message_start`` until content arrives, so the first
    byte through it is the first content; the first-content figure compares like with like on every side.
    """
    gap = 0.0 if concurrency == 1 else profile.gap_ms
    body = body_for(True, {"events": profile.ttfb_events, "gap_ms": gap, "pre_gap_ms": 0})
    stream_ms = gap * (profile.ttfb_events + 4)
    per_worker = _share(profile.ttfb_c1 if concurrency == 1 else profile.ttfb_c10, rounds) + profile.warmup
    run = await workers(
        target,
        concurrency,
        per_worker,
        profile.budget_seconds,
        body,
        think_ms=5.0,
        stagger_s=stream_ms / 1000,
        skip=profile.warmup,
    )
    ttfb = [(r.first_body_ns - r.started_ns) / 1e6 for r in run.responses if r.first_body_ns]
    content = []
    for r in run.responses:
        first = next((e for e in r.events if e.name == _FIRST_CONTENT), None)
        if first is not None:
            content.append((first.arrived_ns - r.started_ns) / 1e6)
    return ttfb, content, run.errors


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


async def _event_delay(
    target: Target, profile: Profile, concurrency: int, rounds: int = 1
) -> tuple[_EventFigures, int]:
    gap = profile.gap_ms
    body = body_for(True, {"events": profile.delay_events, "gap_ms": gap, "pre_gap_ms": gap})
    stream_ms = gap * (profile.delay_events + 5)
    per_worker = _share(profile.delay_c1 if concurrency == 1 else profile.delay_c10, rounds)
    run = await workers(
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


async def rps(
    target: Target, profile: Profile, concurrency: int, stream: bool, pid: int | None
) -> tuple[float, int, float | None]:
    """Requests/s completed in the window after the warm-up, and the gateway's CPU ms per request over the run."""
    body = body_for(stream, {"events": 3, "gap_ms": 0, "pre_gap_ms": 0} if stream else None)
    cpu_before = cpu_seconds(pid) if pid else 0.0
    started = time.monotonic_ns()
    total = profile.rps_seconds + profile.rps_warm_seconds
    run = await workers(target, concurrency, 1_000_000, total, body)
    window_start = started + int(profile.rps_warm_seconds * 1e9)
    window_end = started + int(total * 1e9)
    counted = sum(1 for t in run.completed_at if window_start <= t <= window_end)
    rate = counted / profile.rps_seconds
    cpu_ms = None
    if pid and run.responses:
        cpu_ms = (cpu_seconds(pid) - cpu_before) * 1000 / len(run.responses)
    return rate, run.errors, cpu_ms


# --------------------------------------------------------------------------------------------- all of it


def _pair(samples: dict[str, list[float]]) -> dict[str, Any]:
    """Each side's distribution, and what each gateway adds to direct (``added`` for via, ``peer_added``)."""
    out = {side: summary(values) for side, values in samples.items()}
    for side in samples:
        if side != "direct":
            out["added" if side == "via" else f"{side}_added"] = added(out[side], out["direct"])
    return out


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


async def run_all(
    mock: Server,
    gateways: list[Gateway],
    profile: Profile,
    progress: Callable[[str], None],
    floor: Server | None = None,
) -> dict[str, Any]:
    """Every measurement, direct first and then each gateway in turn. ``gateways[0]`` is Headway ("via").

    ``floor``, a bare relay in front of the mock (``benchmarks/floor.py``), runs the latency measurements after
    direct and before the gateways: its figures and ``floor_added`` sit beside each gateway's.
    """
    direct = Target.of("direct", mock, "sk-ant-bench-direct")
    sides: list[tuple[str, Target, int | None]] = [("direct", direct, None)]
    sides += [(g.side, g.target, g.server.pid) for g in gateways]
    latency_sides = sides[:1]
    if floor is not None:
        latency_sides.append(("floor", Target.of("floor", floor, "sk-ant-bench-direct"), None))
    latency_sides += sides[1:]
    errors = {side: 0 for side, _, _ in latency_sides}
    result: dict[str, Any] = {
        "sides": [side for side, _, _ in sides],
        "latency_sides": [side for side, _, _ in latency_sides],
    }

    progress("warm-up")
    for side, target, _ in latency_sides:
        errors[side] += await warm(target)
    await asyncio.sleep(0.5)
    idle_rss = {g.side: rss_mb(g.server.pid) for g in gateways}
    helpers = (mock.pid,) if floor is None else (mock.pid, floor.pid)
    pids = (os.getpid(), *helpers, *(g.server.pid for g in gateways))
    own_before = sum(cpu_seconds(pid) for pid in pids)
    busy_before = machine_busy_seconds()
    measured_from = time.monotonic()
    load_before = _loadavg()

    result["ttfb_ms"] = {}
    result["first_content_ms"] = {}
    rounds = profile.latency_rounds
    for concurrency in (1, 10):
        progress(f"time to first byte and first content, concurrency {concurrency}")
        ttfb: dict[str, list[float]] = {side: [] for side, _, _ in latency_sides}
        content: dict[str, list[float]] = {side: [] for side, _, _ in latency_sides}
        for _ in range(rounds):
            for side, target, _ in latency_sides:
                first_bytes, contents, failed = await _first(target, profile, concurrency, rounds)
                ttfb[side] += first_bytes
                content[side] += contents
                errors[side] += failed
        result["ttfb_ms"][f"c{concurrency}"] = _pair(ttfb)
        result["first_content_ms"][f"c{concurrency}"] = _pair(content)

    result["event_delay_ms"] = {}
    figures: dict[str, list[_EventFigures]] = {side: [] for side, _, _ in latency_sides}
    for concurrency in (1, 10):
        progress(f"per-event delay, concurrency {concurrency}")
        delays: dict[str, list[float]] = {side: [] for side, _, _ in latency_sides}
        for _ in range(rounds):
            for side, target, _ in latency_sides:
                found, failed = await _event_delay(target, profile, concurrency, rounds)
                errors[side] += failed
                figures[side].append(found)
                delays[side] += found.content_delay_ms
        result["event_delay_ms"][f"c{concurrency}"] = _pair(delays)

    def total(side: str, name: str) -> int:
        return sum(getattr(f, name) for f in figures[side])

    result["content_events"] = {side: total(side, "content_events") for side in figures}
    result["coalesced_content_events"] = total("via", "coalesced_content")
    result["coalesced_content_events_direct"] = total("direct", "coalesced_content")
    result["coalesced_content_events_by_side"] = {side: total(side, "coalesced_content") for side in figures}
    result["held_events"] = {
        "pre_gap_ms": profile.gap_ms,
        "count": {side: total(side, "held_events") for side in figures},
        "released_with_first_content": {side: total(side, "held_with_first_content") for side in figures},
        "delay_ms": _pair({side: [d for f in figures[side] for d in f.held_delay_ms] for side in figures}),
    }

    result["rps"] = {}
    cpu: dict[str, dict[str, float | None]] = {g.side: {} for g in gateways}
    for kind, levels in _RPS_LEVELS.items():
        result["rps"][kind] = {}
        for concurrency in levels:
            progress(f"requests/s, {kind}, concurrency {concurrency}")
            row: dict[str, Any] = {}
            cpu_row: dict[str, float | None] = {}
            for side, target, pid in sides:
                rate, failed, cpu_ms = await rps(target, profile, concurrency, kind == "stream", pid)
                errors[side] += failed
                row[side] = round(rate, 1)
                if pid is not None:
                    cpu_row[side] = _round(cpu_ms)
                    if concurrency == _CPU_LEVEL[kind]:
                        cpu[side][kind] = _round(cpu_ms)
            row["via_over_direct"] = round(row["via"] / row["direct"], 3) if row["direct"] else None
            row["cpu_ms_per_request"] = cpu_row
            result["rps"][kind][f"c{concurrency}"] = row
    result["gateway_cpu_ms_per_request"] = cpu["via"]
    result["cpu_ms_per_request_by_side"] = cpu

    result["rss_mb"] = {}
    result["after_burst"] = {}
    for gateway in gateways:
        side = gateway.side
        progress(
            f"{side}: memory with {profile.open_streams} streams opened at once, then requests/s right after"
        )
        peak_rss, peak_open, failed = await open_streams(
            gateway.target,
            gateway.server.pid,
            profile.open_streams,
            profile.open_gap_ms,
            profile.open_events,
            profile.budget_seconds,
        )
        errors[side] += failed
        burst = await after_burst(gateway, profile, cpu[side].get("json"), rps)
        errors[side] += burst.pop("errors")
        result["after_burst"][side] = burst
        await asyncio.sleep(0.5)
        result["rss_mb"][side] = {
            "idle": round(idle_rss[side], 1),
            "with_open_streams": round(peak_rss, 1),
            "open_streams": peak_open,
            "streams_requested": profile.open_streams,
            "after": round(rss_mb(gateway.server.pid), 1),
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
