"""Prometheus metrics at ``GET /metrics`` (the local access key as Bearer), from every finished request.

The registry is this feature's own (no global one): requests by account, route, status and member; upstream
latency and time to first content; fallbacks; tokens and estimated cost; and, read from the engine's books at
scrape time, quota remaining per account and window, member spend today and the shared state's connection.
Label values are bounded: accounts and members come from the settings and the members list, routes from the
gateway's fixed set, statuses from HTTP.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from proxy.features.base import Completed, Feature
from proxy.features.costs import request_cost

if TYPE_CHECKING:
    from proxy.routing.quota import QuotaBook
    from proxy.shared.team import Team

__all__ = ["LOCAL_MEMBER", "Metrics"]

LOCAL_MEMBER = "local"  # the member label of a request made with the local access key
_NONE = "none"  # the account label of a request no account answered
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")


class _Books(Collector):
    """Gauges read when Prometheus scrapes (on the engine loop, like every reader of the books)."""

    def __init__(self, quota: Callable[[], QuotaBook], team: Team | None, clock: Callable[[], float]) -> None:
        self._quota = quota
        self._team = team
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        remaining = GaugeMetricFamily(
            "headway_quota_remaining_ratio",
            "Share of the quota window left (0..1), as the upstream last reported it",
            labels=["account", "window"],
        )
        for account_id, snapshot in sorted(self._quota().snapshots.items()):
            for window in snapshot.current_windows(now):
                fraction = window.remaining_fraction
                if fraction is not None:
                    remaining.add_metric([account_id, window.name], fraction)
        yield remaining
        if self._team is None:
            return
        spend = GaugeMetricFamily(
            "headway_member_spend_usd_today", "Estimated spend per member this UTC day", labels=["member"]
        )
        for member, dollars in sorted(self._team.spend.totals()[1].items()):
            spend.add_metric([member], dollars)
        yield spend
        yield GaugeMetricFamily(
            "headway_member_keys", "Member keys this gateway accepts", value=len(self._team.members)
        )
        link = self._team.link
        if link is not None:
            yield GaugeMetricFamily(
                "headway_shared_state_connected",
                "1 while the shared state (Redis) is connected",
                value=int(link.connected),
            )


class Metrics(Feature):
    name = "metrics"

    def __init__(
        self,
        quota: Callable[[], QuotaBook],
        *,
        team: Team | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "headway_requests",
            "Agent requests by the account that answered, route, status and member",
            ["account", "route", "status", "member"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "headway_upstream_latency_seconds",
            "From the request's arrival to its last byte, per answering account and route",
            ["account", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.first_content = Histogram(
            "headway_time_to_first_content_seconds",
            "From the request's arrival to the first byte of content sent to the agent",
            ["account", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fallbacks = Counter(
            "headway_fallbacks",
            "Requests that were tried on more than one account (or again on one), per route",
            ["route"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "headway_tokens",
            "Tokens per answering account, member and kind (input is uncached input)",
            ["account", "member", "kind"],
            registry=self.registry,
        )
        self.cost = Counter(
            "headway_cost_usd",
            "Estimated cost in USD (metered accounts; subscriptions count 0)",
            ["account", "member"],
            registry=self.registry,
        )
        self.registry.register(_Books(quota, team, clock or time.time))

    def on_complete(self, done: Completed) -> None:
        request = done.request
        account = done.account.id if done.account is not None else _NONE
        member = request.member or LOCAL_MEMBER
        route = request.path
        self.requests.labels(account, route, str(done.status), member).inc()
        if done.account is not None:
            self.latency.labels(account, route).observe(done.latency_ms / 1000)
            if done.ttfb_ms is not None:
                self.first_content.labels(account, route).observe(done.ttfb_ms / 1000)
        if len(done.chain) > 1:
            self.fallbacks.labels(route).inc()
        usage = done.usage
        if usage is not None:
            for kind, count in zip(
                _TOKEN_KINDS,
                (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens),
                strict=True,
            ):
                if count:
                    self.tokens.labels(account, member, kind).inc(count)
            dollars = request_cost(done)
            if dollars:
                self.cost.labels(account, member).inc(dollars)

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus scrapes, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
