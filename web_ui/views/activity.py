"""One account's history: requests and tokens per hour for the last 24 hours, per day for the last 30 days.

``GET /api/accounts/<id>/activity?unit=hour|day&metric=requests|tokens&width=N`` answers the buckets and an SVG bar
chart built here like the usage chart (every label escaped, colours from CSS classes, so both themes apply; the
failed part of each bar in the error colour).
"""

from __future__ import annotations

import time
from html import escape
from typing import Literal

from flask import Blueprint, Response, jsonify, request

from proxy.features.request_history import Activity, RequestHistory
from proxy.features.request_log import RequestLogError

from . import ctx, error
from .cache import ttl_cache
from .usage import format_value, nice_max

__all__ = ["blueprint", "render_activity"]

blueprint = Blueprint("activity", __name__)

Unit = Literal["hour", "day"]
Metric = Literal["requests", "tokens"]
COUNTS: dict[Unit, int] = {"hour": 24, "day": 30}


def _label(bucket: Activity, unit: Unit) -> str:
    return f"{bucket.start:%H}" if unit == "hour" else f"{bucket.start:%d}"


def _title(bucket: Activity, unit: Unit) -> str:
    when = f"{bucket.start:%a %H:00}" if unit == "hour" else f"{bucket.start:%a %d %b}"
    failed = f" ({bucket.errors} failed)" if bucket.errors else ""
    return f"{when}: {bucket.requests} request{'s' if bucket.requests != 1 else ''}{failed}, {format_value('tokens', bucket.tokens)} tokens"


def render_activity(buckets: list[Activity], unit: Unit, metric: Metric, width: int = 720) -> str:
    """Bars, one per hour or day; with ``requests`` the failed share of a bar is drawn in the error colour."""
    width = max(300, min(1600, width))
    height = 180
    left, right, top, bottom = 48, 8, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [float(b.requests if metric == "requests" else b.tokens) for b in buckets]
    axis_max, step = nice_max(max(values, default=0.0))
    n = max(len(buckets), 1)
    slot = plot_w / n
    bar_w = max(3.0, min(36.0, slot * 0.7))
    span = "the last 24 hours" if unit == "hour" else "the last 30 days"
    total = sum(values)
    what = "Requests" if metric == "requests" else "Tokens"
    out = [
        f'<svg class="usage-chart activity-chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="activity-title activity-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="activity-title">{what} per {unit}</title>',
        f'<desc id="activity-desc">{escape(f"{what} per {unit} for {span}: {format_value(metric, total)} in total.")}</desc>',
    ]
    for i in range(5):
        value = step * i
        y = top + plot_h - (value / axis_max) * plot_h
        out.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>')
        out.append(
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(format_value(metric, value))}</text>'
        )
    every = max(1, round(28 / slot)) if slot < 28 else 1
    for index, (bucket, value) in enumerate(zip(buckets, values, strict=True)):
        x = left + slot * index + (slot - bar_w) / 2
        if value > 0:
            h = max(1.0, value / axis_max * plot_h)
            title = escape(_title(bucket, unit))
            out.append(
                f'<rect class="chart-bar series-0" x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" rx="2"><title>{title}</title></rect>'
            )
            if metric == "requests" and bucket.errors:
                eh = max(1.0, bucket.errors / axis_max * plot_h)
                out.append(
                    f'<rect class="chart-bar bar-error" x="{x:.1f}" y="{top + plot_h - eh:.1f}" '
                    f'width="{bar_w:.1f}" height="{eh:.1f}" rx="2"><title>{title}</title></rect>'
                )
        if (n - 1 - index) % every == 0:
            out.append(
                f'<text class="axis" x="{x + bar_w / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                f"{escape(_label(bucket, unit))}</text>"
            )
    if total == 0:
        out.append(
            f'<text class="empty" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" text-anchor="middle">'
            f"No requests in {span}</text>"
        )
    out.append("</svg>")
    return "".join(out)


@blueprint.get("/api/accounts/<account_id>/activity")
def activity(account_id: str) -> Response:
    unit = request.args.get("unit", "hour")
    metric = request.args.get("metric", "requests")
    if unit not in COUNTS:
        return error("unit: hour or day")
    if metric not in ("requests", "tokens"):
        return error("metric: requests or tokens")
    try:
        width = int(request.args.get("width", "720"))
    except ValueError:
        return error("width: a whole number of pixels")
    context = ctx()
    account = context.store.current.account(account_id)
    if account is None or account.id != account_id:
        return error(f"no account {account_id!r}", 404)
    history = RequestHistory(context.engine.request_log.path)
    count = COUNTS[unit]

    def read() -> list[Activity]:
        return history.activity(account_id=account_id, unit=unit, count=count, now=time.time())

    try:
        buckets = ttl_cache().get(f"activity:{account_id}:{unit}", 5.0, read)
    except RequestLogError as exc:
        return error(str(exc), 503)
    return jsonify(
        {
            "account_id": account_id,
            "unit": unit,
            "metric": metric,
            "buckets": [
                {"start": b.start.isoformat(), "requests": b.requests, "errors": b.errors, "tokens": b.tokens}
                for b in buckets
            ],
            "totals": {
                "requests": sum(b.requests for b in buckets),
                "errors": sum(b.errors for b in buckets),
                "tokens": sum(b.tokens for b in buckets),
            },
            "svg": render_activity(buckets, unit, metric, width),  # type: ignore[arg-type]
        }
    )
