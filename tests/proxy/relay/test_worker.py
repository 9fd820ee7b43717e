"""The relay Worker in Cloudflare's workerd runtime (npm miniflare), driven by the real RelayClient, in front of fake
upstreams on 127.0.0.1. Both storages (Durable Object, KV) and both transports (HTTP, WebSocket).

Measured figures (bytes uploaded against body bytes, event arrival times through the Worker, latency per storage)
are printed as ``RELAY-MEASURE`` lines: run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import random
import socket
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config.settings import RelaySettings
from proxy.providers.base import Outgoing
from proxy.relay import RelayClient, RelayTrip, RelayUnavailable
from proxy.relay.protocol import encode_envelope, session_key
from proxy.wire.sleep_watch import AfterSleep, SleepWatch
from tests.fakes import Behavior, FakeAnthropic, FakeOpenAI
from tests.support.forgetful_relay import ForgetfulRelay
from tests.support.miniflare import MiniflareWorker, launch_worker, require_miniflare

SECRET = "relay-secret-for-tests-0123456789abcdefghijk"
API_KEY = "sk-ant-relay-test-1"
Transport = str


def measure(what: str, **figures: Any) -> None:
    print(f"RELAY-MEASURE {what}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("miniflare")


@dataclass
class Upstreams:
    """The fake providers the module's Workers may call (bound as RELAY_UPSTREAMS), and a port nothing listens on."""

    anthropic: FakeAnthropic
    openai: FakeOpenAI
    dead_port: int

    @property
    def origins(self) -> list[str]:
        return [self.anthropic.url, self.openai.url, f"http://127.0.0.1:{self.dead_port}"]


@pytest.fixture(scope="module")
def upstreams() -> Iterator[Upstreams]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    with FakeAnthropic(valid_keys=[API_KEY]) as anthropic, FakeOpenAI(valid_keys=[API_KEY]) as openai:
        yield Upstreams(anthropic, openai, dead_port)


@pytest.fixture(scope="module", params=["durable_object", "kv"])
def worker(request: pytest.FixtureRequest, logs: Path, upstreams: Upstreams) -> Iterator[MiniflareWorker]:
    require_miniflare()
    started = time.monotonic()
    running = launch_worker(token=SECRET, storage=request.param, upstreams=upstreams.origins, log_dir=logs)
    measure("miniflare start", storage=request.param, seconds=round(time.monotonic() - started, 2))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def anthropic(upstreams: Upstreams) -> Iterator[FakeAnthropic]:
    fake = upstreams.anthropic
    fake.reset()
    fake.default = Behavior()
    yield fake
    fake.reset()
    fake.default = Behavior()


@pytest.fixture
def openai(upstreams: Upstreams) -> FakeOpenAI:
    upstreams.openai.reset()
    return upstreams.openai


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0)) as client:
        yield client


def relay_for(worker: MiniflareWorker, transport: Transport = "http", **overrides: Any) -> RelayClient:
    settings = RelaySettings(enabled=True, url=worker.url, transport=transport, min_body_bytes=0, **overrides)
    return RelayClient(lambda: settings, lambda: SECRET)


def agent_bodies(turns: int, *, seed: int = 11, stream: bool = True) -> list[bytes]:
    """An agent's growing request: system prompt and tools, then turns with tool output; the cache breakpoint moves."""
    rng = random.Random(seed)
    vocabulary = [rng.randbytes(rng.randint(2, 6)).hex() for _ in range(3000)]

    def text(words: int) -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(words))

    system = [{"type": "text", "text": text(4000)}]
    tools = [
        {"name": f"tool_{i}", "description": text(120), "input_schema": {"type": "object"}} for i in range(20)
    ]
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": text(60)}]}]
    bodies = []
    for turn in range(turns):
        history = json.loads(json.dumps(messages))
        history[-1]["content"][-1]["cache_control"] = {"type": "ephemeral"}
        body = {"model": "claude-sonnet-4-5", "max_tokens": 256, "stream": stream, "system": system}
        bodies.append(
            json.dumps({**body, "tools": tools, "messages": history}, separators=(",", ":")).encode()
        )
        messages.append(
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": f"tu_{turn}", "name": "read", "input": {}}],
            }
        )
        result = {"type": "tool_result", "tool_use_id": f"tu_{turn}", "content": text(rng.randint(300, 3000))}
        messages.append({"role": "user", "content": [result]})
    return bodies


def outgoing(fake: FakeAnthropic | FakeOpenAI, body: bytes) -> Outgoing:
    if isinstance(fake, FakeOpenAI):
        headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
        return Outgoing("POST", f"{fake.url}/v1/responses", headers, body)
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    return Outgoing("POST", f"{fake.url}/v1/messages", headers, body)


async def relayed(
    relay: RelayClient, http: httpx.AsyncClient, out: Outgoing, session: str = "ses_w1"
) -> tuple[httpx.Response, bytes]:
    response = await relay.send(http, out, session)
    assert response is not None
    try:
        body = await response.aread()
    finally:
        await response.aclose()
    return response, body


def trip_of(response: httpx.Response) -> RelayTrip:
    trip = response.extensions["headway.relay"]
    assert isinstance(trip, RelayTrip)
    return trip


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_multi_turn_session_full_sync_then_patches(
    worker: MiniflareWorker, anthropic: FakeAnthropic, http: httpx.AsyncClient, transport: Transport
) -> None:
    relay = relay_for(worker, transport)
    bodies = agent_bodies(8)
    trips = []
    for body in bodies:
        response, answer = await relayed(relay, http, outgoing(anthropic, body))
        assert response.status_code == 200 and b"message_stop" in answer
        trips.append(trip_of(response))
    assert [t.mode for t in trips] == ["full_sync"] + ["patch"] * 7
    upstream = [r for r in anthropic.requests if r.path == "/v1/messages"]
    assert [r.body for r in upstream] == bodies  # the provider received every body, byte for byte
    assert all(r.headers["x-api-key"] == API_KEY for r in upstream)
    totals = relay.stats()["totals"]
    later = trips[1:]
    measure(
        "multi-turn session",
        storage=worker.storage,
        transport=transport,
        body_kb=[round(t.body_bytes / 1024, 1) for t in trips],
        sent_kb=[round(t.sent_bytes / 1024, 1) for t in trips],
        total_sent=totals["sent_bytes"],
        total_body=totals["body_bytes"],
        saved_percent=totals["saved_percent"],
        ms=[t.elapsed_ms for t in trips],
    )
    assert trips[0].sent_bytes < trips[0].body_bytes * 0.7  # a full sync travels compressed
    assert all(t.sent_bytes < 0.25 * t.body_bytes for t in later)
    assert totals["saved_percent"] > 75
    await relay.aclose()


async def test_openai_responses_are_relayed_alike(
    worker: MiniflareWorker, openai: FakeOpenAI, http: httpx.AsyncClient
) -> None:
    relay = relay_for(worker)
    modes = []
    for body in agent_bodies(3, seed=5):
        response, answer = await relayed(relay, http, outgoing(openai, body), "sess-openai")
        assert response.status_code == 200 and b"response.completed" in answer
        modes.append(trip_of(response).mode)
    assert modes == ["full_sync", "patch", "patch"]
    assert [r.headers["authorization"] for r in openai.requests] == [f"Bearer {API_KEY}"] * 3


class CorruptingRelay(RelayClient):
    """Test-only: spoils the next patch's bytes, as a client bug or a corrupted upload would."""

    spoil = 0

    def _plan(
        self, lane: Any, out: Outgoing, next_hash: str, *, full: bool
    ) -> tuple[Any, dict[str, Any], bytes]:
        mode, header, payload = super()._plan(lane, out, next_hash, full=full)
        if mode == "patch" and self.spoil and payload:
            self.spoil -= 1
            payload = bytes([payload[0] ^ 0x20]) + payload[1:]
        return mode, header, payload


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_hash_mismatch_answers_409_and_the_client_recovers_with_a_full_sync(
    worker: MiniflareWorker, anthropic: FakeAnthropic, http: httpx.AsyncClient, transport: Transport
) -> None:
    settings = RelaySettings(enabled=True, url=worker.url, transport=transport, min_body_bytes=0)
    relay = CorruptingRelay(lambda: settings, lambda: SECRET)
    bodies = agent_bodies(4, seed=21)
    await relayed(relay, http, outgoing(anthropic, bodies[0]), "ses_409")
    relay.spoil = 1
    response, _ = await relayed(relay, http, outgoing(anthropic, bodies[1]), "ses_409")
    trip = trip_of(response)
    assert trip.resynced and trip.mode == "full_sync"
    response, _ = await relayed(relay, http, outgoing(anthropic, bodies[2]), "ses_409")
    assert trip_of(response).mode == "patch"
    assert [r.body for r in anthropic.requests] == [
        bodies[0],
        bodies[1],
        bodies[2],
    ]  # the spoiled body never left
    assert relay.stats()["totals"]["resyncs"] == 1
    await relay.aclose()


async def test_the_409_itself(
    worker: MiniflareWorker, anthropic: FakeAnthropic, http: httpx.AsyncClient
) -> None:
    body = agent_bodies(1)[0]
    header = {
        "v": 1,
        "type": "request",
        "id": "r1",
        "lane": "0",
        "mode": "full_sync",
        "revision": 1,
        "next_hash": "sha256:" + "0" * 64,
        "upstream": {"url": f"{anthropic.url}/v1/messages", "method": "POST", "headers": []},
    }
    headers = {"x-relay-token": SECRET, "x-relay-session": session_key("raw")}
    response = await http.post(
        f"{worker.url}/v1/relay", content=encode_envelope(header, body), headers=headers
    )
    assert response.status_code == 409
    assert response.headers["x-headway-relay-error"] == "hash_mismatch"
    assert response.json()["error"]["code"] == "hash_mismatch"
    patch = {**header, "mode": "patch", "base_hash": "sha256:" + "1" * 64, "ops": [[0, 0, 1]], "lane": "9"}
    response = await http.post(
        f"{worker.url}/v1/relay", content=encode_envelope(patch, b"x"), headers=headers
    )
    assert response.status_code == 409 and response.headers["x-headway-relay-error"] == "state_mismatch"
    assert anthropic.requests == []


async def test_state_expires_after_the_ttl_and_the_client_resyncs(
    logs: Path, anthropic: FakeAnthropic, http: httpx.AsyncClient
) -> None:
    require_miniflare()
    with launch_worker(
        token=SECRET, log_dir=logs, bindings={"RELAY_TTL_SECONDS": "1"}, upstreams=[anthropic.url]
    ) as short:
        relay = relay_for(short)
        bodies = agent_bodies(3, seed=3)
        await relayed(relay, http, outgoing(anthropic, bodies[0]))
        response, _ = await relayed(relay, http, outgoing(anthropic, bodies[1]))
        assert trip_of(response).mode == "patch"
        await asyncio.sleep(2.0)  # the Durable Object's alarm deletes the session's bodies
        response, _ = await relayed(relay, http, outgoing(anthropic, bodies[2]))
        assert trip_of(response).resynced
        assert [r.body for r in anthropic.requests] == bodies


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_relay_down_fails_fast_before_any_byte(
    logs: Path, anthropic: FakeAnthropic, http: httpx.AsyncClient, transport: Transport
) -> None:
    require_miniflare()
    doomed = launch_worker(token=SECRET, log_dir=logs, upstreams=[anthropic.url])
    relay = relay_for(doomed, transport)
    bodies = agent_bodies(2, seed=8)
    await relayed(relay, http, outgoing(anthropic, bodies[0]))
    doomed.stop()
    started = time.perf_counter()
    with pytest.raises(RelayUnavailable) as info:
        await relay.send(http, outgoing(anthropic, bodies[1]), "ses_w1")
    elapsed = time.perf_counter() - started
    measure("relay down → RelayUnavailable", transport=transport, ms=round(elapsed * 1000, 1))
    assert info.value.fallback_to_direct and elapsed < 5
    assert len(anthropic.requests) == 1
    await relay.aclose()


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_upstream_unreachable_from_the_worker_is_unavailable(
    worker: MiniflareWorker, upstreams: Upstreams, http: httpx.AsyncClient, transport: Transport
) -> None:
    relay = relay_for(worker, transport)
    out = Outgoing(
        "POST",
        f"http://127.0.0.1:{upstreams.dead_port}/v1/messages",
        {"x-api-key": API_KEY},
        agent_bodies(1)[0],
    )
    with pytest.raises(RelayUnavailable) as info:
        await relay.send(http, out, "ses_unreach")
    assert info.value.status == 502 and info.value.code == "upstream_unreachable"
    await relay.aclose()


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_upstream_status_headers_and_encoded_bodies_pass_through(
    worker: MiniflareWorker, anthropic: FakeAnthropic, http: httpx.AsyncClient, transport: Transport
) -> None:
    relay = relay_for(worker, transport)
    body = agent_bodies(1, stream=False)[0]
    anthropic.enqueue(
        Behavior(
            status=429,
            retry_after=30,
            error_type="rate_limit_error",
            headers={"anthropic-ratelimit-requests-remaining": "0"},
        )
    )
    response, answer = await relayed(relay, http, outgoing(anthropic, body), "ses_pass")
    assert response.status_code == 429
    assert (
        response.headers["retry-after"] == "30"
        and response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    )
    assert response.headers["request-id"].startswith("req_fake_")
    assert json.loads(answer)["error"]["type"] == "rate_limit_error"
    assert "x-headway-relay" not in response.headers
    payload = {"id": "msg_gz", "content": [{"type": "text", "text": "zipped " * 500}]}
    anthropic.enqueue(
        Behavior(body=gzip.compress(json.dumps(payload).encode()), headers={"content-encoding": "gzip"})
    )
    response, answer = await relayed(relay, http, outgoing(anthropic, body), "ses_pass")
    assert response.status_code == 200 and json.loads(answer) == payload
    await relay.aclose()


async def event_times(response: httpx.Response, started: float) -> list[float]:
    times: list[float] = []
    buffer = b""
    async for chunk in response.aiter_bytes():
        buffer += chunk
        while b"\n\n" in buffer:
            _, buffer = buffer.split(b"\n\n", 1)
            times.append(time.perf_counter() - started)
    await response.aclose()
    return times


@pytest.mark.parametrize("transport", ["http", "websocket"])
async def test_streaming_stays_incremental_through_the_worker(
    worker: MiniflareWorker, anthropic: FakeAnthropic, http: httpx.AsyncClient, transport: Transport
) -> None:
    delay = 0.25
    anthropic.default = Behavior(chunks=6, delay=delay)
    out = outgoing(anthropic, agent_bodies(1)[0])
    started = time.perf_counter()
    direct = await event_times(
        await http.send(
            http.build_request(out.method, out.url, headers=out.headers, content=out.content), stream=True
        ),
        started,
    )
    relay = relay_for(worker, transport)
    await relayed(relay, http, out, "ses_stream")  # warm: the session's full sync
    started = time.perf_counter()
    response = await relay.send(http, out, "ses_stream")
    assert response is not None
    through = await event_times(response, started)
    assert len(through) == len(direct) > 8
    gaps = [b - a for a, b in itertools.pairwise(through)]
    measure(
        "event arrival through the Worker",
        storage=worker.storage,
        transport=transport,
        direct_s=[round(t, 3) for t in direct],
        relayed_s=[round(t, 3) for t in through],
        offset_ms=round(statistics.median(r - d for r, d in zip(through, direct, strict=True)) * 1000, 1),
    )
    # Events keep the upstream's pacing: nothing is held back until the end.
    spread = through[-1] - through[0]
    assert spread > (len(direct) - 4) * delay * 0.8
    assert through[0] < through[-1] - 1.0
    assert max(gaps) < delay * 2 + 0.2
    for relayed_at, direct_at in zip(through, direct, strict=True):
        assert abs(relayed_at - direct_at) < 0.3
    await relay.aclose()


async def test_websocket_queues_a_sessions_requests_and_runs_sessions_in_parallel(
    worker: MiniflareWorker, anthropic: FakeAnthropic, http: httpx.AsyncClient
) -> None:
    anthropic.default = Behavior(chunks=4, delay=0.2)
    relay = relay_for(worker, "websocket")
    bodies = agent_bodies(3, seed=13)
    spans: dict[str, tuple[float, float]] = {}
    t0 = time.perf_counter()

    async def one(name: str, body: bytes, session: str) -> None:
        response = await relay.send(http, outgoing(anthropic, body), session)
        assert response is not None
        start = time.perf_counter() - t0
        await response.aread()
        await response.aclose()
        spans[name] = (start, time.perf_counter() - t0)

    await one("warm", bodies[0], "ses_q")
    t0 = time.perf_counter()
    await asyncio.gather(
        one("first", bodies[1], "ses_q"),
        one("second", bodies[2], "ses_q"),
        one("other", bodies[0], "ses_other"),
    )
    measure("websocket queue", spans={k: (round(a, 3), round(b, 3)) for k, (a, b) in spans.items()})
    first, second, other = spans["first"], spans["second"], spans["other"]
    assert second[0] >= first[1] - 0.01  # the session's second request started after the first one finished
    assert other[0] < first[1] and other[1] > first[0]  # another session did not wait
    stats = relay.stats()
    assert stats["open_sockets"] == 2
    assert stats["totals"]["requests"] == 4
    await relay.aclose()


async def test_after_a_sleep_a_sessions_socket_is_opened_afresh_not_waited_on(
    worker: MiniflareWorker, anthropic: FakeAnthropic
) -> None:
    # The socket to the Worker goes through a relay that forgets silently (a router that lost its state). Before,
    # the first request after the wake-up went out on the old socket and waited for the Worker's "accepted" until
    # ACCEPT_TIMEOUT (15 s), then went direct; now a new socket carries it at once.
    night = [0.0]

    def watch() -> SleepWatch:
        return SleepWatch(wall=lambda: time.time() + night[0], monotonic=time.monotonic)

    port = int(worker.url.rsplit(":", 1)[1])
    with ForgetfulRelay("127.0.0.1", port) as forgetful:
        settings = RelaySettings(enabled=True, url=forgetful.url, transport="websocket", min_body_bytes=0)
        relay = RelayClient(lambda: settings, lambda: SECRET, sleep_watch=watch())
        hook = AfterSleep(
            watch()
        )  # the engine's client has it: the socket's upgrade may not take a dead connection
        async with hook.attach(
            httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0), event_hooks={"request": [hook]})
        ) as http:
            bodies = agent_bodies(2, seed=17)
            first, _ = await relayed(relay, http, outgoing(anthropic, bodies[0]), "ses_sleep")
            assert first.status_code == 200 and relay.stats()["open_sockets"] == 1
            forgetful.forget(silently=True)
            night[0] = 8 * 3600.0
            started = time.monotonic()
            after, body = await relayed(relay, http, outgoing(anthropic, bodies[1]), "ses_sleep")
            took = time.monotonic() - started
            await relay.aclose()
    assert after.status_code == 200 and b"message_stop" in body
    assert trip_of(after).transport == "websocket"
    assert forgetful.connections == 2  # the socket from before the sleep, and the one opened after it
    assert took < 5.0, took


async def test_an_envelope_too_large_for_a_websocket_message_goes_by_http(
    worker: MiniflareWorker, anthropic: FakeAnthropic, http: httpx.AsyncClient
) -> None:
    relay = relay_for(worker, "websocket")
    noise = random.Random(1).randbytes(1_200_000).hex()  # incompressible enough to stay over 1 MiB
    body = json.dumps(
        {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": noise}]}
    ).encode()
    response, _ = await relayed(relay, http, outgoing(anthropic, body), "ses_big")
    assert trip_of(response).mode == "full_sync" and trip_of(response).sent_bytes > 1024 * 1024
    grown = body[:-3] + b' and a little more"}]}'
    response, _ = await relayed(relay, http, outgoing(anthropic, grown), "ses_big")
    assert trip_of(response).mode == "patch" and trip_of(response).sent_bytes < 1000
    assert [r.body for r in anthropic.requests] == [body, grown]
    await relay.aclose()


async def test_authentication_and_protocol_are_checked(
    worker: MiniflareWorker, http: httpx.AsyncClient
) -> None:
    info = await http.get(f"{worker.url}/v1/info", headers={"x-relay-token": SECRET})
    described = info.json()
    assert {k: described[k] for k in ("protocol", "worker_version", "storage")} == {
        "protocol": 1,
        "worker_version": "1.1.0",
        "storage": worker.storage,
    }
    assert described["ttl_seconds"] == 86400 and described["max_sessions"] == 128
    for headers in ({}, {"x-relay-token": SECRET[:-1] + "x"}):
        response = await http.get(f"{worker.url}/v1/info", headers=headers)
        assert response.status_code == 401 and response.headers["x-headway-relay-error"] == "unauthorized"
    response = await http.get(
        f"{worker.url}/v1/info", headers={"x-relay-token": SECRET, "x-relay-protocol": "2"}
    )
    assert response.status_code == 426
    ok = {"x-relay-token": SECRET, "x-relay-session": session_key("s")}
    envelope = encode_envelope({"v": 2, "lane": "0", "mode": "full_sync"}, b"{}")
    assert (await http.post(f"{worker.url}/v1/relay", content=envelope, headers=ok)).status_code == 426
    assert (await http.get(f"{worker.url}/v1/relay", headers=ok)).status_code == 405
    assert (await http.get(f"{worker.url}/v1/ws", headers=ok)).status_code == 426
    assert (await http.get(f"{worker.url}/elsewhere", headers=ok)).status_code == 404
    bad = {"x-relay-token": SECRET, "x-relay-session": "../../etc"}
    assert (await http.post(f"{worker.url}/v1/relay", content=envelope, headers=bad)).status_code == 400
    wrong = RelayClient(
        lambda: RelaySettings(enabled=True, url=worker.url, transport="websocket", min_body_bytes=0),
        lambda: "x" * 43,
    )
    with pytest.raises(RelayUnavailable) as refused:
        await wrong.send(http, Outgoing("POST", "http://127.0.0.1:9/v1/messages", {}, b"{}"), "ses")
    assert refused.value.status == 401
    await wrong.aclose()


async def test_storage_latency_durable_object_and_kv(
    logs: Path, anthropic: FakeAnthropic, http: httpx.AsyncClient
) -> None:
    """Both storages work; the Durable Object keeps the base in memory, KV reads and writes it on every turn."""
    require_miniflare()
    figures: dict[str, float] = {}
    for storage in ("durable_object", "kv"):
        with launch_worker(token=SECRET, storage=storage, log_dir=logs, upstreams=[anthropic.url]) as running:
            relay = relay_for(running)
            bodies = agent_bodies(14, seed=99)
            timings = []
            for body in bodies:
                response, _ = await relayed(relay, http, outgoing(anthropic, body), f"ses_{storage}")
                timings.append(trip_of(response).elapsed_ms)
            figures[storage] = statistics.median(timings[2:])
            await relay.aclose()
    measure("time to response start, median of patch turns (ms)", **figures)
    assert all(ms < 500 for ms in figures.values())
