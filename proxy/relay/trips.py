"""What relaying cost: one request's :class:`RelayTrip`, and the counters the relay's status adds them up in."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from proxy.config.settings import RelaySettings

__all__ = ["Mode", "RelayTrip", "TripCounter", "idle_traffic", "relay_stats"]

Mode = Literal["full_sync", "patch", "oneshot"]


@dataclass(frozen=True)
class RelayTrip:
    """What one request cost on the way to the relay; ``response.extensions["headway.relay"]``."""

    session_id: str
    mode: Mode
    transport: str
    sent_bytes: int  # envelopes uploaded to the Worker, retries included
    body_bytes: int  # the body the provider received
    resynced: bool
    elapsed_ms: float  # until the response started


@dataclass
class TripCounter:
    """Requests, modes, resyncs, failures and bytes, for one session or all of them."""

    requests: int = 0
    full_syncs: int = 0
    patches: int = 0
    oneshots: int = 0
    resyncs: int = 0
    failures: int = 0
    sent_bytes: int = 0
    body_bytes: int = 0

    def add(self, trip: RelayTrip) -> None:
        self.requests += 1
        self.sent_bytes += trip.sent_bytes
        self.body_bytes += trip.body_bytes
        self.resyncs += int(trip.resynced)
        if trip.mode == "patch":
            self.patches += 1
        elif trip.mode == "full_sync":
            self.full_syncs += 1
        else:
            self.oneshots += 1

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self)
        data["saved_bytes"] = self.body_bytes - self.sent_bytes
        data["saved_percent"] = (
            round(100.0 * (1 - self.sent_bytes / self.body_bytes), 1) if self.body_bytes else None
        )
        return data


def relay_stats(settings: RelaySettings, traffic: dict[str, Any]) -> dict[str, Any]:
    """The relay's stats as `headway status` and the page show them: its settings, then its traffic."""
    return {
        "enabled": settings.enabled,
        "url": settings.url,
        "transport": settings.transport,
        "fallback_to_direct": settings.fallback_to_direct,
        **traffic,
    }


def idle_traffic() -> dict[str, Any]:
    """The traffic part of the relay's stats before its client exists: what a fresh client publishes (nothing
    relayed, no base bodies, no sockets)."""
    return {
        "totals": TripCounter().as_dict(),
        "sessions": [],
        "recent": [],
        "base_bodies": {"sessions": 0, "bytes": 0},
        "open_sockets": 0,
        "last_error": None,
        "unbound_upstreams": [],
    }
