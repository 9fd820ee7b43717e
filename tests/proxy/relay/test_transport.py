"""The engine's relay is made on demand: while the relay is off no client exists, and the stats look the same."""

from __future__ import annotations

from proxy.config.settings import RelaySettings
from proxy.relay import RelayClient
from proxy.relay.transport import RelayOnDemand


def test_stats_before_the_client_exists_match_a_fresh_clients() -> None:
    settings = RelaySettings(url="https://relay.example.workers.dev")
    relay = RelayOnDemand(lambda: settings, lambda: None)
    assert relay.idle and relay.client is None
    assert relay.stats() == RelayClient(lambda: settings, lambda: None).stats()


def test_the_client_is_made_once_the_relay_is_on_and_kept_when_it_goes_off() -> None:
    settings = RelaySettings(url="https://relay.example.workers.dev")
    relay = RelayOnDemand(lambda: settings, lambda: None)
    assert relay.idle
    settings = settings.model_copy(update={"enabled": True})
    assert not relay.idle
    client = relay.build()
    assert relay.build() is client and relay.stats()["enabled"] is True
    settings = settings.model_copy(update={"enabled": False})
    assert not relay.idle  # its sockets and counters live on until the engine stops
