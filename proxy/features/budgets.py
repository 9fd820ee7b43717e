"""Budgets: an API-key account stops taking requests once its estimated spend reaches its daily or monthly cap.

Each finished request's cost (:func:`proxy.features.pricing.estimate_cost`, on the account that answered) is added
to the account's spend for the current local day and month. A model the price table does not know adds nothing to
the spend — its tokens are counted and the status says the price is unknown, never a guess. Reaching a cap makes
:meth:`Budgets.allows` skip the account with a ``Block("over_budget", …)`` until local midnight (the first of the
next month), so the forwarder falls back to the next account, and answers 429 naming the budgets when none is left.

Spend survives restarts: :meth:`Budgets.run` seeds it, off the loop, from the request log's rows of the current day
and month written before this feature started; everything after comes from ``on_complete``. Until the seed is in,
the spend counts this run's requests only. Periods are in local time from an injectable clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from proxy.config.settings import Account, Settings
from proxy.features.base import Completed, Feature
from proxy.features.pricing import estimate_cost
from proxy.features.request_log import RequestLog
from proxy.providers.base import Incoming
from proxy.routing.health import Block

__all__ = ["WARN_FRACTION", "Budgets", "day_start", "month_start", "next_day", "next_month"]

log = logging.getLogger("headway.budgets")

WARN_FRACTION = 0.8  # the status (and the tray's notification) warns from this share of a cap


def day_start(now: float) -> float:
    """Local midnight before ``now``."""
    return datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def next_day(now: float) -> float:
    """The next local midnight after ``now`` (a calendar day: 23 or 25 hours across a DST change)."""
    today = datetime.fromtimestamp(now).date()
    return datetime.fromordinal(today.toordinal() + 1).timestamp()


def month_start(now: float) -> float:
    """Local midnight of the first day of ``now``'s month."""
    return datetime.fromtimestamp(now).replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def next_month(now: float) -> float:
    """Local midnight of the first day of the month after ``now``'s."""
    d = datetime.fromtimestamp(now)
    return datetime(d.year + (d.month == 12), d.month % 12 + 1, 1).timestamp()


@dataclass
class Spend:
    """One account's spend in one period."""

    start: float  # the period's start (local midnight, or the month's first)
    cost_usd: float = 0.0
    unpriced_tokens: int = 0
    unpriced_models: set[str] = field(default_factory=set)


class Budgets(Feature):
    name = "budgets"

    def __init__(self, log_: RequestLog, *, clock: Callable[[], float] = time.time) -> None:
        self._log = log_
        self._clock = clock
        self._started = clock()  # rows before this come from the request log, after it from on_complete
        self._day: dict[str, Spend] = {}
        self._month: dict[str, Spend] = {}
        self._accounts: dict[str, Account] = {}
        self.seeded = asyncio.Event()

    def configure(self, settings: Settings) -> None:
        self._accounts = {a.id: a for a in settings.accounts}

    async def run(self) -> None:
        try:
            await asyncio.to_thread(self.seed)
        except Exception:
            log.exception("cannot read this month's spend from the request log; budgets count from now")
        self.seeded.set()

    def seed(self) -> None:
        """Take this month's and today's spend until the start from the request log (blocking: SQLite)."""
        now = self._started
        rows = self._log.spend(month_start=month_start(now), day_start=day_start(now), before=now)
        for account_id, period, cost, tokens in rows:
            book, start = (self._day, day_start(now)) if period == "day" else (self._month, month_start(now))
            spend = self._current(book, account_id, start)
            if spend.start == start:  # not when the period turned while the log was read
                spend.cost_usd += cost
                spend.unpriced_tokens += tokens

    # -- hooks ---------------------------------------------------------------------------------------------------

    def allows(self, request: Incoming, account: Account, now: float) -> Block | None:
        return self.block(account, now)

    def block(self, account: Account, now: float) -> Block | None:
        """The over-budget block of ``account`` at ``now``, or None."""
        budget = self._accounts.get(account.id, account).budget
        if budget is None:
            return None
        reached = []
        until = None
        day = self.spent(account.id, now, "day")
        if budget.daily_usd is not None and day.cost_usd >= budget.daily_usd:
            reached.append(f"daily budget ${budget.daily_usd:g} reached (${day.cost_usd:.2f} today)")
            until = next_day(now)
        month = self.spent(account.id, now, "month")
        if budget.monthly_usd is not None and month.cost_usd >= budget.monthly_usd:
            reached.append(
                f"monthly budget ${budget.monthly_usd:g} reached (${month.cost_usd:.2f} this month)"
            )
            until = next_month(now)
        if not reached:
            return None
        monthly = budget.monthly_usd is not None and month.cost_usd >= budget.monthly_usd
        when = "on the 1st of next month" if monthly else "at local midnight"
        return Block("over_budget", f"{'; '.join(reached)}; resets {when}", until)

    def on_complete(self, done: Completed) -> None:
        account, usage, model = done.account, done.usage, done.model
        if account is None or usage is None or done.billing is None:
            return
        provider = "anthropic" if account.family == "anthropic" else "openai"
        cost = estimate_cost(provider, model or "", usage, billing=done.billing)
        at = done.finished_at
        for book, start in ((self._day, day_start(at)), (self._month, month_start(at))):
            spend = self._current(book, account.id, start)
            if cost is None:
                spend.unpriced_tokens += (
                    usage.input_tokens
                    + usage.output_tokens
                    + usage.cache_read_tokens
                    + usage.cache_write_tokens
                )
                spend.unpriced_models.add(model or "(no model named)")
            else:
                spend.cost_usd += cost

    # -- reading -------------------------------------------------------------------------------------------------

    def spent(self, account_id: str, now: float, period: str) -> Spend:
        """The account's spend in the ``period`` ("day" or "month") holding ``now``; a pure read."""
        book, start = (self._day, day_start(now)) if period == "day" else (self._month, month_start(now))
        spend = book.get(account_id)
        return spend if spend is not None and spend.start == start else Spend(start)

    def snapshot(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """Each budgeted account's state for the status: spend, caps, share used, resets, unknown prices."""
        now = self._clock() if now is None else now
        out: dict[str, dict[str, Any]] = {}
        for account in self._accounts.values():
            budget = account.budget
            if budget is None:
                continue
            day, month = self.spent(account.id, now, "day"), self.spent(account.id, now, "month")
            used = [
                day.cost_usd / budget.daily_usd if budget.daily_usd else 0.0,
                month.cost_usd / budget.monthly_usd if budget.monthly_usd else 0.0,
            ]
            block = self.block(account, now)
            out[account.id] = {
                "daily_usd": budget.daily_usd,
                "monthly_usd": budget.monthly_usd,
                "spent_today_usd": round(day.cost_usd, 6),
                "spent_month_usd": round(month.cost_usd, 6),
                "used_percent": round(max(used) * 100, 1),
                "state": "over_budget" if block else ("warning" if max(used) >= WARN_FRACTION else "ok"),
                "detail": block.reason if block else None,
                "day_resets_at": next_day(now),
                "month_resets_at": next_month(now),
                "blocked_until": block.until if block else None,
                "unpriced_tokens": month.unpriced_tokens,
                "unpriced_models": sorted(month.unpriced_models | day.unpriced_models),
                "seeded": self.seeded.is_set(),
            }
        return out

    @classmethod
    def from_log(cls, log_: RequestLog, settings: Settings, now: float) -> Budgets:
        """The budgets as the request log has them at ``now`` (``headway status`` while no gateway runs); raises
        :class:`~proxy.features.request_log.RequestLogError` when the log cannot be read."""
        budgets = cls(log_, clock=lambda: now)
        budgets.configure(settings)
        if any(a.budget is not None for a in settings.accounts):
            budgets.seed()
        budgets.seeded.set()
        return budgets

    def _current(self, book: dict[str, Spend], account_id: str, start: float) -> Spend:
        spend = book.get(account_id)
        if spend is None or spend.start < start:  # a new day / month: the old period's spend is done
            spend = book[account_id] = Spend(start)
        return spend
