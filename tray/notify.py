"""Desktop notifications derived from successive status snapshots, and how often they may be shown.

:func:`derive` compares two ``Engine.status()`` snapshots and says what the user should hear about:

- requests fell back to another account (the one serving before is now rate-limited, out of quota or locked out),
- an account ran out of quota (with its reset time) or was rate-limited,
- an account needs login, or its key was rejected,
- a subscription window crossed 80 % or 95 % used,
- an API-key account's budget crossed 80 % of a cap, or reached it,
- a new gateway port could not be taken (the engine's ``listen_error``; it keeps serving on the old one),
- the whole pool ran out (with the time the first account is back), or is back; an account is back.

Pool and account states come from the status ``summary`` (:mod:`proxy.routing.summary`), not judged here. When the
pool runs out, that one notice stands for the accounts that ran out with it; several accounts changing the same way
in one snapshot make one notice. Each kind has a switch in the ``notifications`` settings (:func:`wanted`).

Threshold crossings are reported only for windows with a known length (the ChatGPT 5-hour and weekly windows):
per-minute API windows refill continuously, so "80 % used" there would fire and clear all day.

:class:`Throttle` keeps them rare: once per key within :data:`PER_KEY_SECONDS`, and at most :data:`BURST` in
:data:`BURST_SECONDS` overall. Pure; the tray thread shows what passes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.config.settings import NotificationSettings
from proxy.durations import format_duration
from proxy.routing.summary import BLOCKED_HEALTH as BLOCKED_UNTIL_RESET
from proxy.routing.summary import window_label

__all__ = [
    "BURST",
    "BURST_SECONDS",
    "PER_KEY_SECONDS",
    "THRESHOLDS",
    "Notice",
    "Throttle",
    "derive",
    "wanted",
]

#: (percent used, remaining at or below which it counts as crossed)
THRESHOLDS: tuple[tuple[int, float], ...] = ((95, 5.0), (80, 20.0))
PER_KEY_SECONDS = 30 * 60.0
BURST = 3
BURST_SECONDS = 60.0

#: health → (title suffix, what to do)
_LOGIN = {
    "needs_login": ("needs login", "Open Headway's settings to sign in again."),
    "auth_failed": ("key was rejected", "Replace its key in Headway's settings."),
}


@dataclass(frozen=True)
class Notice:
    key: tuple[str, ...]
    title: str
    message: str
    #: The account it is about (its label), when it is about one.
    label: str = ""


#: How several accounts changing the same way in one snapshot are told, in one notice.
_MANY = {
    "needs_login": ("{n} accounts need login", "Open Headway's settings to sign in again."),
    "auth_failed": ("{n} accounts had their keys rejected", "Replace them in Headway's settings."),
    "exhausted": ("{n} accounts are out of quota", "Requests go to the accounts left."),
    "recovered": ("{n} accounts are back", "They take requests again."),
    "fallback": ("Headway fell back", "Requests now go to other accounts."),
    "over_budget": ("{n} accounts are over budget", "They are skipped until their budgets reset."),
    "budget_warning": ("{n} accounts used 80 % of a budget", "Each is skipped once it reaches its budget."),
}


#: Notice kind (its key's first part) → the ``notifications`` switch that governs it (none: always shown).
SWITCHES = {
    "pool_exhausted": "exhausted",
    "exhausted": "exhausted",
    "fallback": "exhausted",
    "needs_login": "needs_login",
    "auth_failed": "needs_login",
    "recovered": "recovered",
    "pool_recovered": "recovered",
    "threshold": "low_quota",
    "over_budget": "exhausted",
    "budget_warning": "low_quota",
}


def wanted(notice: Notice, switches: NotificationSettings) -> bool:
    """Whether the user's ``notifications`` settings let this notice through."""
    switch = SWITCHES.get(notice.key[0])
    return switch is None or bool(getattr(switches, switch))


def _accounts(status: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    return {str(a["id"]): a for a in (status or {}).get("accounts") or () if "id" in a}


def _windows(account: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    quota = account.get("quota") or {}
    return {
        str(w["name"]): w
        for w in quota.get("windows") or ()
        if w.get("current", True) and w.get("remaining_percent") is not None
    }


def _label(account: Mapping[str, Any]) -> str:
    return str(account.get("label") or account.get("id"))


def _empty_window(account: Mapping[str, Any]) -> Mapping[str, Any] | None:
    return next((w for w in _windows(account).values() if float(w["remaining_percent"]) <= 0), None)


def _exhausted(account: Mapping[str, Any]) -> bool:
    over_budget = account.get("health") == "over_budget"  # told by _budget_notices, not as "out of quota"
    return (account.get("health") in BLOCKED_UNTIL_RESET and not over_budget) or _empty_window(
        account
    ) is not None


def _blocked_text(account: Mapping[str, Any]) -> str:
    """``rate-limited, back in 4m`` / ``out of quota, resets in 1h 12m`` / ``held back by its killswitch, …``"""
    wait = format_duration(account.get("blocked_for_seconds"))
    return BLOCKED_UNTIL_RESET[str(account.get("health"))].format(wait=wait)


def _why_unusable(account: Mapping[str, Any]) -> str | None:
    health = account.get("health")
    if health in _LOGIN:
        return "needs login" if health == "needs_login" else "had its key rejected"
    if health in BLOCKED_UNTIL_RESET:
        return f"is {_blocked_text(account)}"
    empty = _empty_window(account)
    if empty is not None:
        return f"is out of {window_label(str(empty['name']))} quota"
    if health not in (None, "healthy"):
        return f"is {str(health).replace('_', ' ')}"
    return None


def _last_used(account: Mapping[str, Any]) -> float:
    value = account.get("last_used_at") or account.get("last_ok_at")
    return float(value) if value else 0.0


def _serving(accounts: Mapping[str, Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Per family, the account that served the most recent request."""
    serving: dict[str, Mapping[str, Any]] = {}
    for account in accounts.values():
        family = str(account.get("family", ""))
        if _last_used(account) > 0 and (
            family not in serving or _last_used(account) > _last_used(serving[family])
        ):
            serving[family] = account
    return serving


def _summary_accounts(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    summary = status.get("summary") or {}
    return {str(a["id"]): a for a in summary.get("accounts") or () if a.get("id") is not None}


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M", time.localtime(epoch))


def _pool_notices(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[Notice]:
    was, now = previous.get("summary") or {}, current.get("summary") or {}
    before, after = str(was.get("state") or ""), str(now.get("state") or "")
    notices = []
    if after == "exhausted" and before not in ("exhausted", "paused"):
        reset = now.get("next_reset")
        computed = float(now.get("computed_at") or time.time())
        when = (
            f"The first one is back at {_clock(float(reset))} (in {format_duration(float(reset) - computed)})."
            if reset is not None
            else "Reset time unknown."
        )
        notices.append(
            Notice(("pool_exhausted",), "No account can take requests", f"Agents get errors. {when}")
        )
    if before in ("exhausted", "needs_login") and after in ("healthy", "low", "critical"):
        notices.append(Notice(("pool_recovered",), "Headway is back", str(now.get("headline") or "")))
    for account_id, entry in _summary_accounts(current).items():
        old = _summary_accounts(previous).get(account_id)
        if old is not None and old.get("enabled") and not old.get("ready") and entry.get("ready"):
            notices.append(
                Notice(
                    ("recovered", account_id),
                    f"{entry.get('label')} is back",
                    "It takes requests again.",
                    str(entry.get("label")),
                )
            )
    return notices


def _merge(notices: list[Notice]) -> list[Notice]:
    """One notice per kind per snapshot: a pool notice stands for its accounts; several accounts make one."""
    kinds = {n.key[0] for n in notices}
    if "pool_exhausted" in kinds:
        notices = [n for n in notices if n.key[0] not in ("exhausted", "fallback")]
    if "pool_recovered" in kinds:
        notices = [n for n in notices if n.key[0] != "recovered"]
    merged: list[Notice] = []
    for kind in dict.fromkeys(n.key[0] for n in notices):
        same = [n for n in notices if n.key[0] == kind]
        if len(same) == 1 or kind in ("threshold", "listen_error"):
            merged.extend(same)
            continue
        title, todo = _MANY[kind]
        names = ", ".join(n.label for n in same[:3]) + (f" and {len(same) - 3} more" if len(same) > 3 else "")
        key = (kind, *sorted(k for n in same for k in n.key[1:]))
        merged.append(Notice(key, title.format(n=len(same)), f"{names}. {todo}"))
    return merged


def derive(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[Notice]:
    """What changed between two snapshots that the user should be told about (nothing on the first one)."""
    if previous is None:
        return []
    return _merge([*_pool_notices(previous, current), *_account_notices(previous, current)])


def _account_notices(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[Notice]:
    before, after = _accounts(previous), _accounts(current)
    notices: list[Notice] = []

    listen_error = current.get("listen_error")
    if listen_error and listen_error != previous.get("listen_error"):
        notices.append(
            Notice(("listen_error", str(listen_error)), "Headway kept its old port", str(listen_error))
        )

    was_serving, now_serving = _serving(before), _serving(after)
    for family, new in now_serving.items():
        old = was_serving.get(family)
        if old is None or old["id"] == new["id"]:
            continue
        new_before = before.get(str(new["id"]))
        if new_before is not None and _last_used(new_before) >= _last_used(new):
            continue
        why = _why_unusable(after.get(str(old["id"]), old))
        if why is None:
            continue  # e.g. sticky routing spreading sessions: not a fallback
        notices.append(
            Notice(
                ("fallback", family, str(new["id"])),
                "Headway fell back",
                f"{_label(old)} {why}; requests now go to {_label(new)}.",
                _label(old),
            )
        )

    for account_id, account in after.items():
        old = before.get(account_id)
        if old is None:
            continue
        label = _label(account)
        health = account.get("health")
        if health in _LOGIN and old.get("health") != health:
            what, todo = _LOGIN[str(health)]
            notices.append(Notice((str(health), account_id), f"{label} {what}", todo, label))
            continue
        if _exhausted(account) and not _exhausted(old):
            empty = _empty_window(account)
            if empty is not None:
                reset = empty.get("resets_in_seconds")
                when = f"resets in {format_duration(reset)}" if reset is not None else "reset time unknown"
                message = f"{label} is out of {window_label(str(empty['name']))} quota; {when}."
            else:
                message = f"{label} is {_blocked_text(account).replace(', ', '; ', 1)}."
            notices.append(Notice(("exhausted", account_id), f"{label} is out of quota", message, label))
            continue
        old_windows = _windows(old)
        for name, window in _windows(account).items():
            prior = old_windows.get(name)
            if prior is None or not window.get("window_minutes"):
                continue
            was, now = float(prior["remaining_percent"]), float(window["remaining_percent"])
            for used, remaining in THRESHOLDS:
                if now <= 0 or not (now <= remaining < was):
                    continue
                reset = window.get("resets_in_seconds")
                tail = f", resets in {format_duration(reset)}" if reset is not None else ""
                notices.append(
                    Notice(
                        ("threshold", account_id, name, str(used)),
                        f"{label}: {used}% of the {window_label(name)} quota used",
                        f"{label} · {window_label(name)}: {int(now)}% left{tail}.",
                    )
                )
                break
    notices += _budget_notices(before, after)
    return notices


def _budget_notices(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> list[Notice]:
    """An account's budget (``status.accounts[].budget``) crossed 80 % of a cap, or reached it."""
    notices = []
    for account_id, account in after.items():
        budget, old = account.get("budget"), (before.get(account_id) or {}).get("budget")
        if not budget or not old or budget["state"] == old["state"]:
            continue
        label = _label(account)
        if budget["state"] == "over_budget":
            wait = format_duration(account.get("blocked_for_seconds"))
            notices.append(
                Notice(
                    ("over_budget", account_id),
                    f"{label} is over budget",
                    f"{budget['detail']} (in {wait}).",
                    label,
                )
            )
        elif budget["state"] == "warning" and old["state"] == "ok":
            notices.append(
                Notice(
                    ("budget_warning", account_id),
                    f"{label}: {budget['used_percent']:g}% of its budget used",
                    f"{label} is skipped once it reaches its budget"
                    + (f" (${budget['daily_usd']:g} a day)" if budget.get("daily_usd") else "")
                    + (f" (${budget['monthly_usd']:g} a month)" if budget.get("monthly_usd") else "")
                    + ".",
                    label,
                )
            )
    return notices


class Throttle:
    """Once per key within ``per_key`` seconds, and at most ``burst`` notices per ``burst_window`` seconds."""

    def __init__(
        self,
        per_key: float = PER_KEY_SECONDS,
        burst: int = BURST,
        burst_window: float = BURST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._per_key = per_key
        self._burst = burst
        self._burst_window = burst_window
        self._clock = clock
        self._last: dict[tuple[str, ...], float] = {}
        self._recent: deque[float] = deque()

    def allow(self, notice: Notice) -> bool:
        now = self._clock()
        last = self._last.get(notice.key)
        if last is not None and now - last < self._per_key:
            return False
        while self._recent and now - self._recent[0] >= self._burst_window:
            self._recent.popleft()
        if len(self._recent) >= self._burst:
            return False
        self._last[notice.key] = now
        self._recent.append(now)
        return True
