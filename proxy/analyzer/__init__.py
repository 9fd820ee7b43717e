"""Prompt-cache analysis: per session and per turn, what was read from the cache, where a prefix broke, and what
the same work would have cost with no cache, a 5-minute cache and a 1-hour cache.

Sources: Headway's request log with its request dumps (:func:`analyze_headway`), or OpenCode's own database
(:func:`analyze_opencode`). Both return a :class:`CacheReport` of dataclasses; rendering is separate
(:func:`format_report` text, :meth:`CacheReport.to_dict` JSON, :func:`render_svg` chart), so the settings page can
use the same calls.

The model
=========

A *session* is the requests that carry one agent session id, in start order; each request is a *turn*. Caches are
per model, so a turn is compared with the *previous turn of the same model* in its session (a title or summary call
on a small model in between does not count), and of the same Claude Code subagent when the dumps name one.

Per turn ``i``:

``P_i``   prompt tokens = uncached + cache read + cache write (as the upstream reported them);
``g_i``   gap = start of turn ``i`` - start of the previous turn (start: Headway logs the end time and the latency;
          OpenCode records ``time.created``). The previous request last touched the cache when it started;
``hit``   cache read / ``P_i``;
``S_i``   shared prefix: tokens of ``P_i`` that the previous turn's prompt also began with.
          With dumps of both turns: the common prefix of the two bodies *in prompt order* (tools → system →
          messages, ``cache_control`` ignored; see :mod:`proxy.analyzer.prefix`) as a share of the current prompt's
          bytes, times ``P_i`` ("token estimate by proportion"). Without dumps: ``min(P_{i-1}, P_i)`` — agents
          append, so the previous prompt is usually a prefix of this one. This approximation is stated in the output
          for every session that uses it. The first turn of a model shares nothing.

Counterfactuals, each priced with current prices (:mod:`proxy.analyzer.costs`; output tokens priced the same in all
scenarios, so the totals compare with the actual cost):

``no cache``      all ``P_i`` at the uncached input price;
``5-minute cache`` if ``g_i ≤ 5 min``: ``S_i`` read at the cache-read price (0.1x on Anthropic) and ``P_i - S_i``
                  written at the 5-minute write price (1.25x); otherwise (first turn, or expired) all ``P_i`` written;
``1-hour cache``  the same with a 60-minute window and the 1-hour write price (2x);
``actual``        the recorded usage (uncached / read / 5m write / 1h write / output) at current prices; the cost the
                  source recorded at the time is shown next to it.

Each scenario assumes the whole prompt is cached at the end of every turn (automatic caching), one cache per session
and model, and ignores the minimum cacheable length and cross-session sharing. OpenAI bills no cache writes (its
write price is the uncached price) and caches automatically. ChatGPT subscription turns get no costs: they are not
billed per token.

Cache events. A turn is flagged when it read less than half of what the previous turn of its model left in the
cache (read + write on Anthropic; the whole prompt on OpenAI, which reports no writes) and the shortfall is at least
1,024 tokens. It is an *expiry* when the gap exceeded the TTL of that cache (1 hour if the previous turns wrote 1h
entries or carried 1h breakpoints, else 5 minutes), an *account switch* when another account served it, else a
*break*: with dumps, where the prompt first changed (part such as ``system``, ``tools``, ``messages[3]``, the JSON
path, and the byte offset in the turn's ``.request.json``), and a *miss* when the dumps show the prefix intact;
without dumps, "unknown (turn on dumps)". Gaps over 5 and 60 minutes are flagged on every turn.

ChatGPT: cached tokens and hit ratio per turn as above; the stabilizer's effect compares the hit ratio of warm
tool-bearing requests whose dump carries the ``web_search`` stabilizer with those whose dump does not, and says so
when the data holds only one kind.
"""

from __future__ import annotations

import time
from pathlib import Path

from proxy.analyzer.analysis import BREAK_RATIO, MIN_BREAK_TOKENS, WINDOW_1H, WINDOW_5M, analyze_records
from proxy.analyzer.chart import render_svg, write_svg
from proxy.analyzer.costs import PriceCard, Pricer
from proxy.analyzer.model import (
    CacheEvent,
    CacheReport,
    Costs,
    DumpRef,
    SessionAnalysis,
    StabilizerEffect,
    Totals,
    Turn,
    TurnRecord,
)
from proxy.analyzer.prefix import PromptDiff, prompt_diff
from proxy.analyzer.render import format_report
from proxy.analyzer.sources import SourceError, default_opencode_db, load_headway, load_opencode

__all__ = [
    "BREAK_RATIO",
    "MIN_BREAK_TOKENS",
    "WINDOW_1H",
    "WINDOW_5M",
    "CacheEvent",
    "CacheReport",
    "Costs",
    "DumpRef",
    "PriceCard",
    "Pricer",
    "PromptDiff",
    "SessionAnalysis",
    "SourceError",
    "StabilizerEffect",
    "Totals",
    "Turn",
    "TurnRecord",
    "analyze_headway",
    "analyze_opencode",
    "analyze_records",
    "default_opencode_db",
    "format_report",
    "load_headway",
    "load_opencode",
    "prompt_diff",
    "render_svg",
    "write_svg",
]


def analyze_headway(
    log_path: Path,
    dumps_dir: Path | None,
    *,
    days: float | None = 7.0,
    session_id: str | None = None,
    now: float | None = None,
) -> CacheReport:
    """Analyse Headway's request log (and the dumps in ``dumps_dir``) over the last ``days`` (None: everything)."""
    now = time.time() if now is None else now
    since = None if days is None else now - days * 86400
    records = load_headway(log_path, dumps_dir, since=since, session_id=session_id)
    return analyze_records(records, source="headway", since=since, session_filter=session_id, now=now)


def analyze_opencode(
    db_path: Path,
    *,
    days: float | None = 7.0,
    session_id: str | None = None,
    now: float | None = None,
) -> CacheReport:
    """Analyse OpenCode's database at ``db_path`` over the last ``days`` (None: everything)."""
    now = time.time() if now is None else now
    since = None if days is None else now - days * 86400
    records = load_opencode(db_path, since=since, session_id=session_id)
    return analyze_records(records, source="opencode", since=since, session_filter=session_id, now=now)
