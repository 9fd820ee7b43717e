"""Prometheus metrics at ``GET /metrics`` (the local access key as Bearer), from every finished request.

The registry is this feature's own (no global one): requests by account, route, status and member; upstream
latency and time to first content; fallbacks; tokens and estimated cost; and, read from the engine's books at
scrape time, quota remaining per account and window, member spend today and the shared state's connection.
Label values are bounded: accounts and members come from the settings and the members list, routes from the
gateway's fixed set, statuses from HTTP.

Each finished request only adds to plain counters here, on the loop; ``prometheus_client`` is imported on the first
scrape (:mod:`proxy.features.metrics_export` turns the counters into its metric families), so a gateway nobody
scrapes never loads it.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from proxy.features.base import Completed, Feature
from proxy.features.costs import request_cost

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from proxy.routing.quota import QuotaBook
    from proxy.shared.team import Team

__all__ = ["LOCAL_MEMBER", "Counted", "Metrics", "Observed"]

LOCAL_MEMBER = "local"  # the member label of a request made with the local access key
_NONE = "none"  # the account label of a request no account answered
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")

Labels = tuple[str, ...]


@dataclass
class Counted:
    """A counter per label values (Prometheus: a counter family, ``<name>_total``)."""

    name: str
    help: str
    labels: Labels
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount


@dataclass
class Observed:
    """A histogram per label values: counts per bucket (the last one above every bound) and the sum."""

    name: str
    help: str
    labels: Labels
    buckets: tuple[float, ...]
    counts: dict[Labels, list[int]] = field(default_factory=dict)
    sums: dict[Labels, float] = field(default_factory=dict)

    def observe(self, labels: Labels, value: float) -> None:
        counts = self.counts.get(labels)
        if counts is None:
            counts = self.counts[labels] = [0] * (len(self.buckets) + 1)
        counts[bisect_left(self.buckets, value)] += 1  # a value equal to a bound belongs to that bucket (le)
        self.sums[labels] = self.sums.get(labels, 0.0) + value


class Metrics(Feature):
    name = "metrics"

    def __init__(
        self,
        quota: Callable[[], QuotaBook],
        *,
        team: Team | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.quota = quota
        self.team = team
        self.clock = clock or time.time
        self.requests = Counted(
            "headway_requests",
            "Agent requests by the account that answered, route, status and member",
            ("account", "route", "status", "member"),
        )
        self.latency = Observed(
            "headway_upstream_latency_seconds",
            "From the request's arrival to its last byte, per answering account and route",
            ("account", "route"),
            _LATENCY_BUCKETS,
        )
        self.first_content = Observed(
            "headway_time_to_first_content_seconds",
            "From the request's arrival to the first byte of content sent to the agent",
            ("account", "route"),
            _LATENCY_BUCKETS,
        )
        self.fallbacks = Counted(
            "headway_fallbacks",
            "Requests that were tried on more than one account (or again on one), per route",
            ("route",),
        )
        self.tokens = Counted(
            "headway_tokens",
            "Tokens per answering account, member and kind (input is uncached input)",
            ("account", "member", "kind"),
        )
        self.cost = Counted(
            "headway_cost_usd",
            "Estimated cost in USD (metered accounts; subscriptions count 0)",
            ("account", "member"),
        )
        self._registry: CollectorRegistry | None = None

    @property
    def counters(self) -> tuple[Counted, ...]:
        return (self.requests, self.fallbacks, self.tokens, self.cost)

    @property
    def histograms(self) -> tuple[Observed, ...]:
        return (self.latency, self.first_content)

    def on_complete(self, done: Completed) -> None:
        request = done.request
        account = done.account.id if done.account is not None else _NONE
        member = request.member or LOCAL_MEMBER
        route = request.path
        self.requests.inc((account, route, str(done.status), member))
        if done.account is not None:
            self.latency.observe((account, route), done.latency_ms / 1000)
            if done.ttfb_ms is not None:
                self.first_content.observe((account, route), done.ttfb_ms / 1000)
        if len(done.chain) > 1:
            self.fallbacks.inc((route,))
        usage = done.usage
        if usage is not None:
            for kind, count in zip(
                _TOKEN_KINDS,
                (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens),
                strict=True,
            ):
                if count:
                    self.tokens.inc((account, member, kind), count)
            dollars = request_cost(done)
            if dollars:
                self.cost.inc((account, member), dollars)

    @property
    def registry(self) -> CollectorRegistry:
        """This feature's own Prometheus registry (never the global one), made on the first scrape."""
        if self._registry is None:
            from proxy.features.metrics_export import registry_of

            self._registry = registry_of(self)
        return self._registry

    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus scrapes, and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
