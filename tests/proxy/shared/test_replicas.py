"""Two real `headway serve` processes sharing a real redis-server behave as one gateway.

- a 429 seen by one makes the other skip that account on its next request;
- a member key revoked through one replica's CLI is refused by the other within 2 s (the issue's bound);
- Redis killed mid-traffic: every request still succeeds, and state made meanwhile reaches the other replica
  once Redis is back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config.accounts import add_api_key_account
from proxy.config.paths import Paths
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import Keychain
from tests.fakes import Behavior, FakeAnthropic
from tests.support.gateway import GatewayProcess, run_cli, start_gateway_process, wait_until
from tests.support.redis_server import RedisServer

ANTHROPIC = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Replica:
    gateway: GatewayProcess
    env: dict[str, str]

    def post(self, key: str | None = None, timeout: float = 15.0) -> httpx.Response:
        headers = {**ANTHROPIC, "x-api-key": key or self.gateway.key}
        return httpx.post(f"{self.gateway.url}/v1/messages", json=BODY, headers=headers, timeout=timeout)

    def status(self) -> dict[str, Any]:
        response = httpx.get(f"{self.gateway.url}/status", headers={"x-api-key": self.gateway.key}, timeout=5)
        response.raise_for_status()
        return dict(response.json())

    def account_state(self, label: str) -> str:
        return str(next(a for a in self.status()["accounts"] if a["label"] == label)["health"])

    def connected(self) -> bool:
        shared = self.status()["team"]["shared_state"]
        return bool(shared and shared["connected"])

    def cli(self, *args: str) -> Any:
        return run_cli(*args, env=self.env)


def _prepare_home(home: Path, upstream: str, redis_url: str) -> dict[str, str]:
    env = {
        "HEADWAY_HOME": str(home),
        "HEADWAY_ANTHROPIC_BASE_URL": upstream,
        "HEADWAY_SHARED_STATE_URL": redis_url,
    }
    paths = Paths.from_env(env)
    paths.ensure()
    store = SettingsStore.for_paths(paths)
    store.load(create=True)
    store.update(lambda s: setattr(s.secrets, "backend", "file"))
    keychain = Keychain(paths.keychain_service, backend="file", file_path=paths.secrets_file)
    for label, key in (("main", "sk-ant-main-key"), ("backup", "sk-ant-backup-key")):
        add_api_key_account(store, keychain, "anthropic-api-key", label, key)
    return env


@pytest.fixture
def team(
    tmp_path: Path, redis_server: RedisServer, anthropic: FakeAnthropic
) -> Iterator[tuple[Replica, Replica]]:
    replicas: list[Replica] = []
    try:
        for name in ("a", "b"):
            env = _prepare_home(tmp_path / name, anthropic.url, redis_server.url)
            replicas.append(Replica(start_gateway_process(env=env, home=tmp_path / name), env))
        for replica in replicas:
            assert wait_until(replica.connected, timeout=10), replica.gateway.output()
        yield replicas[0], replicas[1]
    finally:
        for replica in replicas:
            replica.gateway.stop()


def _keys_used(anthropic: FakeAnthropic) -> list[str | None]:
    return [anthropic.api_key(r) for r in anthropic.requests]


def test_a_429_on_one_replica_makes_the_other_skip_that_account(
    team: tuple[Replica, Replica], anthropic: FakeAnthropic
) -> None:
    a, b = team
    anthropic.enqueue(Behavior(status=429, retry_after=120))
    assert a.post().status_code == 200  # main answered 429, backup served it
    assert _keys_used(anthropic) == ["sk-ant-main-key", "sk-ant-backup-key"]
    assert wait_until(lambda: b.account_state("main") == "cooling_down", timeout=5)
    anthropic.reset()
    assert b.post().status_code == 200
    assert _keys_used(anthropic) == ["sk-ant-backup-key"]  # straight to backup: main was never tried


def test_a_member_key_revoked_on_one_replica_is_refused_by_the_other(team: tuple[Replica, Replica]) -> None:
    a, b = team
    added = a.cli("keys", "add", "alice")
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("hwm-") and "alice" in added.stderr
    assert wait_until(lambda: b.post(key).status_code == 200, timeout=2)
    listed = b.cli("keys", "list", "--json")
    assert [m["name"] for m in __import__("json").loads(listed.stdout)] == ["alice"]
    assert key not in listed.stdout and key not in (a.gateway.home / "data" / "members.json").read_text()

    revoked = a.cli("keys", "revoke", "alice")
    assert revoked.returncode == 0, revoked.stderr
    assert wait_until(lambda: b.post(key).status_code == 401, timeout=2)  # the bound: within 2 s
    assert a.post(key).status_code == 401
    assert b.post().status_code == 200  # the local key keeps working


def test_redis_killed_mid_traffic_requests_keep_succeeding_and_state_resyncs(
    team: tuple[Replica, Replica], anthropic: FakeAnthropic, redis_server: RedisServer
) -> None:
    a, b = team
    statuses: list[int] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            for replica in (a, b):
                statuses.append(replica.post(timeout=10).status_code)

    worker = threading.Thread(target=traffic, name="traffic")
    worker.start()
    try:
        assert wait_until(lambda: len(statuses) >= 10, timeout=15)
        redis_server.kill()
        assert wait_until(lambda: not a.connected() and not b.connected(), timeout=10)
        seen = len(statuses)
        assert wait_until(lambda: len(statuses) >= seen + 20, timeout=20)  # traffic goes on without Redis
        # While Redis is away, A sees main rate-limited: B cannot know yet.
        stop.set()
        worker.join(30)
        anthropic.reset()
        anthropic.enqueue(Behavior(status=429, retry_after=120))
        assert a.post().status_code == 200
        assert a.account_state("main") == "cooling_down"
        assert b.account_state("main") == "healthy"
        redis_server.start()  # back, empty, on the same port
        assert wait_until(lambda: a.connected() and b.connected(), timeout=10)
        assert wait_until(lambda: b.account_state("main") == "cooling_down", timeout=5)
    finally:
        stop.set()
        worker.join(30)
    assert statuses and set(statuses) == {200}, statuses


def _member_spend(replica: Replica, member: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(
        f"{replica.gateway.url}/metrics",
        headers={"authorization": f"Bearer {replica.gateway.key}"},
        timeout=5,
    ).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "headway_member_spend_usd_today" and sample.labels.get("member") == member:
                return float(sample.value)
    return 0.0


def test_a_members_spend_on_one_replica_counts_against_their_cap_on_the_other(
    team: tuple[Replica, Replica],
) -> None:
    a, b = team
    added = a.cli("keys", "add", "carol", "--daily-usd", "0.000001")
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert wait_until(lambda: a.status()["team"]["members"] == 1 and b.status()["team"]["members"] == 1)
    assert a.post(key).status_code == 200
    assert wait_until(lambda: _member_spend(b, "carol") > 0.000001, timeout=5)  # B never served carol
    refused = b.post(key)
    assert refused.status_code == 429 and "daily cap" in refused.text


def _headway_clients(redis_server: RedisServer) -> int:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        return sum(1 for c in client.client_list() if c.get("name") == "headway")
    finally:
        client.close()


def test_shared_state_set_and_cleared_in_the_settings_applies_live(
    tmp_path: Path, redis_server: RedisServer, anthropic: FakeAnthropic
) -> None:
    # B is in team mode from the start; A starts alone, then its settings file gets (and later loses) the URL.
    env_a = _prepare_home(tmp_path / "a", anthropic.url, redis_server.url)
    del env_a["HEADWAY_SHARED_STATE_URL"]
    env_b = _prepare_home(tmp_path / "b", anthropic.url, redis_server.url)
    a = Replica(start_gateway_process(env=env_a, home=tmp_path / "a"), env_a)
    b = Replica(start_gateway_process(env=env_b, home=tmp_path / "b"), env_b)
    try:
        assert wait_until(b.connected, timeout=10), b.gateway.output()
        assert a.status()["team"]["shared_state"] is None
        alone = _headway_clients(redis_server)

        store = SettingsStore.for_paths(Paths.from_env(env_a))
        store.update(lambda s: setattr(s.shared_state, "url", redis_server.url))
        assert wait_until(a.connected, timeout=10), a.gateway.output()
        anthropic.enqueue(Behavior(status=429, retry_after=120))
        assert a.post().status_code == 200  # main answered 429, backup served it
        assert wait_until(lambda: b.account_state("main") == "cooling_down", timeout=5)  # shared now
        assert _headway_clients(redis_server) > alone

        store.update(lambda s: setattr(s.shared_state, "url", None))
        assert wait_until(lambda: a.status()["team"]["shared_state"] is None, timeout=10), a.gateway.output()
        assert wait_until(
            lambda: _headway_clients(redis_server) == alone, timeout=5
        )  # A's connections closed
        assert a.post().status_code == 200  # and it goes on serving, alone
        assert b.connected()
    finally:
        a.gateway.stop()
        b.gateway.stop()
