"""GET /metrics on a real gateway: Prometheus text parsed with prometheus_client's own parser, counts checked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy.secrets.members import Member, MemberFile
from tests.fakes import Behavior, FakeAnthropic
from tests.fakes.anthropic import anthropic_ratelimit_headers
from tests.support.gateway import RunningGateway, start_gateway, wait_until

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gateway(anthropic: FakeAnthropic) -> Iterator[RunningGateway]:
    running = start_gateway(anthropic_url=anthropic.url)
    try:
        running.add("anthropic", "main", "sk-ant-main")
        running.add("anthropic", "backup", "sk-ant-backup")
        yield running
    finally:
        running.stop()


def samples(
    gateway: RunningGateway, key: str | None = None
) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(
        f"{gateway.url}/metrics", headers={"authorization": f"Bearer {key or gateway.key}"}, timeout=5
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def post(gateway: RunningGateway, key: str, path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(
        f"{gateway.url}{path}",
        json=BODY,
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        timeout=10,
    )


def test_requests_latency_fallbacks_tokens_cost_and_quota(
    gateway: RunningGateway, anthropic: FakeAnthropic
) -> None:
    main, backup = gateway.accounts
    member, member_key = Member.create("alice")
    MemberFile(gateway.services.engine.paths.members_file).change(lambda m: m.__setitem__("alice", member))
    assert wait_until(lambda: post(gateway, member_key).status_code == 200, timeout=5)
    anthropic.reset()
    before = samples(gateway)
    alice_before = value(
        before, "headway_requests_total", account=main.id, route="/v1/messages", status="200", member="alice"
    )

    anthropic.enqueue(Behavior(headers=anthropic_ratelimit_headers(requests_limit=50, requests_remaining=40)))
    for _ in range(3):
        assert post(gateway, gateway.key).status_code == 200
    assert post(gateway, member_key).status_code == 200
    anthropic.enqueue(Behavior(status=429, retry_after=60))
    assert post(gateway, gateway.key).status_code == 200  # main 429 → backup

    found = samples(gateway)
    assert (
        value(
            found,
            "headway_requests_total",
            account=main.id,
            route="/v1/messages",
            status="200",
            member="local",
        )
        == 3
    )
    assert (
        value(
            found,
            "headway_requests_total",
            account=main.id,
            route="/v1/messages",
            status="200",
            member="alice",
        )
        == alice_before + 1
    )
    assert (
        value(
            found,
            "headway_requests_total",
            account=backup.id,
            route="/v1/messages",
            status="200",
            member="local",
        )
        == 1
    )
    assert value(found, "headway_fallbacks_total", route="/v1/messages") == 1
    assert value(found, "headway_upstream_latency_seconds_count", account=main.id, route="/v1/messages") >= 4
    assert (
        value(found, "headway_time_to_first_content_seconds_count", account=backup.id, route="/v1/messages")
        == 1
    )
    assert value(found, "headway_tokens_total", account=main.id, member="local", kind="input") > 0
    assert value(found, "headway_tokens_total", account=main.id, member="local", kind="output") > 0
    # The fake answered with rate-limit headers: quota remaining per window, read from the engine's books.
    assert value(found, "headway_quota_remaining_ratio", account=main.id, window="requests") == 0.8
    # Cost is estimated off the loop: it arrives a moment after the answer.
    assert wait_until(
        lambda: value(samples(gateway), "headway_cost_usd_total", account=main.id, member="local") > 0
    )
    assert value(found, "headway_member_keys") == 1


def test_metrics_need_the_local_key_itself(gateway: RunningGateway) -> None:
    member, member_key = Member.create("bob")
    MemberFile(gateway.services.engine.paths.members_file).change(lambda m: m.__setitem__("bob", member))
    assert wait_until(lambda: post(gateway, member_key).status_code != 401, timeout=5)
    url = f"{gateway.url}/metrics"
    assert httpx.get(url, timeout=5).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer hw-wrong"}, timeout=5).status_code == 401
    refused = httpx.get(url, headers={"authorization": f"Bearer {member_key}"}, timeout=5)
    assert refused.status_code == 403 and "own access key" in refused.text
    # Even with the access key turned off on loopback, /metrics still needs it.
    gateway.edit(lambda s: setattr(s.gateway, "require_access_key", False))
    assert httpx.get(url, timeout=5).status_code == 401
    assert httpx.get(url, headers={"authorization": f"Bearer {gateway.key}"}, timeout=5).status_code == 200


def test_the_registry_is_the_gateways_own(gateway: RunningGateway) -> None:
    """No global registry: a second engine in the same process starts from zero."""
    engine = gateway.services.engine
    assert engine.metrics is not None
    assert engine.call(asyncio.sleep(0, result=engine.metrics.registry)) is not None
    from prometheus_client import REGISTRY

    assert REGISTRY.get_sample_value("headway_requests_total") is None
