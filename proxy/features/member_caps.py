"""Per-member daily spend caps (``headway keys add NAME --daily-usd 5``).

``admit`` refuses a capped member's request once their estimated spend this UTC day has reached the cap (429 in
the agent's protocol, Retry-After until the day turns); ``on_complete`` adds each finished request's estimated
cost to the member's day (:class:`~proxy.routing.spend.SpendBook`; summed across replicas in team mode). The
cost of the request that crosses the cap is still served: a cap is checked before a request, never mid-answer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from proxy.features.base import Completed, Feature
from proxy.features.costs import request_cost
from proxy.wire.errors import HeadwayError, MemberCapReached

if TYPE_CHECKING:
    from proxy.providers.base import Incoming
    from proxy.shared.team import Team

__all__ = ["MemberCaps"]


def _until_midnight(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    midnight = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight.timestamp() - now


class MemberCaps(Feature):
    name = "member_caps"

    def __init__(self, team: Team, *, clock: Callable[[], float] = time.time) -> None:
        self._team = team
        self._clock = clock

    def admit(self, request: Incoming) -> HeadwayError | None:
        if request.member is None:
            return None
        member = self._team.member(request.member)
        if member is None or member.daily_usd is None:
            return None
        spent = self._team.spend.today(member.name)
        if spent < member.daily_usd:
            return None
        wait = _until_midnight(self._clock())
        return MemberCapReached(
            f"member {member.name} has reached the daily cap of ${member.daily_usd:g} "
            f"(${spent:.2f} spent today, UTC); it resets at 00:00 UTC",
            headers={"retry-after": str(max(1, math.ceil(wait)))},
        )

    def on_complete(self, done: Completed) -> None:
        member = done.request.member
        if member is None:
            return
        dollars = request_cost(done)
        if dollars:
            self._team.spend.add(member, dollars)
