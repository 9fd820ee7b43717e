"""Usage and estimated cost per account and day, from the request log, drawn as an SVG bar chart on the server.

The chart is plain SVG text built here (every label escaped), so the page needs no chart library and no inline
script: the page's own script drops it into place. Colours come from CSS classes (``series-0`` …), so the page's
light and dark themes both apply.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from html import escape
from typing import Any, Literal

from flask import Blueprint, Response, jsonify, request

from proxy.features.request_log import RequestLog

from . import ctx
from .cache import ttl_cache

__all__ = ["Metric", "UsageReport", "blueprint", "daily_usage", "format_value", "nice_max", "render_chart"]

blueprint = Blueprint("usage", __name__)

Metric = Literal["cost", "tokens", "requests"]
METRICS: tuple[Metric, ...] = ("cost", "tokens", "requests")
SERIES = 8  # colours in the stylesheet; accounts beyond share them cyclically
MAX_ROWS = 200_000


@dataclass
class AccountUsage:
    key: str
    label: str
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    tokens: int = 0
    cost: float = 0.0
    cost_known: bool = False
    per_day: dict[date, dict[str, float]] = field(default_factory=dict)


@dataclass
class UsageReport:
    days: list[date]
    accounts: list[AccountUsage]
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "days": [d.isoformat() for d in self.days],
            "truncated": self.truncated,
            "accounts": [
                {
                    "key": a.key,
                    "label": a.label,
                    "series": i % SERIES,
                    "requests": a.requests,
                    "errors": a.errors,
                    "fallbacks": a.fallbacks,
                    "tokens": a.tokens,
                    "cost": round(a.cost, 6) if a.cost_known else None,
                }
                for i, a in enumerate(self.accounts)
            ],
        }


def daily_usage(log: RequestLog, days: int, now: float | None = None) -> UsageReport:
    """Requests, tokens and cost per account for each of the last ``days`` local calendar days (today included)."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now).date()
    first = today - timedelta(days=days - 1)
    since = datetime.combine(first, datetime.min.time()).timestamp()
    rows = log.query(since=since, limit=MAX_ROWS)
    accounts: dict[str, AccountUsage] = {}
    for row in reversed(rows):  # oldest first, so the latest label wins
        key = row.account_id or "(none)"
        usage = accounts.get(key)
        label = row.account_label or row.account_id or "no account"
        if usage is None:
            usage = accounts[key] = AccountUsage(key=key, label=label)
        usage.label = label
        day = datetime.fromtimestamp(row.ts).date()
        bucket = usage.per_day.setdefault(day, {"cost": 0.0, "tokens": 0.0, "requests": 0.0})
        tokens = 0 if row.usage is None else row.usage.total_input + row.usage.output_tokens
        usage.requests += 1
        usage.tokens += tokens
        usage.errors += 1 if (row.status >= 400 or row.error) else 0
        usage.fallbacks += 1 if len(row.fallback_chain) > 1 else 0
        bucket["requests"] += 1
        bucket["tokens"] += tokens
        if row.cost_usd is not None:
            usage.cost += row.cost_usd
            usage.cost_known = True
            bucket["cost"] += row.cost_usd
    ordered = sorted(accounts.values(), key=lambda a: (a.key == "(none)", -a.requests, a.label))
    return UsageReport(
        days=[first + timedelta(days=i) for i in range(days)],
        accounts=ordered,
        truncated=len(rows) >= MAX_ROWS,
    )


def format_value(metric: Metric, value: float) -> str:
    if metric == "cost":
        if value == 0:
            return "$0"
        if value >= 0.1:
            return f"${value:,.2f}"
        # two significant digits at most, so a small but real cost never shows as $0
        digits = min(8, max(3, 1 - math.floor(math.log10(value))))
        return f"${value:.{digits}f}".rstrip("0").rstrip(".")
    if value >= 999_950:  # what would round to 1000.0k
        return f"{value / 1_000_000:.1f}M".replace(".0M", "M")
    if value >= 1000:
        return f"{value / 1000:.1f}k".replace(".0k", "k")
    return f"{value:g}"


def nice_max(value: float) -> tuple[float, float]:
    """A round axis maximum ≥ value and its tick step (four ticks)."""
    if value <= 0:
        return 1.0, 0.25
    raw = value / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * magnitude
        if step * 4 >= value:
            return step * 4, step
    return 10 * magnitude * 4, 10 * magnitude


def render_chart(report: UsageReport, metric: Metric, width: int = 720) -> str:
    """Stacked bars, one per day, one colour per account; a <title> on every segment for hover and screen readers.

    ``width`` is the width the page will show it at, so that its text stays at the page's size on a phone too.
    """
    width = max(300, min(1600, width))
    height = 240 if width >= 560 else 200
    left, right, top, bottom = 56, 12, 12, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(a.per_day.get(d, {}).get(metric, 0.0) for a in report.accounts) for d in report.days]
    axis_max, step = nice_max(max(totals, default=0.0))
    n = max(len(report.days), 1)
    slot = plot_w / n
    bar_w = max(4.0, min(48.0, slot * 0.62))
    names = {"cost": "Estimated cost", "tokens": "Tokens", "requests": "Requests"}
    total = sum(totals)
    summary = f"{names[metric]} per day for the last {n} days: {format_value(metric, total)} in total."
    out = [
        f'<svg class="usage-chart" viewBox="0 0 {width} {height}" role="img" aria-labelledby="chart-title chart-desc" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(names[metric])} per day and account</title>',
        f'<desc id="chart-desc">{escape(summary)}</desc>',
    ]
    ticks = 4
    for i in range(ticks + 1):
        value = step * i
        y = top + plot_h - (value / axis_max) * plot_h
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="axis" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{escape(format_value(metric, value))}</text>'
        )
    today = report.days[-1] if report.days else None
    for index, day in enumerate(report.days):
        x = left + slot * index + (slot - bar_w) / 2
        y_cursor = float(top + plot_h)
        for series, account in enumerate(report.accounts):
            value = account.per_day.get(day, {}).get(metric, 0.0)
            if value <= 0:
                continue
            h = max(1.0, (value / axis_max) * plot_h)
            y_cursor -= h
            label = f"{account.label} — {day:%a %d %b}: {format_value(metric, value)}"
            out.append(
                f'<rect class="chart-bar series-{series % SERIES}" x="{x:.1f}" y="{y_cursor:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" rx="2"><title>{escape(label)}</title></rect>'
            )
        label = "Today" if day == today else (f"{day:%a %d}" if slot >= 52 else f"{day:%d}")
        every = max(1, math.ceil(34 / slot)) if slot < 34 else 1
        if (n - 1 - index) % every == 0:
            out.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - 12}" text-anchor="middle">{escape(label)}</text>'
            )
    if total == 0:
        out.append(
            f'<text class="empty" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle">'
            "No requests in this period</text>"
        )
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------- the endpoint


@blueprint.get("/api/usage")
def usage() -> Response:
    try:
        days = max(1, min(90, int(request.args.get("days", "7"))))
    except ValueError:
        days = 7
    metric = request.args.get("metric", "cost")
    if metric not in METRICS:
        metric = "cost"
    try:
        width = int(request.args.get("width", "720"))
    except ValueError:
        width = 720
    log = ctx().engine.request_log
    report = ttl_cache().get(f"usage:{days}", 10.0, lambda: daily_usage(log, days))
    body = report.to_json()
    body["metric"] = metric
    body["svg"] = render_chart(report, metric, width)  # type: ignore[arg-type]
    return jsonify(body)
