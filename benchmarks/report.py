"""The aims each figure is held to (issue 12's goals), and the printed tables."""

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
    at_least: bool = False  # the figure should reach the limit (requests/s), rather than stay under it
    floor: tuple[str, ...] = ()  # the same figure for the bare relay, printed beside it (not judged)

    def value(self, result: dict[str, Any]) -> float | None:
        return _figure(result, self.path)

    def floor_value(self, result: dict[str, Any]) -> float | None:
        return _figure(result, self.floor) if self.floor else None


def _figure(result: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = result
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


AIMS = (
    Aim(
        "added time to first content p50, c10",
        ("first_content_ms", "c10", "added", "p50"),
        1.0,
        "ms",
        floor=("first_content_ms", "c10", "floor_added", "p50"),
    ),
    Aim(
        "added time to first content p99, c10",
        ("first_content_ms", "c10", "added", "p99"),
        3.0,
        "ms",
        floor=("first_content_ms", "c10", "floor_added", "p99"),
    ),
    Aim(
        "added per-event delay p50, c10",
        ("event_delay_ms", "c10", "added", "p50"),
        0.1,
        "ms",
        floor=("event_delay_ms", "c10", "floor_added", "p50"),
    ),
    Aim("coalesced content events", ("coalesced_content_events",), 0, ""),
    Aim("non-streaming requests/s, c20", ("rps", "json", "c20", "via"), 1000, "req/s", at_least=True),
    Aim("gateway CPU per request, c20", ("gateway_cpu_ms_per_request", "json"), 1.0, "ms"),
    Aim("CPU per request after a burst / fresh", ("after_burst", "via", "cpu_ratio"), 1.2, "x"),
    Aim("gateway RSS idle (file secrets, headless)", ("rss_mb", "via", "idle"), 60.0, "MB"),
    Aim("gateway RSS idle (system keychain)", ("rss_mb", "via", "idle_keychain"), 60.0, "MB"),
    Aim("gateway RSS with 200 open streams", ("rss_mb", "via", "with_open_streams"), 100.0, "MB"),
    Aim("cold start to first proxied 200", ("cold_start_s", "via", "median"), 0.5, "s"),
)


def check_aims(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Each aim with its value and ``ok``: True, False, or None when the figure could not be taken (n/a).

    The latency aims also carry ``floor``: what the bare relay added to the same figure in this run (None when it
    did not run), for reading the gateway's figure against; it is not judged.
    """
    checked = []
    for aim in AIMS:
        value = aim.value(result)
        ok = None if value is None else (value >= aim.limit if aim.at_least else value <= aim.limit)
        entry: dict[str, Any] = {
            "figure": aim.figure,
            "value": value,
            "limit": aim.limit,
            "unit": aim.unit,
            "at_least": aim.at_least,
            "ok": ok,
        }
        if aim.floor:
            entry["floor"] = aim.floor_value(result)
        checked.append(entry)
    return checked


def _ms(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:7.3f}"


def _flag(ok: bool | None) -> str:
    return "n/a " if ok is None else "ok  " if ok else "MISS"


def _num(value: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _get(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _title(result: dict[str, Any], side: str) -> str:
    titles = {"direct": "direct", "floor": "bare relay", "via": "Headway"}
    return titles.get(side, str(result.get("peer_name", "peer")) if side == "peer" else side)


def _latency_sides(result: dict[str, Any]) -> list[str]:
    """The sides of the latency measurements: ``sides`` with the bare relay ("floor") after direct, when it ran."""
    sides = result.get("latency_sides", result["sides"])
    return [str(side) for side in sides]


def _added_key(side: str) -> str:
    return "added" if side == "via" else f"{side}_added"


def _summary(result: dict[str, Any]) -> list[str]:
    """Issue 12's table: figures in rows; direct, the bare relay, Headway (and the peer) in columns.

    The bare relay only has the latency rows; its other cells are "-".
    """
    columns = _latency_sides(result)
    titles = [_title(result, s) for s in columns]

    def plus(value: float | None) -> str:
        return "n/a" if value is None else f"{value:+.2f}"

    def row(label: str, cell: Any, *, floor: bool = False, direct: Any = None) -> tuple[str, list[str]]:
        """One row: ``cell(side)`` for the gateways (and the relay when ``floor``), ``direct(side)`` or "-"."""
        cells = []
        for side in columns:
            if side == "direct":
                cells.append("-" if direct is None else direct(side))
            elif side == "floor" and not floor:
                cells.append("-")
            else:
                cells.append(cell(side))
        return label, cells

    rows: list[tuple[str, list[str]]] = []
    fc = result["first_content_ms"]
    rows.append(
        row(
            "added time to first content, c10, p50 / p99 (ms)",
            lambda s: (
                f"{plus(_get(fc, 'c10', _added_key(s), 'p50'))} / "
                f"{plus(_get(fc, 'c10', _added_key(s), 'p99'))}"
            ),
            floor=True,
        )
    )
    rows.append(
        row(
            "added time to first content, c1, p50 (ms)",
            lambda s: plus(_get(fc, "c1", _added_key(s), "p50")),
            floor=True,
        )
    )
    tb = result["ttfb_ms"]
    rows.append(
        row(
            "added time to first byte, c10, p50 / p99 (ms)",
            lambda s: (
                f"{plus(_get(tb, 'c10', _added_key(s), 'p50'))} / "
                f"{plus(_get(tb, 'c10', _added_key(s), 'p99'))}"
            ),
            floor=True,
        )
    )
    ed = result["event_delay_ms"]["c10"]

    def delay(side: str) -> str:
        return _num(_get(ed, side, "p50"), "{:.3f}")

    rows.append(row("per-event delay p50, c10 (ms)", delay, floor=True, direct=delay))
    coalesced = result["coalesced_content_events_by_side"]
    events = result["content_events"]

    def share(side: str) -> str:
        return f"{coalesced[side]} / {events[side]}" if side in coalesced else "n/a"

    rows.append(row("coalesced content events", share, floor=True, direct=share))
    rps = result["rps"]["json"]["c20"]

    def rate(side: str) -> str:
        return f"{rps[side]:.0f}"

    rows.append(row("non-streaming req/s, c20", rate, direct=rate))
    cpu = result["cpu_ms_per_request_by_side"]
    rows.append(row("gateway CPU per request, c20 (ms)", lambda s: _num(cpu[s].get("json"))))
    burst = result["after_burst"]
    rows.append(
        row(
            f"the same right after {burst['via']['streams']} streams closed",
            lambda s: (
                f"{_num(burst[s]['cpu_ms_per_request'])} ms ({_num(burst[s]['cpu_ratio'])}x, "
                f"req/s {burst[s]['rps']:.0f})"
            ),
        )
    )
    rss = result["rss_mb"]
    rows.append(
        row(
            f"RSS idle / real keychain / {result['rss_mb']['via']['streams_requested']} open streams (MB)",
            lambda s: (
                f"{_num(rss[s]['idle'], '{:.0f}')} / {_num(rss[s].get('idle_keychain'), '{:.0f}')} / "
                f"{_num(rss[s]['with_open_streams'], '{:.0f}')}"
            ),
        )
    )
    cold = result.get("cold_start_s", {})
    rows.append(row("cold start to first proxied 200 (s)", lambda s: _num(_get(cold, s, "median"))))
    width = max(len(label) for label, _ in rows) + 2
    widths = [max(len(t), *(len(cells[i]) for _, cells in rows)) + 3 for i, t in enumerate(titles)]
    out = [" " * width + "".join(t.rjust(w) for t, w in zip(titles, widths, strict=True))]
    for label, cells in rows:
        out.append(label.ljust(width) + "".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    return out


def _distribution_rows(add: Any, node: dict[str, Any], label: str, sides: list[str]) -> None:
    """Each side's p50 / p99, then what the bare relay (when it ran) and Headway added, and Headway's count."""
    cells = [f"{_ms(node[side]['p50'])} {_ms(node[side]['p99'])}" for side in sides]
    added = [node.get(_added_key(side), {}) for side in ("floor", "via") if side in sides]
    add(
        f"  {label:<34} "
        + "   ".join(cells)
        + "".join(f"   {_ms(a.get('p50'))} {_ms(a.get('p99'))}" for a in added)
        + f"  {node['via']['n']:>5}"
    )


def render(result: dict[str, Any]) -> str:
    out: list[str] = []
    add = out.append
    sides = result["sides"]
    latency = _latency_sides(result)
    add(
        f"Headway gateway overhead — {result['mode']} run, {result['elapsed_s']:.1f}s, headway {result['headway_version']}, "
        f"Python {result['python']}"
    )
    add(
        "Every figure is taken straight to the mock upstream (direct) and through `headway serve` (via)"
        + (f" and {result.get('peer_name', 'the peer')} (peer)" if "peer" in sides else "")
        + ", in this run."
    )
    if "floor" in latency:
        add(
            "The latency figures are also taken through a bare asyncio byte relay (floor: benchmarks/floor.py): "
            "what any extra Python hop adds here."
        )
    add("")
    out.extend(_summary(result))
    add("")
    columns = [*latency, *(f"{s} added" for s in ("floor", "via") if s in latency)]
    add(f"{'Details (ms): p50 p99':<36} " + "   ".join(f"{c:>15}" for c in columns) + f"  {'n':>5}")
    for key, title in (
        ("first_content_ms", "Time to first content event"),
        ("ttfb_ms", "Time to first body byte"),
    ):
        add(f" {title}")
        for level, label in (("c1", "concurrency 1"), ("c10", "10 concurrent streams")):
            _distribution_rows(add, result[key][level], label, latency)
    gap = result["held_events"]["pre_gap_ms"]
    add(f" Per-event delay, arrival - send, events {gap:g} ms apart")
    for level, label in (("c1", "concurrency 1"), ("c10", "10 concurrent streams")):
        _distribution_rows(add, result["event_delay_ms"][level], label, latency)
    held = result["held_events"]
    _distribution_rows(add, held["delay_ms"], "held pre-content (message_start)", latency)
    add("")
    released = held["released_with_first_content"]
    add(
        "Held pre-content events arriving within 1 ms of the first content event, although sent "
        f"{gap:g} ms before it: " + ", ".join(f"{s} {released[s]} of {held['count'][s]}" for s in latency)
    )
    add(
        "  (by design: Headway holds them until content so that an early error can still fall back; "
        "not counted as coalesced)"
    )
    add("")
    add(
        "Requests/s                          "
        + "".join(f"{s:>10}" for s in sides)
        + "   via/direct   gateway CPU ms/request"
    )
    for kind, label in (("json", "non-streaming JSON"), ("stream", "streaming, 9 events, no gaps")):
        for level, row in result["rps"][kind].items():
            ratio = "n/a" if row["via_over_direct"] is None else f"{row['via_over_direct']:.2f}"
            cpu = "  ".join(f"{s} {_num(v)}" for s, v in row["cpu_ms_per_request"].items())
            add(
                f"  {label + ', ' + level:<34}"
                + "".join(f"{row[s]:>10.0f}" for s in sides)
                + f"   {ratio:>10}   {cpu}"
            )
    add("")
    for side in sides[1:]:
        rss = result["rss_mb"][side]
        burst = result["after_burst"][side]
        add(
            f"{_title(result, side)} memory (VmRSS): idle {rss['idle']:.1f} MB; with {rss['open_streams']} of "
            f"{rss['streams_requested']} streams open {rss['with_open_streams']:.1f} MB; afterwards {rss['after']:.1f} MB"
        )
        if "keychain" in rss:
            add(
                f"  idle with the system keychain as secrets backend: {_num(rss.get('idle_keychain'), '{:.1f} MB')} ({rss['keychain']})"
            )
        add(
            f"  right after the burst: {burst['rps']:.0f} req/s at c{burst['concurrency']}, "
            f"{_num(burst['cpu_ms_per_request'])} ms CPU/request vs {_num(burst['fresh_cpu_ms_per_request'])} fresh "
            f"({_num(burst['cpu_ratio'])}x)"
        )
        cold = _get(result, "cold_start_s", side)
        if cold:
            add(
                f"  cold start to first proxied 200: median {cold['median']:.3f} s of {len(cold['runs'])} "
                f"(listening after {cold['listening_median']:.3f} s)"
            )
    errors = result["errors"]
    add("Errors                   " + "   ".join(f"{s} {errors[s]}" for s in latency))
    machine = result["machine"]
    other = machine["other_processes_cpu_percent"]
    note = "   (busy machine: latency figures are inflated)" if other >= 10 else ""
    add(
        f"Machine                  {machine['cpus']} CPU(s), load {machine['loadavg_1m_before']:.2f} before; "
        f"other processes used {other:.1f}% of all CPUs during the run{note}"
    )
    add("")
    add("Aims (issue 12; Headway's figures)")
    for aim in result["aims"]:
        value = "n/a" if aim["value"] is None else f"{aim['value']:g}"
        sign = ">=" if aim["at_least"] else "<="
        floor = ""
        if aim.get("floor") is not None:
            floor = f"; a bare relay adds {aim['floor']:+g} {aim['unit']} here"
        add(
            f"  [{_flag(aim['ok'])}] {aim['figure']:<42} {value} {aim['unit']} (aim {sign} {aim['limit']:g} {aim['unit']}{floor})".rstrip()
        )
    return "\n".join(out)
