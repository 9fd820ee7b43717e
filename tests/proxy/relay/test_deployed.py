"""The relay Worker as `relay setup` deploys it — the exact worker.js and the bindings uploaded to a fake Cloudflare
API — run in workerd (npm miniflare): it calls only the providers it was deployed for, follows no redirect, caps what
it reads and inflates, keeps a bounded number of sessions, forgets them on request, and refuses a rotated-out secret.

Figures (workerd's memory around a gzip bomb) are printed as ``RELAY-MEASURE`` lines: run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import json
import os
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from proxy.config.paths import Paths
from proxy.config.settings import Settings
from proxy.config.store import SettingsStore
from proxy.providers.base import Outgoing
from proxy.relay import RELAY_SECRET, RelayClient, RelayUnavailable
from proxy.relay.deployed import forget_sessions, relay_status
from proxy.relay.patch import sha256_tag
from proxy.relay.protocol import encode_envelope, session_key
from proxy.relay.setup import RelayInfo, setup_relay
from proxy.secrets.keychain import Keychain
from tests.fakes import Behavior, FakeAnthropic
from tests.fakes.cloudflare import CF_ACCOUNT, CF_TOKEN, FakeCloudflare, FakeToken
from tests.support.gateway import run_cli
from tests.support.miniflare import MiniflareWorker, launch_deployed, require_miniflare
from tests.support.relay_setup import run_relay_setup

NAME = "headway-relay"
API_KEY = "sk-ant-deployed-1"
Storage = Literal["durable_object", "kv"]


def measure(what: str, **figures: Any) -> None:
    print(f"RELAY-MEASURE {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture
def keychain(memory_keyring: object) -> Keychain:
    return Keychain(Paths.from_env().keychain_service)


@pytest.fixture
def cloudflare() -> Iterator[FakeCloudflare]:
    with FakeCloudflare(tokens=(FakeToken(CF_TOKEN),)) as fake:
        yield fake


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    """The provider the Worker is deployed for."""
    with FakeAnthropic(valid_keys=[API_KEY]) as fake:
        yield fake


@pytest.fixture
def elsewhere() -> Iterator[FakeAnthropic]:
    """Another server the Worker must never reach; it counts every hit."""
    with FakeAnthropic() as fake:
        yield fake


class Deployed:
    """`setup_relay` against the fake Cloudflare API, then the uploaded Worker in workerd; redeploy at will."""

    def __init__(
        self, cloudflare: FakeCloudflare, store: SettingsStore, keychain: Keychain, logs: Path
    ) -> None:
        self.cloudflare, self.store, self.keychain, self.logs = cloudflare, store, keychain, logs
        self.worker: MiniflareWorker | None = None

    def deploy(self, *, environ: dict[str, str] | None = None, **kw: Any) -> RelayInfo:
        info = setup_relay(
            CF_TOKEN,
            CF_ACCOUNT,
            keychain=self.keychain,
            store=self.store,
            api_base=self.cloudflare.url,
            probe=False,
            environ=environ or {},
            **kw,
        )
        script = self.cloudflare.scripts[NAME]
        if self.worker is not None:
            self.worker.stop()
        self.worker = launch_deployed(script.metadata, script.modules, log_dir=self.logs)
        url = self.worker.url
        self.store.update(lambda s: setattr(s.relay, "url", url))  # workers.dev → where workerd listens
        return info

    @property
    def url(self) -> str:
        assert self.worker is not None
        return self.worker.url

    @property
    def secret(self) -> str:
        secret = self.keychain.get(RELAY_SECRET)
        assert secret is not None
        return secret

    def client(self, transport: str = "http", *, bound: bool = True) -> RelayClient:
        """A RelayClient on the stored settings; ``bound=False`` skips its own allowlist check (the Worker's is tested)."""

        def settings() -> Any:
            relay = self.store.current.relay.model_copy(update={"transport": transport, "min_body_bytes": 0})
            return relay if bound else relay.model_copy(update={"upstreams": None})

        return RelayClient(settings, lambda: self.keychain.get(RELAY_SECRET))

    def headers(self, session: str = "raw") -> dict[str, str]:
        return {"x-relay-token": self.secret, "x-relay-session": session_key(session)}

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()


@pytest.fixture
def deployed(
    cloudflare: FakeCloudflare,
    store: SettingsStore,
    keychain: Keychain,
    anthropic: FakeAnthropic,
    tmp_path: Path,
) -> Iterator[Deployed]:
    require_miniflare()
    store.update(lambda s: setattr(s.upstreams, "anthropic", anthropic.url))
    running = Deployed(cloudflare, store, keychain, tmp_path / "miniflare")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0)) as client:
        yield client


def body_of(text: str = "hello", size: int = 20_000) -> bytes:
    return json.dumps(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": text * (size // 5)}],
        }
    ).encode()


def outgoing(url: str, body: bytes | None = None) -> Outgoing:
    return Outgoing(
        "POST", url, {"x-api-key": API_KEY, "content-type": "application/json"}, body or body_of()
    )


def header_for(url: str, body: bytes, *, lane: str = "0", mode: str = "full_sync") -> dict[str, Any]:
    return {
        "v": 1,
        "type": "request",
        "id": "r1",
        "lane": lane,
        "mode": mode,
        "revision": 1,
        "next_hash": sha256_tag(body),
        "upstream": {"url": url, "method": "POST", "headers": [["x-api-key", API_KEY]]},
    }


# --------------------------------------------------------------------------- the upstream allowlist


def test_setup_binds_the_upstreams_in_force_and_the_ttl(
    deployed: Deployed, store: SettingsStore, anthropic: FakeAnthropic
) -> None:
    store.update(lambda s: setattr(s.relay, "ttl_hours", 0.5))
    info = deployed.deploy(environ={"HEADWAY_OPENAI_BASE_URL": "https://openai.proxy.corp:8443/v1/"})
    wanted = sorted([anthropic.url, "https://chatgpt.com", "https://openai.proxy.corp:8443"])
    script = deployed.cloudflare.scripts[NAME]
    assert json.loads(script.binding("RELAY_UPSTREAMS")["text"]) == wanted == info.upstreams
    assert script.binding("RELAY_UPSTREAMS")["type"] == "plain_text"
    assert script.binding("RELAY_TTL_SECONDS") == {
        "type": "plain_text",
        "name": "RELAY_TTL_SECONDS",
        "text": "1800",
    }
    assert store.current.relay.upstreams == wanted
    described = httpx.get(f"{deployed.url}/v1/info", headers=deployed.headers()).json()
    assert described["upstreams"] == wanted and described["ttl_seconds"] == 1800


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_an_upstream_not_deployed_for_gets_403_and_no_request_leaves_the_worker(
    deployed: Deployed,
    anthropic: FakeAnthropic,
    elsewhere: FakeAnthropic,
    http: httpx.AsyncClient,
    transport: str,
) -> None:
    deployed.deploy()
    relay = deployed.client(transport, bound=False)
    allowed = anthropic.url.removeprefix("http://")
    tricks = [
        f"{elsewhere.url}/v1/messages",  # another origin
        f"http://{allowed}@127.0.0.1:{elsewhere.port}/v1/messages",  # fetch would connect after the @
        f"http://{allowed}:pw@127.0.0.1:{elsewhere.port}/v1/messages",
        f"https://127.0.0.1:{anthropic.port}/v1/messages",  # same host and port, other scheme
    ]
    for url in tricks:
        with pytest.raises(RelayUnavailable) as refused:
            await relay.send(http, outgoing(url), f"ses_{transport}")
        assert refused.value.status == 403 and refused.value.code == "upstream_not_allowed", url
        assert refused.value.fallback_to_direct
    assert elsewhere.request_count == 0 and anthropic.request_count == 0
    response = await relay.send(http, outgoing(f"{anthropic.url}/v1/messages"), f"ses_{transport}")
    assert response is not None and response.status_code == 200
    await response.aclose()
    assert anthropic.request_count == 1 and elsewhere.request_count == 0
    await relay.aclose()


async def test_nothing_is_stored_for_a_refused_upstream(
    deployed: Deployed, elsewhere: FakeAnthropic, http: httpx.AsyncClient
) -> None:
    deployed.deploy()
    body = body_of()
    refused = await http.post(
        f"{deployed.url}/v1/relay",
        content=encode_envelope(header_for(f"{elsewhere.url}/v1/messages", body), body),
        headers=deployed.headers(),
    )
    assert refused.status_code == 403 and refused.headers["x-headway-relay-error"] == "upstream_not_allowed"
    described = (await http.get(f"{deployed.url}/v1/info", headers=deployed.headers())).json()
    assert described["sessions"] == 0 and elsewhere.request_count == 0


async def test_a_worker_without_an_upstream_list_calls_nothing(
    deployed: Deployed, anthropic: FakeAnthropic, http: httpx.AsyncClient
) -> None:
    deployed.deploy()
    script = deployed.cloudflare.scripts[NAME]
    metadata = {
        **script.metadata,
        "bindings": [b for b in script.metadata["bindings"] if b["name"] != "RELAY_UPSTREAMS"],
    }
    with launch_deployed(metadata, script.modules, log_dir=deployed.logs) as bare:
        body = body_of()
        answer = await http.post(
            f"{bare.url}/v1/relay",
            content=encode_envelope(header_for(f"{anthropic.url}/v1/messages", body), body),
            headers=deployed.headers(),
        )
        assert answer.status_code == 403 and anthropic.request_count == 0


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_a_redirect_to_another_host_is_not_followed(
    deployed: Deployed,
    anthropic: FakeAnthropic,
    elsewhere: FakeAnthropic,
    http: httpx.AsyncClient,
    transport: str,
) -> None:
    deployed.deploy()
    relay = deployed.client(transport)
    for status in (302, 307, 308):
        anthropic.enqueue(
            Behavior(status=status, body=b"", headers={"location": f"{elsewhere.url}/v1/messages"})
        )
        response = await relay.send(http, outgoing(f"{anthropic.url}/v1/messages"), "ses_redirect")
        assert response is not None
        await response.aread()
        await response.aclose()
        assert response.status_code == status  # passed back as it is, as a direct call would see it
        assert response.headers["location"] == f"{elsewhere.url}/v1/messages"
    assert elsewhere.request_count == 0 and anthropic.request_count == 3
    await relay.aclose()


async def test_status_says_when_the_workers_list_is_out_of_date_and_requests_go_direct(
    deployed: Deployed,
    store: SettingsStore,
    keychain: Keychain,
    elsewhere: FakeAnthropic,
    http: httpx.AsyncClient,
) -> None:
    deployed.deploy()
    status = relay_status(store, keychain, environ={})
    assert not status["upstreams_out_of_date"] and status["warnings"] == []
    store.update(lambda s: setattr(s.upstreams, "openai", elsewhere.url))  # a new upstream, no setup since
    status = relay_status(store, keychain, environ={})
    assert status["upstreams_out_of_date"] and status["upstreams_missing"] == [elsewhere.url]
    assert any("upstream list is out of date" in w and elsewhere.url in w for w in status["warnings"])
    relay = deployed.client()
    assert await relay.send(http, outgoing(f"{elsewhere.url}/v1/responses"), "ses_new") is None  # direct
    assert relay.stats()["unbound_upstreams"] == [elsewhere.url]
    assert relay.stats()["totals"]["requests"] == 0 and relay.stats()["totals"]["failures"] == 0
    deployed.deploy()
    status = relay_status(store, keychain, environ={})
    assert not status["upstreams_out_of_date"] and status["warnings"] == []
    response = await relay.send(http, outgoing(f"{elsewhere.url}/v1/messages"), "ses_new")
    assert response is not None and response.status_code == 200
    await response.aclose()
    assert relay.stats()["unbound_upstreams"] == []
    await relay.aclose()


def test_status_flags_a_ttl_change_not_yet_deployed(
    deployed: Deployed, store: SettingsStore, keychain: Keychain
) -> None:
    deployed.deploy()
    store.update(lambda s: setattr(s.relay, "ttl_hours", 2.0))
    warnings = relay_status(store, keychain, environ={})["warnings"]
    assert any("relay.ttl_hours says 7200 s" in w for w in warnings)


# --------------------------------------------------------------------------- caps


def gzip_bomb(inflated_mib: int) -> bytes:
    """A gzip member inflating to about ``inflated_mib`` MiB of zeros, built without holding them: after a full flush
    each 1 MiB chunk compresses to the same bytes, so the chunk is compressed once and repeated."""
    chunk = b"\0" * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = compressor.compress(b'{"v":1,"lane":"0","mode":"full_sync"}\n' + chunk) + compressor.flush(
        zlib.Z_FULL_FLUSH
    )
    unit = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH) == unit
    return bytes([1]) + head + unit * (inflated_mib - 1) + compressor.flush()


def workerd_rss_kib(worker: MiniflareWorker) -> dict[str, int]:
    """Current and peak resident memory of the workerd processes under the Worker's Node runner (Linux)."""
    figures = {"rss": 0, "peak": 0}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            if (
                os.getpgid(int(pid)) != worker.proc.pid
                or "workerd" not in Path(f"/proc/{pid}/comm").read_text()
            ):
                continue
        except (OSError, ProcessLookupError):
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        figures["rss"] += int(fields.get("VmRSS", "0 kB").split()[0])
        figures["peak"] += int(fields.get("VmHWM", "0 kB").split()[0])
    return figures


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads workerd's memory from /proc")
async def test_a_gzip_bomb_is_refused_without_the_worker_running_out_of_memory(
    deployed: Deployed, http: httpx.AsyncClient
) -> None:
    deployed.deploy()
    assert deployed.worker is not None
    bomb = gzip_bomb(4096)  # 4 GiB inflated
    before = workerd_rss_kib(deployed.worker)
    answer = await http.post(f"{deployed.url}/v1/relay", content=bomb, headers=deployed.headers())
    after = workerd_rss_kib(deployed.worker)
    measure(
        "gzip bomb",
        envelope_kib=len(bomb) // 1024,
        inflated_mib=4096,
        status=answer.status_code,
        workerd_rss_mib_before=before["rss"] // 1024,
        workerd_peak_mib_after=after["peak"] // 1024,
    )
    assert answer.status_code == 413 and answer.headers["x-headway-relay-error"] == "body_too_large", (
        answer.text
    )
    assert after["peak"] - before["peak"] < 256 * 1024  # the cap is 32 MiB; the bomb is 4 GiB
    assert (await http.get(f"{deployed.url}/v1/info", headers=deployed.headers())).status_code == 200


async def test_an_envelope_over_the_cap_is_413_and_the_client_goes_direct(
    deployed: Deployed, anthropic: FakeAnthropic, http: httpx.AsyncClient
) -> None:
    deployed.deploy()
    # A declared size over the cap is refused before a byte of the body is read.
    host, port = deployed.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = [
        "POST /v1/relay HTTP/1.1",
        f"Host: {host}:{port}",
        *(f"{k}: {v}" for k, v in deployed.headers().items()),
        f"Content-Length: {16 * 1024 * 1024 + 1}",
        "Connection: close",
    ]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    await writer.drain()
    answer_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert answer_head.startswith(b"HTTP/1.1 413") and b"envelope_too_large" in answer_head.lower()

    async def chunks() -> AsyncIterator[bytes]:  # no declared size: the Worker counts as it reads
        yield bytes([0])
        for _ in range(16):
            yield b"x" * (1024 * 1024)

    answer = await http.post(f"{deployed.url}/v1/relay", content=chunks(), headers=deployed.headers())
    assert answer.status_code == 413 and answer.headers["x-headway-relay-error"] == "envelope_too_large"
    relay = deployed.client()
    too_big = outgoing(f"{anthropic.url}/v1/messages", b"{" + b" " * (33 * 1024 * 1024) + b"}")
    assert (
        await relay.send(http, too_big, "ses_big") is None
    )  # over the Worker's body cap: straight to direct
    assert anthropic.request_count == 0
    await relay.aclose()


async def test_a_body_the_worker_would_inflate_past_its_cap_is_a_413_the_gateway_sends_direct(
    deployed: Deployed, anthropic: FakeAnthropic, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should the client's own cap ever disagree with the Worker's, the Worker's 413 is RelayUnavailable: direct."""
    deployed.deploy()
    monkeypatch.setattr("proxy.relay.client._MAX_BODY", 64 * 1024 * 1024)
    relay = deployed.client()
    body = b'{"messages":"' + b" " * (33 * 1024 * 1024) + b'"}'  # a small envelope, over 32 MiB inflated
    with pytest.raises(RelayUnavailable) as refused:
        await relay.send(http, outgoing(f"{anthropic.url}/v1/messages", body), "ses_413")
    assert refused.value.status == 413 and refused.value.code == "body_too_large"
    assert refused.value.fallback_to_direct and not refused.value.upstream_may_have_seen
    assert anthropic.request_count == 0
    await relay.aclose()


@pytest.mark.parametrize("storage", ["durable_object", "kv"])
async def test_the_worker_keeps_at_most_128_sessions(
    deployed: Deployed, anthropic: FakeAnthropic, http: httpx.AsyncClient, storage: Storage
) -> None:
    deployed.deploy(storage=storage)
    body = b'{"model":"m","messages":[]}'
    url = f"{anthropic.url}/v1/messages"
    for n in range(130):
        answer = await http.post(
            f"{deployed.url}/v1/relay",
            content=encode_envelope(header_for(url, body), body),
            headers=deployed.headers(f"ses_{n}"),
        )
        assert answer.status_code == 200, answer.text
    described = (await http.get(f"{deployed.url}/v1/info", headers=deployed.headers())).json()
    assert described["max_sessions"] == 128
    if storage == "durable_object":
        assert described["sessions"] == 128
    patch = {**header_for(url, body, mode="patch"), "base_hash": sha256_tag(body), "ops": []}
    for n, kept in ((0, False), (1, False), (2, True), (129, True)):
        answer = await http.post(
            f"{deployed.url}/v1/relay",
            content=encode_envelope(patch, b""),
            headers=deployed.headers(f"ses_{n}"),
        )
        assert (answer.status_code == 200) is kept, (n, answer.status_code)


# --------------------------------------------------------------------------- forget, rotation


@pytest.mark.parametrize("storage", ["durable_object", "kv"])
async def test_forget_leaves_no_stored_session(
    deployed: Deployed,
    store: SettingsStore,
    keychain: Keychain,
    anthropic: FakeAnthropic,
    http: httpx.AsyncClient,
    storage: Storage,
) -> None:
    deployed.deploy(storage=storage)
    relay = deployed.client()
    url = f"{anthropic.url}/v1/messages"
    sessions = [f"ses_forget_{n}" for n in range(3)]
    for session in sessions:
        for turn in range(2):
            response = await relay.send(http, outgoing(url, body_of("turn " * (turn + 1))), session)
            assert response is not None and response.status_code == 200
            await response.aclose()
    result = forget_sessions(store, keychain)
    assert result["storage"] == storage and result["forgotten"] >= len(sessions)
    if storage == "durable_object":
        described = (await http.get(f"{deployed.url}/v1/info", headers=deployed.headers())).json()
        assert described["sessions"] == 0
    for session in sessions:  # the last body of each session: gone from the Worker
        last = body_of("turn turn ")
        patch = {**header_for(url, last, mode="patch"), "base_hash": sha256_tag(last), "ops": []}
        answer = await http.post(
            f"{deployed.url}/v1/relay", content=encode_envelope(patch, b""), headers=deployed.headers(session)
        )
        assert answer.status_code == 409 and answer.headers["x-headway-relay-error"] == "state_mismatch"
    response = await relay.send(http, outgoing(url, body_of("turn turn turn ")), sessions[0])
    assert (
        response is not None and response.extensions["headway.relay"].resynced
    )  # Headway recovers by itself
    await response.aclose()
    assert forget_sessions(store, keychain)["forgotten"] >= 1
    await relay.aclose()


async def test_after_rotation_the_old_secret_gets_401(
    deployed: Deployed,
    store: SettingsStore,
    keychain: Keychain,
    anthropic: FakeAnthropic,
    http: httpx.AsyncClient,
) -> None:
    deployed.deploy()
    old = deployed.secret
    assert (await http.get(f"{deployed.url}/v1/info", headers={"x-relay-token": old})).status_code == 200
    info = deployed.deploy(rotate_secret=True)
    new = deployed.secret
    assert info.secret_rotated and new != old
    assert deployed.cloudflare.scripts[NAME].binding("RELAY_TOKEN")["text"] == new
    refused = await http.get(f"{deployed.url}/v1/info", headers={"x-relay-token": old})
    assert refused.status_code == 401 and refused.headers["x-headway-relay-error"] == "unauthorized"
    body = body_of()
    envelope = encode_envelope(header_for(f"{anthropic.url}/v1/messages", body), body)
    stale = {"x-relay-token": old, "x-relay-session": session_key("s")}
    assert (await http.post(f"{deployed.url}/v1/relay", content=envelope, headers=stale)).status_code == 401
    assert anthropic.request_count == 0
    assert relay_status(store, keychain, environ={})["worker"]["ok"]  # the keychain holds the new one


def test_settings_default_ttl_is_a_day() -> None:
    assert Settings().relay.ttl_hours == 24.0 and Settings().relay.upstreams is None


# --------------------------------------------------------------------------- the CLI, as a subprocess


def test_cli_setup_forget_and_status(
    cloudflare: FakeCloudflare, store: SettingsStore, anthropic: FakeAnthropic, tmp_path: Path
) -> None:
    require_miniflare()
    store.update(
        lambda s: setattr(s.secrets, "backend", "file")
    )  # the in-memory keyring does not cross processes
    env = {"HEADWAY_CLOUDFLARE_API_URL": cloudflare.url, "HEADWAY_ANTHROPIC_BASE_URL": anthropic.url}
    setup = run_relay_setup(env)
    assert setup.returncode == 0, setup.stderr
    assert f"It may call: {anthropic.url}, https://api.openai.com, https://chatgpt.com;" in setup.stdout
    assert "keeps a session's last body 1440 min" in setup.stdout
    script = cloudflare.scripts[NAME]
    with launch_deployed(script.metadata, script.modules, log_dir=tmp_path / "miniflare") as running:
        store.load()
        store.update(lambda s: setattr(s.relay, "url", running.url))
        secret = script.binding("RELAY_TOKEN")["text"]
        body = body_of()
        stored = httpx.post(
            f"{running.url}/v1/relay",
            content=encode_envelope(header_for(f"{anthropic.url}/v1/messages", body), body),
            headers={"x-relay-token": secret, "x-relay-session": session_key("cli")},
        )
        assert stored.status_code == 200
        status = run_cli("relay", "status", env=env)
        assert status.returncode == 0, status.stderr
        assert "keeps 1 session, each for 1440 min" in status.stdout and "Out of date" not in status.stdout
        forgot = run_cli("relay", "forget", env=env)
        assert forgot.returncode == 0, forgot.stderr
        assert "The Worker deleted 1 session; it keeps nothing now." in forgot.stdout
        assert "keeps 0 sessions" in run_cli("relay", "status", env=env).stdout
        # Without the override, Headway would call the real Anthropic, which this Worker was not deployed for.
        drifted = run_cli("relay", "status").stdout
        assert (
            "Out of date: the Worker's upstream list is out of date (missing https://api.anthropic.com)"
            in drifted
        )
    gone = run_cli("relay", "forget", env=env)
    assert gone.returncode == 1 and "not reachable" in gone.stderr
