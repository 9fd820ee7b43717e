"""The health summary: how the pool of accounts is doing, computed once, drawn by every surface.

:func:`health_summary` reads the accounts part of the status snapshot (:func:`proxy.status.status_snapshot`) and
gives the ``summary`` of ``headway status --json`` and ``/status``. The tray icon, its tooltip, the menu header,
``headway status`` and the settings page all render this one dictionary; none of them judges health itself.

States, for the pool of enabled accounts:

- ``paused`` — the gateway is paused (the other fields still say how the accounts are).
- ``unknown`` — nothing is known: no enabled account, or none has answered a request or a usage poll yet.
- ``needs_login`` — no account is ready and none will be by itself: each needs a login or a new key.
- ``exhausted`` — no account is ready; ``next_reset`` says when the first one is usable again.
- ``critical`` / ``low`` / ``healthy`` — at least one account is ready: the headroom of the best ready account
  of the tightest family. An account whose short (per-minute) windows simply expired is healthy: what was last seen
  was fine and it has not failed since. A subscription window (5 h, weekly) that, at the pace it has been used
  since it started, runs dry well before it resets counts as low even with plenty left.

Some accounts blocked while others are ready is pool health plus ``ready`` < ``total`` ("4/5 ready"), not the
worst account; ``attention`` then says what the icon's corner badge is for. A family with no account ready while
another has one (every Anthropic key rate-limited, the ChatGPT account fine) is named first in the headline
("Anthropic blocked · 1/3 ready · 99% left": the share left is the other family's) and listed in
``blocked_families``: the agents of that family get errors, so "Healthy" must not lead. Pure: no I/O, any thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from proxy.durations import format_duration

__all__ = [
    "BLOCKED_HEALTH",
    "CRITICAL_PERCENT",
    "LOGIN_HEALTH",
    "LOW_PERCENT",
    "STALE_AFTER_SECONDS",
    "STATES",
    "account_line",
    "health_summary",
    "shown_percent",
    "window_label",
]

STATES = ("healthy", "low", "critical", "exhausted", "needs_login", "paused", "unknown")
LOW_PERCENT = 20.0
CRITICAL_PERCENT = 5.0
#: Quota seen longer ago than this says nothing about now.
STALE_AFTER_SECONDS = 6 * 3600.0
#: A window is "hot" when, at its pace so far, it would be empty before this share of its time to reset.
PACE_MARGIN = 0.8
#: Pace is judged once this share of the window has gone by (too noisy before): "enough history".
PACE_MIN_ELAPSED = 0.1

LOGIN_HEALTH = {
    "needs_login": "needs login",
    "auth_failed": "key rejected — replace it in settings",
    "no_secret": "no key stored",
}
#: Health states that keep an account out of routing until a time, as lines say them.
BLOCKED_HEALTH = {
    "cooling_down": "rate-limited, back in {wait}",
    "exhausted": "out of quota, resets in {wait}",
    "killswitch": "held back by its killswitch, resets in {wait}",
    "over_budget": "over its budget, resets in {wait}",
}
#: Health states of an account the gateway does not use at all, as lines say them.
OUT_OF_SERVICE = {
    "disabled": "disabled",
    "not_shared": "not used: a personal subscription in a shared gateway",
}
_SEVERITY = {"healthy": 0, "unknown": 0, "low": 1, "critical": 2}
_WINDOW_NAMES = {"weekly": "week", "input-tokens": "input", "output-tokens": "output"}
_FAMILY_NAMES = {"anthropic": "Anthropic", "openai": "OpenAI"}
_HEADLINES = {
    "healthy": "Healthy",
    "low": "Running low",
    "critical": "Almost out",
    "exhausted": "All blocked",
    "needs_login": "Needs login",
    "paused": "Gateway paused",
    "unknown": "Quota unknown",
}


def window_label(name: str) -> str:
    return _WINDOW_NAMES.get(name, name)


def shown_percent(value: float) -> int:
    """Rounded down (never promise headroom that is not there), but a sliver left is 1, not 0."""
    return max(1, int(value)) if value > 0 else 0


# --------------------------------------------------------------------------- one window, one account


def _pace(window: Mapping[str, Any]) -> tuple[float | None, bool]:
    """(seconds until empty at the pace so far when that is before the reset, hot?) — for windows of known length
    with enough of them gone by; (None, False) otherwise."""
    minutes, resets_in = window.get("window_minutes"), window.get("resets_in_seconds")
    if not minutes or resets_in is None:
        return None, False
    length = float(minutes) * 60
    elapsed = length - float(resets_in)
    used = 1 - float(window["remaining_percent"]) / 100
    if elapsed < PACE_MIN_ELAPSED * length or used <= 0 or used >= 1:
        return None, False
    to_empty = (1 - used) * elapsed / used
    if to_empty >= float(resets_in):
        return None, False
    return to_empty, to_empty < float(resets_in) * PACE_MARGIN


def _usable_windows(account: Mapping[str, Any], now: float) -> list[dict[str, Any]]:
    """The account's current, fresh windows with a known share left, each with its pace."""
    quota = account.get("quota") or {}
    updated = quota.get("updated_at")
    if updated is None or now - float(updated) > STALE_AFTER_SECONDS:
        return []
    windows = []
    for w in quota.get("windows") or ():
        if not w.get("current", True) or w.get("remaining_percent") is None:
            continue
        runs_out_in, hot = _pace(w)
        windows.append(
            {
                "name": str(w["name"]),
                "remaining_percent": float(w["remaining_percent"]),
                "remaining": w.get("remaining"),
                "limit": w.get("limit"),
                "resets_at": w.get("resets_at"),
                "resets_in_seconds": w.get("resets_in_seconds"),
                "window_minutes": w.get("window_minutes"),
                "runs_out_in_seconds": None if runs_out_in is None else round(runs_out_in, 1),
                "hot": hot,
            }
        )
    return windows


def _window_level(window: Mapping[str, Any]) -> str:
    left = float(window["remaining_percent"])
    if left <= CRITICAL_PERCENT:
        return "critical"
    if left <= LOW_PERCENT or window["hot"]:
        return "low"
    return "healthy"


def _window_text(window: Mapping[str, Any], *, with_reset: bool) -> str:
    text = f"{window_label(window['name'])}: {shown_percent(window['remaining_percent'])}% left"
    if with_reset and window.get("resets_in_seconds") is not None:
        text += f", resets in {format_duration(window['resets_in_seconds'])}"
    if window.get("runs_out_in_seconds") is not None:
        text += f", runs out in ~{format_duration(window['runs_out_in_seconds'])} at this rate"
    return text


def account_line(account: Mapping[str, Any], entry: Mapping[str, Any]) -> str:
    """``work · 5h: 38% left, resets in 1h 12m · week: 71% left`` (the reset of the tightest window)."""
    label = str(account.get("label") or account.get("id") or "?")
    health = str(account.get("health") or "healthy")
    if not entry["enabled"]:
        return f"{label} · {OUT_OF_SERVICE.get(health, 'disabled')}"
    if health in LOGIN_HEALTH:
        return f"{label} · {LOGIN_HEALTH[health]}"
    parts = [label]
    windows = entry["windows"]
    if health in BLOCKED_HEALTH:
        parts.append(BLOCKED_HEALTH[health].format(wait=format_duration(account.get("blocked_for_seconds"))))
    elif entry["state"] == "exhausted":
        empty = next(w for w in windows if w["remaining_percent"] <= 0)
        parts.append(
            f"out of {window_label(empty['name'])} quota, resets in {format_duration(empty['resets_in_seconds'])}"
        )
    elif health != "healthy":
        parts.append(health.replace("_", " "))
    if windows:
        tightest = min(windows, key=lambda w: w["remaining_percent"])
        parts.extend(_window_text(w, with_reset=w is tightest) for w in windows if w["remaining_percent"] > 0)
    elif entry["state"] == "unknown":
        parts.append("quota unknown until the first request")
    elif entry["state"] == "healthy":
        parts.append("ready (its last quota has reset)")
    return " · ".join(parts)


def _account_entry(account: Mapping[str, Any], now: float) -> dict[str, Any]:
    health = str(account.get("health") or "healthy")
    enabled = bool(account.get("enabled", True)) and health not in OUT_OF_SERVICE
    windows = _usable_windows(account, now)
    until: float | None = None
    percent: float | None = None
    if not enabled:
        state = "disabled"
    elif health in LOGIN_HEALTH:
        state = "needs_login"
    elif health in BLOCKED_HEALTH:
        state = "exhausted"
        until = account.get("blocked_until")
        if until is None and account.get("blocked_for_seconds") is not None:
            until = now + float(account["blocked_for_seconds"])
    elif any(w["remaining_percent"] <= 0 for w in windows):
        state = "exhausted"
        empty = [w for w in windows if w["remaining_percent"] <= 0]
        resets = [float(w["resets_at"]) for w in empty if w.get("resets_at") is not None]
        until = max(resets) if len(resets) == len(empty) else None
        percent = 0.0
    elif windows:
        tightest = min(windows, key=lambda w: w["remaining_percent"])
        percent = tightest["remaining_percent"]
        state = max((_window_level(w) for w in windows), key=_SEVERITY.__getitem__)
    elif account.get("quota") is None and not account.get("last_ok_at") and not account.get("last_used_at"):
        state = "unknown"
    else:
        state = "healthy"  # what was last seen has expired or reset, and the account has not failed since
    entry: dict[str, Any] = {
        "id": account.get("id"),
        "label": str(account.get("label") or account.get("id") or "?"),
        "family": str(account.get("family") or ""),
        "enabled": enabled,
        "state": state,
        "ready": enabled and state not in ("needs_login", "exhausted"),
        "until": until,
        "percent": percent,
        "windows": windows,
        "serving": False,
    }
    entry["line"] = account_line(account, entry)
    return entry


# --------------------------------------------------------------------------- the pool


def _last_used(account: Mapping[str, Any]) -> float:
    value = account.get("last_used_at") or account.get("last_ok_at")
    return float(value) if value else 0.0


def _mark_serving(
    accounts: Sequence[Mapping[str, Any]], entries: Sequence[dict[str, Any]], routing: str | None
) -> None:
    """Per family, the account in use: the ready one that served last, else the first ready one in routing order."""
    families: dict[str, list[int]] = {}
    for index, entry in enumerate(entries):
        if entry["enabled"]:
            families.setdefault(entry["family"], []).append(index)
    for members in families.values():
        ready = [i for i in members if entries[i]["ready"]]
        if not ready:
            continue
        used = max(ready, key=lambda i: _last_used(accounts[i]))
        if _last_used(accounts[used]) <= 0:
            order = (
                [*ready[1:], ready[0]] if routing == "fallback-first" and ready[0] == members[0] else ready
            )
            used = order[0]
        entries[used]["serving"] = True


def _best(entries: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The ready account with the most headroom (known headroom first; a healthy account of unknown share next)."""

    def rank(e: Mapping[str, Any]) -> tuple[int, float]:
        return (-_SEVERITY[e["state"]], -1.0 if e["percent"] is None else e["percent"])

    known = [e for e in entries if e["ready"] and e["state"] != "unknown"]
    return max(known, key=rank, default=None)


def _headline(summary: Mapping[str, Any], now: float) -> str:
    state, ready, total = summary["state"], summary["ready"], summary["total"]
    parts = [_HEADLINES[state]]
    blocked = summary.get("blocked_families") or []
    if blocked and state in ("healthy", "low", "critical"):
        parts[0] = f"{' and '.join(blocked)} blocked"  # what the other family's health would hide
    elif blocked and state == "unknown":
        parts.insert(0, f"{' and '.join(blocked)} blocked")
    if state == "unknown" and total == 0:
        return (
            "No accounts yet — add one in settings"
            if not summary["accounts"]
            else "All accounts are disabled"
        )
    if total:
        parts.append(f"{ready}/{total} ready")
    if state in ("healthy", "low", "critical") and summary["percent"] is not None:
        text = f"{shown_percent(summary['percent'])}% left"
        if summary.get("runs_out_in") is not None:
            text += f", runs out in ~{format_duration(summary['runs_out_in'])}"
        parts.append(text)
    if state == "unknown" and ready:
        parts[-1] += " — until the first request"
    reset = summary["next_reset"]
    if blocked:  # when the blocked family is back, not when some other account is
        backs = [f["next_reset"] for f in summary["families"] if f["name"] in blocked and f["next_reset"]]
        reset = min(backs, default=reset)
    if reset is not None and (state == "exhausted" or ready < total):
        parts.append(f"next back in {format_duration(reset - now)}")
    return " · ".join(parts)


def health_summary(
    accounts: Sequence[Mapping[str, Any]],
    now: float,
    *,
    paused: bool = False,
    routing: str | None = None,
) -> dict[str, Any]:
    """The pool's health from the status snapshot's accounts (see the module docstring)."""
    entries = [_account_entry(a, now) for a in accounts]
    _mark_serving(accounts, entries, routing)
    enabled = [e for e in entries if e["enabled"]]
    ready = [e for e in enabled if e["ready"]]
    waits = [e["until"] for e in enabled if not e["ready"] and e["until"] is not None]
    next_reset = min(waits, default=None)

    families: list[dict[str, Any]] = []
    for family in dict.fromkeys(e["family"] for e in enabled):
        members = [e for e in enabled if e["family"] == family]
        best = _best(members)
        blocked = [e["until"] for e in members if not e["ready"] and e["until"] is not None]
        families.append(
            {
                "family": family,
                "name": _FAMILY_NAMES.get(family, family),
                "ready": sum(1 for e in members if e["ready"]),
                "total": len(members),
                "state": None if best is None else best["state"],
                "percent": None if best is None else best["percent"],
                "next_reset": min(blocked, default=None),
            }
        )

    percent: float | None = None
    runs_out_in: float | None = None
    if not enabled:
        state = "unknown"
    elif not ready:
        state = "exhausted" if next_reset is not None else "needs_login"
    else:
        known = [f for f in families if f["state"] is not None]
        if not known:
            state = "unknown"
        else:
            tightest = max(known, key=lambda f: (_SEVERITY[f["state"]], -(f["percent"] or 100.0)))
            state, percent = tightest["state"], tightest["percent"]
            best = _best(e for e in enabled if e["family"] == tightest["family"])
            if best is not None and best["windows"]:
                paced = [
                    w["runs_out_in_seconds"] for w in best["windows"] if w["runs_out_in_seconds"] is not None
                ]
                runs_out_in = min(paced, default=None)
    if paused:
        state = "paused"

    # families with nothing ready while another family serves: their agents get errors
    blocked_families = [f["name"] for f in families if f["ready"] == 0] if ready else []
    attention: str | None = None
    if state != "needs_login" and any(e["state"] == "needs_login" for e in enabled):
        attention = "needs_login"
    elif blocked_families:
        attention = "blocked"

    summary: dict[str, Any] = {
        "state": state,
        "ready": len(ready),
        "total": len(enabled),
        "next_reset": next_reset,
        "percent": percent,
        "runs_out_in": runs_out_in,
        "attention": attention,
        "blocked_families": blocked_families,
        "families": families,
        "accounts": [
            {k: v for k, v in e.items() if k not in ("until",)} | {"blocked_until": e["until"]}
            for e in entries
        ],
        "computed_at": now,
    }
    summary["headline"] = _headline(summary, now)
    lines = [e["line"] for e in enabled]
    for family in families:
        if family["name"] in blocked_families:
            back = family["next_reset"]
            when = f", next back in {format_duration(back - now)}" if back is not None else ""
            lines.append(f"{family['name']}: no account ready{when}")
    summary["lines"] = lines
    summary["tooltip"] = "\n".join([f"Headway — {summary['headline']}", *lines])
    return summary
