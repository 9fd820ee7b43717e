"""The Prometheus side of :mod:`proxy.features.metrics`, imported on the first scrape of ``GET /metrics``.

:func:`registry_of` makes the feature's own registry (no global one) with two collectors: the recorded counters and
histograms as metric families, and gauges read from the engine's books at scrape time (quota remaining per account
and window; in team mode, member spend today, member keys and the shared state's connection). Scrapes run on the
engine loop, like every reader of the books and the feature's own ``on_complete``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from proxy.features.metrics import Metrics
    from proxy.routing.quota import QuotaBook
    from proxy.shared.team import Team

__all__ = ["registry_of"]


def registry_of(metrics: Metrics) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_Recorded(metrics))
    registry.register(_Books(metrics.quota, metrics.team, metrics.clock))
    return registry


class _Recorded(Collector):
    """What finished requests added up: counters and latency histograms."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        for counted in self._metrics.counters:
            counter = CounterMetricFamily(counted.name, counted.help, labels=counted.labels)
            for labels, value in sorted(counted.values.items()):
                counter.add_metric(labels, value)
            yield counter
        for observed in self._metrics.histograms:
            histogram = HistogramMetricFamily(observed.name, observed.help, labels=observed.labels)
            bounds = [
                *(repr(float(b)) for b in observed.buckets),
                "+Inf",
            ]  # le="0.05", "1.0", as prometheus_client
            for labels, counts in sorted(observed.counts.items()):
                buckets = list(zip(bounds, (float(c) for c in accumulate(counts)), strict=True))
                histogram.add_metric(labels, buckets, sum_value=observed.sums[labels])
            yield histogram


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
