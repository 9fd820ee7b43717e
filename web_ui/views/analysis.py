"""The Cache analysis section: ``proxy.analyzer`` over the request log and the dumps, the same as
``headway analyze cache``.

The analysis reads SQLite and every dump's metadata, so it runs on one worker thread of its own
(``headway-web-analysis``), never more than one at a time; requests for the same period share that run, and its
report is reused for a few seconds. The chart is the analyzer's own SVG, checked against an allowlist of elements
and attributes (no script, no event handlers, no links, no style) and served as an image with its own
``Content-Type: image/svg+xml`` and a CSP that allows nothing, so the page shows it with ``<img src>``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
import xml.etree.ElementTree as ET
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from flask import Blueprint, Response, jsonify, request

from proxy.analyzer import CacheReport, SessionAnalysis, SourceError, analyze_headway, render_svg

from . import ctx, error

__all__ = ["Analyses", "UnsafeSvg", "blueprint", "checked_svg"]

log = logging.getLogger("headway.web.analysis")

blueprint = Blueprint("analysis", __name__)

CACHE_SECONDS = 10.0
WAIT_SECONDS = 25.0
SVG_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

_SVG = "{http://www.w3.org/2000/svg}"
_ELEMENTS = frozenset(
    {"svg", "g", "title", "desc", "rect", "line", "polyline", "polygon", "path", "circle", "text", "tspan"}
)
_ATTRIBUTES = frozenset(
    {
        "x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "r", "rx", "ry", "width", "height", "viewBox", "points", "d",
        "fill", "stroke", "stroke-width", "opacity", "font-family", "font-size", "font-weight", "text-anchor",
        "class", "id", "role", "transform", "preserveAspectRatio", "data-session", "data-turn", "aria-label",
    }
)  # fmt: skip


class UnsafeSvg(ValueError):
    """The chart held something outside the allowlist."""


def checked_svg(text: str) -> str:
    """``text`` unchanged if every element and attribute of it is on the allowlist; UnsafeSvg if not."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise UnsafeSvg(f"not well-formed: {exc}") from exc
    for node in root.iter():
        tag = node.tag if isinstance(node.tag, str) else ""
        if not tag.startswith(_SVG) or tag.removeprefix(_SVG) not in _ELEMENTS:
            raise UnsafeSvg(f"element {tag!r} is not allowed")
        for name, value in node.attrib.items():
            if name not in _ATTRIBUTES:
                raise UnsafeSvg(f"attribute {name!r} on {tag.removeprefix(_SVG)} is not allowed")
            if "url(" in value.lower() or "javascript:" in value.lower():
                raise UnsafeSvg(f"attribute {name!r} refers elsewhere")
    if "<!ENTITY" in text or "<!DOCTYPE" in text or "<?xml-stylesheet" in text:
        raise UnsafeSvg("declarations are not allowed")
    return text


def _session_key(session: SessionAnalysis) -> str:
    return session.session_id or ""


def _last_start(session: SessionAnalysis) -> float:
    return max((t.start for t in session.turns), default=0.0)


def _ordered(report: CacheReport) -> list[SessionAnalysis]:
    """Latest first (by the start of each session's last turn)."""
    return sorted(report.sessions, key=_last_start, reverse=True)


class Analyses:
    """One analysis at a time on its own thread; the last report per period reused for a few seconds."""

    def __init__(self, ttl: float = CACHE_SECONDS, *, pool: Executor | None = None) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._done: dict[int, tuple[float, CacheReport]] = {}
        self._running: dict[int, Future[CacheReport]] = {}
        self._pool = pool or ThreadPoolExecutor(max_workers=1, thread_name_prefix="headway-web-analysis")

    def report(self, days: int, *, wait: float = WAIT_SECONDS) -> CacheReport:
        paths = ctx().paths
        now = time.monotonic()
        with self._lock:
            hit = self._done.get(days)
            if hit is not None and now - hit[0] < self.ttl:
                return hit[1]
            future = self._running.get(days)
            started = future is None
            if future is None:
                future = self._pool.submit(
                    analyze_headway, paths.request_log, paths.dumps_dir, days=float(days)
                )
                self._running[days] = future
        if started:
            # Outside the lock: a future that is already done runs the callback at once, in this thread, and the
            # callback takes the lock.
            future.add_done_callback(functools.partial(self._finished, days))
        return future.result(timeout=wait)

    def _finished(self, days: int, future: Future[CacheReport]) -> None:
        report = None if future.cancelled() or future.exception() is not None else future.result()
        with self._lock:
            if self._running.get(days) is future:
                del self._running[days]
            if report is not None:
                self._done[days] = (time.monotonic(), report)

    def stop(self, timeout: float = 3.0) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        for thread in list(getattr(self._pool, "_threads", ())):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("a cache analysis did not stop within %.1fs", timeout)


def analyses() -> Analyses:
    return ctx().helper("analyses", Analyses)


def _days() -> int:
    try:
        days = int(request.args.get("days", "7"))
    except ValueError:
        return 7
    return max(1, min(90, days))


def _report() -> CacheReport | Response:
    try:
        return analyses().report(_days())
    except FutureTimeout:
        return error("the analysis is still running; try again in a moment", 503, retry=True)
    except SourceError as exc:
        return error(f"cannot read the request log: {exc}", 503)


def _summary(session: SessionAnalysis) -> dict[str, Any]:
    return {
        "key": _session_key(session),
        "session_id": session.session_id,
        "parent_session_id": session.parent_session_id,
        "title": session.title,
        "first": min((t.start for t in session.turns), default=None),
        "last": _last_start(session) or None,
        "models": sorted({t.model for t in session.turns if t.model}),
        "totals": dataclasses.asdict(session.totals),
        "costs": dataclasses.asdict(session.costs),
    }


@blueprint.get("/api/analysis/cache")
def sessions() -> Response:
    """The sessions of the period, latest first, each with its totals and costs (the turns: per session)."""
    report = _report()
    if isinstance(report, Response):
        return report
    data = report.to_dict()
    return jsonify(
        {
            "days": _days(),
            "generated_at": report.generated_at,
            "dumps_enabled": ctx().store.current.dumps.enabled,
            "dumps_used": report.dumps_used,
            "sessions": [_summary(s) for s in _ordered(report)],
            "totals": data["totals"],
            "costs": data["costs"],
            "assumptions": report.assumptions,
        }
    )


def _one(report: CacheReport) -> CacheReport | Response:
    key = request.args.get("session", "")
    chosen = [s for s in report.sessions if _session_key(s) == key]
    if not chosen:
        return error("no such session in this period", 404)
    return dataclasses.replace(report, sessions=chosen, session_filter=key or None)


@blueprint.get("/api/analysis/cache/session")
def session() -> Response:
    """One session with its turns (``?session=<id>``; empty: the requests that carried no session id)."""
    report = _report()
    if isinstance(report, Response):
        return report
    one = _one(report)
    if isinstance(one, Response):
        return one
    data = one.to_dict()["sessions"][0]
    data["key"] = request.args.get("session", "")
    return jsonify({"days": _days(), "generated_at": report.generated_at, "session": data})


@blueprint.get("/api/analysis/cache.svg")
def chart() -> Response:
    """The analyzer's chart of one session, as an image (checked against the allowlist first)."""
    report = _report()
    if isinstance(report, Response):
        return report
    one = _one(report)
    if isinstance(one, Response):
        return one
    try:
        svg = checked_svg(render_svg(one, dark=request.args.get("theme") == "dark"))
    except UnsafeSvg as exc:
        log.error("the cache chart was not served: %s", exc)
        return error("the chart could not be drawn safely", 500)
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = SVG_CSP
    response.headers["Content-Disposition"] = 'inline; filename="cache.svg"'
    return response
