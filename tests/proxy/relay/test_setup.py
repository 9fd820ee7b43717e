"""`setup_relay` and `headway relay setup|status|disable` against a fake Cloudflare API v4 (tests/fakes/cloudflare.py),
and the Worker exactly as it was uploaded, run in workerd."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config.paths import Paths
from proxy.config.store import SettingsStore
from proxy.providers.base import Outgoing
from proxy.relay import RELAY_SECRET, RelayClient
from proxy.relay.deployed import disable_relay, relay_status
from proxy.relay.setup import (
    COMPATIBILITY_DATE,
    CloudflareError,
    InvalidToken,
    MissingPermission,
    RelayInfo,
    RelaySetupError,
    cloudflare_api_base,
    setup_relay,
    worker_modules,
    worker_source,
    worker_version,
)
from proxy.secrets.keychain import Keychain
from tests.conftest import MemoryKeyring
from tests.fakes import FakeAnthropic
from tests.fakes.cloudflare import (
    CF_ACCOUNT,
    CF_TOKEN,
    KV_PERMISSION,
    SCRIPTS_PERMISSION,
    FakeCloudflare,
    FakeToken,
)
from tests.support.gateway import run_cli
from tests.support.miniflare import MiniflareWorker, launch_deployed
from tests.support.relay_setup import run_relay_setup

NAME = "headway-relay"


@pytest.fixture
def keychain() -> Keychain:
    return Keychain(Paths.from_env().keychain_service)


@pytest.fixture
def cloudflare() -> Iterator[FakeCloudflare]:
    with FakeCloudflare(
        tokens=(
            FakeToken(CF_TOKEN),
            FakeToken("cf-no-scripts-0000000000000000", permissions=frozenset({KV_PERMISSION})),
            FakeToken("cf-no-kv-00000000000000000000000", permissions=frozenset({SCRIPTS_PERMISSION})),
            FakeToken("cf-account-owned-000000000000000", account_owned=True),
        )
    ) as fake:
        yield fake


def _setup(
    cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain, token: str = CF_TOKEN, **kw: Any
) -> RelayInfo:
    return setup_relay(
        token, CF_ACCOUNT, keychain=keychain, store=store, api_base=cloudflare.url, probe=False, **kw
    )


def _calls(cloudflare: FakeCloudflare) -> list[str]:
    return [f"{r.method} {r.path.replace(CF_ACCOUNT, '{a}')}" for r in cloudflare.requests]


def test_fresh_deploy_with_a_durable_object(
    cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain, memory_keyring: MemoryKeyring
) -> None:
    steps: list[str] = []
    info = _setup(cloudflare, store, keychain, progress=steps.append)
    assert _calls(cloudflare) == [
        "GET /user/tokens/verify",
        "GET /accounts/{a}/workers/scripts",
        f"PUT /accounts/{{a}}/workers/scripts/{NAME}",
        f"POST /accounts/{{a}}/workers/scripts/{NAME}/subdomain",
        "GET /accounts/{a}/workers/subdomain",
    ]
    assert all(r.headers["authorization"] == f"Bearer {CF_TOKEN}" for r in cloudflare.requests)
    assert cloudflare.problems == []
    script = cloudflare.scripts[NAME]
    assert script.metadata["main_module"] == "worker.js"
    assert script.metadata["compatibility_date"] == COMPATIBILITY_DATE
    assert script.modules["worker.js"] == ("application/javascript+module", worker_source().encode())
    assert script.modules == {
        name: ("application/javascript+module", source.encode()) for name, source in worker_modules().items()
    }
    assert sorted(script.modules) == [
        "common.js",
        "envelope.js",
        "handlers.js",
        "storage.js",
        "upstream.js",
        "worker.js",
    ]
    assert script.metadata["migrations"] == {"new_tag": "headway-v1", "new_sqlite_classes": ["RelaySession"]}
    assert script.binding("RELAY_SESSION") == {
        "type": "durable_object_namespace",
        "name": "RELAY_SESSION",
        "class_name": "RelaySession",
    }
    secret = keychain.get(RELAY_SECRET)
    assert secret is not None and len(secret) == 43
    assert script.binding("RELAY_TOKEN") == {"type": "secret_text", "name": "RELAY_TOKEN", "text": secret}
    assert script.subdomain_enabled
    assert info.url == f"https://{NAME}.alice.workers.dev" and info.created and info.secret_rotated
    assert info.worker_version == worker_version() == "1.1.0"
    relay = store.current.relay
    assert relay.enabled and relay.url == info.url and relay.account_id == CF_ACCOUNT
    assert relay.storage == "durable_object" and relay.transport == "http"
    # The API token is used once and kept nowhere: not in the settings, not in the keychain.
    assert CF_TOKEN not in store.path.read_text() and secret not in store.path.read_text()
    assert CF_TOKEN not in json.dumps(list(memory_keyring.entries.values()))
    assert steps[0] == "checking the API token" and steps[-1].startswith("relay on")


def test_rerun_upgrades_in_place_keeping_or_rotating_the_secret(
    cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain
) -> None:
    _setup(cloudflare, store, keychain)
    secret = keychain.get(RELAY_SECRET)
    again = _setup(cloudflare, store, keychain, transport="websocket")
    script = cloudflare.scripts[NAME]
    assert not again.created and not again.secret_rotated and script.uploads == 2
    assert "migrations" not in script.metadata  # the class exists: no second migration
    assert script.migration_tag == "headway-v1" and script.binding("RELAY_TOKEN")["text"] == secret
    assert store.current.relay.transport == "websocket"
    rotated = _setup(cloudflare, store, keychain, rotate_secret=True)
    assert rotated.secret_rotated and keychain.get(RELAY_SECRET) != secret
    assert script.binding("RELAY_TOKEN")["text"] == keychain.get(RELAY_SECRET)
    assert cloudflare.problems == []


def test_kv_storage_creates_its_namespace_once(
    cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain
) -> None:
    first = _setup(cloudflare, store, keychain, storage="kv")
    second = _setup(cloudflare, store, keychain, storage="kv")
    assert list(cloudflare.namespaces.values()) == ["headway-relay"]
    assert first.namespace_id == second.namespace_id
    assert cloudflare.scripts[NAME].binding("RELAY_STATE") == {
        "type": "kv_namespace",
        "name": "RELAY_STATE",
        "namespace_id": first.namespace_id,
    }
    assert [c for c in _calls(cloudflare) if "kv" in c].count("POST /accounts/{a}/storage/kv/namespaces") == 1
    assert store.current.relay.storage == "kv"


def test_a_bad_token_changes_nothing(
    cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain
) -> None:
    with pytest.raises(InvalidToken, match="rejected this API token") as info:
        _setup(cloudflare, store, keychain, token="not-a-real-token")
    assert "1000 Invalid API Token" in str(info.value) and "Workers Scripts · Edit" in str(info.value)
    assert not any(r.method == "PUT" for r in cloudflare.requests)
    assert keychain.get(RELAY_SECRET) is None and not store.current.relay.enabled
    # Other routes refuse it with Cloudflare's 403 envelope.
    response = httpx.get(
        f"{cloudflare.url}/accounts/{CF_ACCOUNT}/workers/scripts", headers={"authorization": "Bearer nope"}
    )
    assert response.status_code == 403
    assert response.json() == {
        "success": False,
        "errors": [{"code": 10000, "message": "Authentication error"}],
        "messages": [],
        "result": None,
    }


def test_missing_permissions_are_named(
    cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain
) -> None:
    with pytest.raises(MissingPermission, match="Workers Scripts · Edit") as info:
        _setup(cloudflare, store, keychain, token="cf-no-scripts-0000000000000000")
    assert "10000 Authentication error" in str(info.value) and CF_ACCOUNT in str(info.value)
    with pytest.raises(MissingPermission, match="Workers KV Storage · Edit"):
        _setup(cloudflare, store, keychain, token="cf-no-kv-00000000000000000000000", storage="kv")
    assert NAME not in cloudflare.scripts and not store.current.relay.enabled


def test_an_account_owned_token_verifies_under_the_account(
    cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain
) -> None:
    _setup(cloudflare, store, keychain, token="cf-account-owned-000000000000000")
    assert _calls(cloudflare)[:2] == ["GET /user/tokens/verify", "GET /accounts/{a}/tokens/verify"]
    assert store.current.relay.enabled


def test_account_ids_are_checked(
    cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain
) -> None:
    with pytest.raises(RelaySetupError, match="32 hexadecimal"):
        setup_relay(
            CF_TOKEN, "my-account", keychain=keychain, store=store, api_base=cloudflare.url, probe=False
        )
    assert cloudflare.requests == []
    other = "f" * 32
    with pytest.raises(MissingPermission, match=other):
        setup_relay(CF_TOKEN, other, keychain=keychain, store=store, api_base=cloudflare.url, probe=False)


def test_an_account_without_a_workers_dev_subdomain(store: SettingsStore, keychain: Keychain) -> None:
    with FakeCloudflare(subdomain=None) as cloudflare:
        with pytest.raises(CloudflareError, match=r"no workers\.dev subdomain yet"):
            _setup(cloudflare, store, keychain)
        # The Worker was uploaded with the secret now in the keychain: a rerun after choosing a subdomain works.
        assert cloudflare.scripts[NAME].binding("RELAY_TOKEN")["text"] == keychain.get(RELAY_SECRET)
        assert not store.current.relay.enabled
        cloudflare.subdomain = "bob"
        assert _setup(cloudflare, store, keychain).url == f"https://{NAME}.bob.workers.dev"


def test_the_api_base_comes_from_the_environment(
    cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cloudflare_api_base({}) == "https://api.cloudflare.com/client/v4"
    monkeypatch.setenv("HEADWAY_CLOUDFLARE_API_URL", cloudflare.url + "/")
    assert cloudflare_api_base() == cloudflare.url
    setup_relay(CF_TOKEN, CF_ACCOUNT, keychain=keychain, store=store, probe=False)
    assert NAME in cloudflare.scripts


def test_an_unreachable_api_says_so(store: SettingsStore, keychain: Keychain) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CloudflareError, match="cannot reach the Cloudflare API"):
        setup_relay(
            CF_TOKEN,
            CF_ACCOUNT,
            keychain=keychain,
            store=store,
            api_base=f"http://127.0.0.1:{port}",
            probe=False,
        )


async def test_the_uploaded_worker_runs_and_relays_with_the_keychains_secret(
    cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain, tmp_path: Path
) -> None:
    with FakeAnthropic() as upstream:
        store.update(lambda s: setattr(s.upstreams, "anthropic", upstream.url))
        _setup(cloudflare, store, keychain)
        script = cloudflare.scripts[NAME]
        with launch_deployed(script.metadata, script.modules, log_dir=tmp_path / "logs") as running:
            await _relay_through(running, upstream, store, keychain)


async def _relay_through(
    running: MiniflareWorker, upstream: FakeAnthropic, store: SettingsStore, keychain: Keychain
) -> None:
    store.update(lambda s: setattr(s.relay, "url", running.url))
    status = relay_status(store, keychain)
    assert status["worker"]["ok"] and status["worker"]["storage"] == "durable_object"
    assert status["secret_in_keychain"] and status["enabled"]
    relay = RelayClient(lambda: store.current.relay, lambda: keychain.get(RELAY_SECRET))
    body = json.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi " * 5000}],
        }
    )
    out = Outgoing("POST", f"{upstream.url}/v1/messages", {"x-api-key": "sk-ant-x"}, body.encode())
    async with httpx.AsyncClient() as http:
        response = await relay.send(http, out, "ses_setup")
        assert response is not None and response.status_code == 200
        await response.aread()
        await response.aclose()
    assert upstream.requests[-1].body == body.encode()
    await relay.aclose()
    keychain.set(RELAY_SECRET, "y" * 43)
    assert "refused the secret" in relay_status(store, keychain)["worker"]["error"]


def test_disable_and_forget(cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain) -> None:
    _setup(cloudflare, store, keychain)
    disable_relay(store, keychain)
    assert not store.current.relay.enabled and store.current.relay.url and keychain.get(RELAY_SECRET)
    disable_relay(store, keychain, forget=True)
    assert store.current.relay.url is None and keychain.get(RELAY_SECRET) is None
    assert relay_status(store, keychain)["worker_version_shipped"] == "1.1.0"


# --------------------------------------------------------------------------- the CLI, as a subprocess


def test_cli_setup_status_disable(cloudflare: FakeCloudflare, store: SettingsStore) -> None:
    store.update(
        lambda s: setattr(s.secrets, "backend", "file")
    )  # the in-memory keyring does not cross processes
    env = {"HEADWAY_CLOUDFLARE_API_URL": cloudflare.url}
    bad = run_relay_setup(env, token="nope")
    assert bad.returncode == 1 and "rejected this API token" in bad.stderr
    done = run_relay_setup(env)
    assert done.returncode == 0, done.stderr
    assert f"Deployed Worker {NAME} 1.1.0 at https://{NAME}.alice.workers.dev" in done.stdout
    assert "the API token was not kept" in done.stdout
    paths = Paths.from_env()
    assert CF_TOKEN not in paths.secrets_file.read_text() and CF_TOKEN not in paths.settings_file.read_text()
    again = run_relay_setup(env, "--transport", "websocket", account_id=None)
    assert again.returncode == 0 and "Upgraded Worker" in again.stdout  # the account id was remembered
    status = json.loads(run_cli("relay", "status", "--json", "--no-probe").stdout)
    assert status["enabled"] and status["secret_in_keychain"] and status["transport"] == "websocket"
    text = run_cli("relay", "status", "--no-probe").stdout
    assert (
        "Relay: on, https://headway-relay.alice.workers.dev (websocket, durable object; falls back to direct)"
        in text
    )
    assert "Secret: in the keychain" in text
    off = run_cli("relay", "disable", "--forget")
    assert off.returncode == 0 and "Relay off" in off.stdout
    assert run_cli("relay", "status", "--no-probe").stdout.startswith("Relay: not set up")
