"""The aims each figure is held to, and the printed table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["AIMS", "Aim", "check_aims", "render"]


@dataclass(frozen=True)
class Aim:
    figure: str
    path: tuple[str, ...]
    limit: float
    unit: str

    def value(self, result: dict[str, Any]) -> float | None:
        node: Any = result
        for key in self.path:
            if not isinstance(node, dict) or key not in node:
                return None
            node = node[key]
        return node if isinstance(node, (int, float)) else None


AIMS = (
    Aim("added TTFB p50 at 10 concurrent streams", ("ttfb_ms", "c10", "added", "p50"), 2.0, "ms"),
    Aim("added TTFB p99 at 10 concurrent streams", ("ttfb_ms", "c10", "added", "p99"), 10.0, "ms"),
    Aim("coalesced content events", ("coalesced_content_events",), 0, ""),
    Aim("gateway RSS idle", ("rss_mb", "idle"), 80.0, "MB"),
)


def check_aims(result: dict[str, Any]) -> list[dict[str, Any]]:
    checked = []
    for aim in AIMS:
        value = aim.value(result)
        checked.append(
            {
                "figure": aim.figure,
                "value": value,
                "limit": aim.limit,
                "unit": aim.unit,
                "ok": value is not None and value <= aim.limit,
            }
        )
    return checked


def _ms(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:7.3f}"


def _flag(ok: bool) -> str:
    return "ok  " if ok else "MISS"


def render(result: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    add(
        f"Headway gateway overhead — {result['mode']} run, {result['elapsed_s']:.1f}s, headway {result['headway_version']}, "
        f"Python {result['python']}"
    )
    add(
        "Every figure is taken straight to the mock upstream (direct) and through `headway serve` (via), in this run."
    )
    add("")
    add("Time to first body byte (ms)         direct p50/p99      via p50/p99         added p50/p99      n")
    for level, label in (("c1", "concurrency 1"), ("c10", "10 concurrent streams")):
        row = result["ttfb_ms"][level]
        d, v, a = row["direct"], row["via"], row["added"]
        add(
            f"  {label:<34} {_ms(d['p50'])} {_ms(d['p99'])}   {_ms(v['p50'])} {_ms(v['p99'])}   {_ms(a['p50'])} {_ms(a['p99'])}  {v['n']:>5}"
        )
    add("")
    gap = result["held_events"]["pre_gap_ms"]
    add(f"Per-event delay, arrival - send (ms), events {gap:g} ms apart")
    for level, label in (("c1", "concurrency 1"), ("c10", "10 concurrent streams")):
        row = result["event_delay_ms"][level]
        d, v, a = row["direct"], row["via"], row["added"]
        add(
            f"  {label:<34} {_ms(d['p50'])} {_ms(d['p99'])}   {_ms(v['p50'])} {_ms(v['p99'])}   {_ms(a['p50'])} {_ms(a['p99'])}  {v['n']:>5}"
        )
    held = result["held_events"]
    hd = held["delay_ms"]
    add(
        f"  held pre-content (message_start)   {_ms(hd['direct']['p50'])} {_ms(hd['direct']['p99'])}   "
        f"{_ms(hd['via']['p50'])} {_ms(hd['via']['p99'])}   {_ms(hd['added']['p50'])} {_ms(hd['added']['p99'])}  {hd['via']['n']:>5}"
    )
    add("")
    events = result["content_events"]
    add("Coalescing (events arriving in one read although sent >= 1 ms apart)")
    add(
        f"  content events coalesced          direct {result['coalesced_content_events_direct']} of {events['direct']}, "
        f"via {result['coalesced_content_events']} of {events['via']}"
    )
    released = held["released_with_first_content"]
    add(
        f"  held pre-content events           via {released['via']} of {held['count']['via']}, direct "
        f"{released['direct']} of {held['count']['direct']} arrived within 1 ms of the first content event, "
        f"although sent {gap:g} ms before it"
    )
    add(
        "                                    (by design: Headway holds them until content so that an early error "
        "can still fall back; not counted as coalesced)"
    )
    add("")
    add("Requests/s                            direct        via   via/direct   gateway CPU ms/request (c10)")
    for kind, label in (("json", "non-streaming JSON"), ("stream", "streaming, 9 events, no gaps")):
        for level in ("c1", "c10"):
            row = result["rps"][kind][level]
            ratio = "n/a" if row["via_over_direct"] is None else f"{row['via_over_direct']:.2f}"
            cpu = result["gateway_cpu_ms_per_request"].get(kind)
            extra = f"   {cpu:.2f}" if level == "c10" and cpu is not None else ""
            add(
                f"  {label + ', ' + level:<34} {row['direct']:>8.0f}   {row['via']:>8.0f}   {ratio:>10}{extra}"
            )
    add("")
    rss = result["rss_mb"]
    add(
        f"Gateway memory (VmRSS)   idle {rss['idle']:.1f} MB   with {rss['open_streams']} open streams {rss['with_open_streams']:.1f} MB"
        f"   afterwards {rss['after']:.1f} MB"
    )
    errors = result["errors"]
    add(f"Errors                   direct {errors['direct']}   via {errors['via']}")
    machine = result["machine"]
    other = machine["other_processes_cpu_percent"]
    note = "   (busy machine: latency figures are inflated)" if other >= 10 else ""
    add(
        f"Machine                  {machine['cpus']} CPU(s), load {machine['loadavg_1m_before']:.2f} before; "
        f"other processes used {other:.1f}% of all CPUs during the run{note}"
    )
    add("")
    add("Aims")
    for aim in result["aims"]:
        value = "n/a" if aim["value"] is None else f"{aim['value']:g}"
        add(
            f"  [{_flag(aim['ok'])}] {aim['figure']:<42} {value} {aim['unit']} (aim <= {aim['limit']:g} {aim['unit']})".rstrip()
        )
    return "\n".join(out)
