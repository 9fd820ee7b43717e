"""RelayClient's logic against a reference Worker written in Python, behind httpx.MockTransport.

Lanes, patches, 409 recovery, bounded memory and idle time, errors and the fallback flag, the savings counters. The
real Worker, in workerd, is exercised with the same client in test_relay_worker.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from proxy.config.settings import RelaySettings
from proxy.providers.base import Outgoing
from proxy.relay import RelayClient, RelayTrip, RelayUnavailable
from proxy.relay.patch import Patch, apply, sha256_tag
from proxy.relay.protocol import decode_envelope
from proxy.secrets.keychain import KeychainError

SECRET = "s" * 43
URL = "https://relay.example.workers.dev"
UPSTREAM = "https://api.anthropic.com/v1/messages"


class PyWorker:
    """The Worker's HTTP side of protocol 1, kept simple: state per (session, lane), 409 on any mismatch."""

    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        self.state: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.envelopes: list[tuple[dict[str, Any], int]] = []  # (header, wire size)
        self.upstream: list[bytes] = []
        self.answer: Callable[[dict[str, Any], bytes], httpx.Response] | None = None
        self.gate: asyncio.Event | None = None  # hold every answer until it is set
        self.arrived = asyncio.Condition()
        self.lie_about_hash = 0  # corrupt the next N rebuilds

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/relay":
            return httpx.Response(404, text="not here")
        if request.headers.get("x-relay-token") != self.secret:
            return _error(401, "unauthorized", "missing or wrong relay token")
        header, payload = decode_envelope(request.content)
        self.envelopes.append((header, len(request.content)))
        async with self.arrived:
            self.arrived.notify_all()
        if header.get("v") != 1:
            return _error(426, "protocol_mismatch", "this Worker speaks relay protocol 1")
        key = (request.headers["x-relay-session"], header["lane"])
        if header["mode"] == "patch":
            base = self.state.get(key)
            if base is None or base[1] != header["base_hash"]:
                return _error(409, "state_mismatch", "the lane's base body differs")
            body = apply(base[0], Patch(tuple(tuple(op) for op in header["ops"]), payload))
        else:
            body = payload
        if self.lie_about_hash:
            self.lie_about_hash -= 1
            body += b" "
        if sha256_tag(body) != header["next_hash"]:
            return _error(409, "hash_mismatch", "the rebuilt body's SHA-256 differs")
        if header["mode"] != "oneshot":
            self.state[key] = (body, header["next_hash"])
        self.upstream.append(body)
        if self.gate is not None:
            await self.gate.wait()
        if self.answer is not None:
            return self.answer(header, body)
        return httpx.Response(
            200,
            headers={"x-headway-relay": "1", "content-type": "text/event-stream", "request-id": "req_1"},
            content=b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
        )


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(
        status, headers={"x-headway-relay-error": code}, json={"error": {"code": code, "message": message}}
    )


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _body(turns: int) -> bytes:
    history = [{"role": "user", "content": f"turn {i} " + "lorem ipsum dolor " * 400} for i in range(turns)]
    return json.dumps({"model": "claude-x", "system": "system " * 500, "messages": history}).encode()


def _title_body(n: int) -> bytes:
    """A small-model side request of the same session: nothing in common with the conversation."""
    prompt = [{"role": "user", "content": f"Write a 5-word title for conversation {n}: " + "summary " * 300}]
    return json.dumps({"model": "claude-haiku", "max_tokens": 20, "messages": prompt}).encode()


def _out(body: bytes, url: str = UPSTREAM) -> Outgoing:
    return Outgoing("POST", url, {"x-api-key": "sk-ant-1", "content-type": "application/json"}, body)


def _client(
    worker: Callable[[httpx.Request], Coroutine[None, None, httpx.Response]],
    *,
    clock: Clock | None = None,
    secret: str | None = SECRET,
    **relay: Any,
) -> tuple[RelayClient, httpx.AsyncClient, RelaySettings]:
    settings = RelaySettings(**{"enabled": True, "url": URL, "min_body_bytes": 0, **relay})
    client = RelayClient(lambda: settings, lambda: secret, clock=clock or Clock())
    http = httpx.AsyncClient(transport=httpx.MockTransport(worker))
    return client, http, settings


async def _send(
    client: RelayClient, http: httpx.AsyncClient, body: bytes, session: str = "ses_1"
) -> httpx.Response:
    response = await client.send(http, _out(body), session)
    assert response is not None
    await response.aread()
    await response.aclose()
    return response


def _trip(response: httpx.Response) -> RelayTrip:
    trip = response.extensions["headway.relay"]
    assert isinstance(trip, RelayTrip)
    return trip


async def test_full_sync_then_patches_with_the_savings_counted() -> None:
    worker = PyWorker()
    relay, http, _ = _client(worker)
    bodies = [_body(n) for n in range(1, 6)]
    trips = [_trip(await _send(relay, http, body)) for body in bodies]
    assert [t.mode for t in trips] == ["full_sync", "patch", "patch", "patch", "patch"]
    assert worker.upstream == bodies
    for trip, body in zip(trips, bodies, strict=True):
        assert trip.body_bytes == len(body) and trip.sent_bytes < len(body)
    assert all(t.sent_bytes < 1000 for t in trips[1:])
    header = worker.envelopes[-1][0]
    assert header["upstream"] == {
        "url": UPSTREAM,
        "method": "POST",
        "headers": [["x-api-key", "sk-ant-1"], ["content-type", "application/json"]],
    }
    assert header["base_hash"] == sha256_tag(bodies[-2]) and header["next_hash"] == sha256_tag(bodies[-1])
    stats = relay.stats()
    totals = stats["totals"]
    assert totals["requests"] == 5 and totals["full_syncs"] == 1 and totals["patches"] == 4
    assert totals["sent_bytes"] == sum(size for _, size in worker.envelopes)
    assert totals["body_bytes"] == sum(map(len, bodies))
    assert totals["saved_percent"] > 90
    assert stats["sessions"][0]["session_id"] == "ses_1" and stats["sessions"][0]["requests"] == 5
    assert stats["recent"][0]["mode"] == "patch"
    await http.aclose()


async def test_the_response_is_the_upstreams_without_the_relay_mark() -> None:
    worker = PyWorker()
    worker.answer = lambda header, body: httpx.Response(
        429,
        headers={"x-headway-relay": "1", "retry-after": "30", "content-type": "application/json"},
        json={"e": 1},
    )
    relay, http, _ = _client(worker)
    response = await _send(relay, http, _body(1))
    assert response.status_code == 429 and response.headers["retry-after"] == "30"
    assert "x-headway-relay" not in response.headers
    assert response.json() == {"e": 1}


@pytest.mark.parametrize(
    ("setup", "session", "size"),
    [
        ({"enabled": False}, "ses_1", 50_000),
        ({"url": None}, "ses_1", 50_000),
        ({}, None, 50_000),
        ({"min_body_bytes": 8192}, "ses_1", 100),
    ],
)
async def test_not_for_this_request(setup: dict[str, Any], session: str | None, size: int) -> None:
    worker = PyWorker()
    relay, http, _ = _client(worker, **setup)
    assert await relay.send(http, _out(b"x" * size), session) is None
    assert worker.envelopes == []


async def test_no_secret_in_the_keychain_means_direct() -> None:
    relay, http, _ = _client(PyWorker(), secret=None)
    assert await relay.send(http, _out(_body(1)), "ses_1") is None


async def test_worker_lost_its_state_409_then_full_sync() -> None:
    worker = PyWorker()
    relay, http, _ = _client(worker)
    await _send(relay, http, _body(1))
    worker.state.clear()  # the Durable Object was evicted, or the TTL passed
    trip = _trip(await _send(relay, http, _body(2)))
    assert trip.resynced and trip.mode == "full_sync"
    assert [h["mode"] for h, _ in worker.envelopes] == ["full_sync", "patch", "full_sync"]
    assert worker.upstream == [_body(1), _body(2)]
    assert _trip(await _send(relay, http, _body(3))).mode == "patch"
    assert relay.stats()["totals"]["resyncs"] == 1


async def test_hash_mismatch_is_resent_whole_and_a_second_one_gives_up() -> None:
    worker = PyWorker()
    relay, http, _ = _client(worker)
    await _send(relay, http, _body(1))
    worker.lie_about_hash = 1
    assert _trip(await _send(relay, http, _body(2))).resynced
    worker.lie_about_hash = 2
    with pytest.raises(RelayUnavailable) as info:
        await relay.send(http, _out(_body(3)), "ses_1")
    assert info.value.code == "conflict" and info.value.fallback_to_direct
    assert relay.stats()["totals"]["failures"] == 1


async def test_a_side_request_gets_its_own_lane_and_the_conversation_keeps_patching() -> None:
    worker = PyWorker()
    relay, http, _ = _client(worker)
    await _send(relay, http, _body(1))
    assert _trip(await _send(relay, http, _title_body(1))).mode == "full_sync"
    assert _trip(await _send(relay, http, _body(2))).mode == "patch"
    assert _trip(await _send(relay, http, _title_body(2))).mode == "patch"
    assert [h["lane"] for h, _ in worker.envelopes] == ["0", "1", "0", "1"]


async def test_concurrent_requests_of_a_session_never_share_a_lane() -> None:
    worker = PyWorker()
    worker.gate = asyncio.Event()
    relay, http, _ = _client(worker)
    sends = [asyncio.ensure_future(_send(relay, http, _body(1 + i))) for i in range(4)]
    async with asyncio.timeout(5), worker.arrived:
        await worker.arrived.wait_for(lambda: len(worker.envelopes) == 4)  # all four in flight at once
    worker.gate.set()
    trips = [_trip(r) for r in await asyncio.gather(*sends)]
    assert sorted(t.mode for t in trips) == ["full_sync", "full_sync", "full_sync", "oneshot"]
    assert sorted(h["lane"] for h, _ in worker.envelopes) == ["0", "1", "2", "oneshot"]


async def test_sessions_beyond_the_limit_and_idle_ones_are_forgotten() -> None:
    clock = Clock()
    worker = PyWorker()
    relay, http, _ = _client(worker, clock=clock, max_sessions=2, ttl_minutes=10)
    for session in ("a", "b", "c"):
        await _send(relay, http, _body(1), session)
    assert relay.stats()["base_bodies"]["sessions"] == 2
    assert (
        _trip(await _send(relay, http, _body(2), "a")).mode == "full_sync"
    )  # "a" was the least recently used
    assert _trip(await _send(relay, http, _body(2), "c")).mode == "patch"
    clock.now += 11 * 60
    assert _trip(await _send(relay, http, _body(3), "c")).mode == "full_sync"


async def test_memory_bound_drops_least_recently_used_bodies() -> None:
    worker = PyWorker()
    relay, http, _ = _client(worker, max_memory_mb=8)
    big = [b'{"n":%d,"x":"' % i + bytes([65 + i]) * (3 * 1024 * 1024) + b'"}' for i in range(4)]
    for i, body in enumerate(big):
        await _send(relay, http, body, f"s{i}")
    assert relay.stats()["base_bodies"]["bytes"] <= 8 * 1024 * 1024


@pytest.mark.parametrize("fallback", [True, False])
async def test_relay_unreachable_raises_with_the_fallback_setting(fallback: bool) -> None:
    async def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    relay, http, _ = _client(down, fallback_to_direct=fallback)
    with pytest.raises(RelayUnavailable) as info:
        await relay.send(http, _out(_body(1)), "ses_1")
    assert info.value.fallback_to_direct is fallback and info.value.code == "unreachable"
    assert not info.value.upstream_may_have_seen
    assert "connection refused" in relay.stats()["last_error"]


async def test_the_secret_is_read_every_five_minutes_and_a_replaced_one_after_the_first_401() -> None:
    reads: list[str] = []
    secret = {"now": SECRET}

    def read_secret() -> str:
        reads.append(secret["now"])
        return secret["now"]

    clock, worker = Clock(), PyWorker()
    settings = RelaySettings(enabled=True, url=URL, min_body_bytes=0)
    relay = RelayClient(lambda: settings, read_secret, clock=clock)
    http = httpx.AsyncClient(transport=httpx.MockTransport(worker))
    for n in range(59):  # a relayed request every 10 s for ten minutes
        await _send(relay, http, _body(n % 5 + 1))
        clock.now += 10.0
    assert len(reads) == 2  # it was every 15 s: 40 keychain reads

    # `headway relay setup` deployed a new secret: the Worker refuses the cached one once, then it is read again.
    secret["now"] = worker.secret = "n" * 43
    with pytest.raises(RelayUnavailable) as info:
        await relay.send(http, _out(_body(1)), "ses_1")
    assert info.value.status == 401
    await _send(relay, http, _body(2))
    assert reads[-1] == "n" * 43 and len(reads) == 3
    await http.aclose()


async def test_a_missing_secret_is_looked_for_again_soon_and_a_keychain_error_keeps_the_last_one() -> None:
    """A secret stored after the first look (setup finishing while requests run) is used within seconds, not after
    the five minutes a present one is kept; a keychain that fails a read keeps the secret it had."""
    reads: list[str | None] = []
    secret: dict[str, str | None] = {"now": None}

    def read_secret() -> str | None:
        reads.append(secret["now"])
        if secret["now"] == "fail":
            raise KeychainError("cannot read 'relay-secret' from the keychain: the daemon is gone")
        return secret["now"]

    clock, worker = Clock(), PyWorker()
    settings = RelaySettings(enabled=True, url=URL, min_body_bytes=0)
    relay = RelayClient(lambda: settings, read_secret, clock=clock)
    http = httpx.AsyncClient(transport=httpx.MockTransport(worker))
    assert await relay.send(http, _out(_body(1)), "ses_1") is None  # no secret yet: direct
    secret["now"] = SECRET
    clock.now += 0.5
    assert await relay.send(http, _out(_body(1)), "ses_1") is None  # not asked again within the second
    clock.now += 1.0
    assert _trip(await _send(relay, http, _body(1))).mode == "full_sync"  # found at the next look
    assert reads == [None, SECRET]

    secret["now"] = "fail"
    clock.now += 301.0
    assert (
        _trip(await _send(relay, http, _body(2))).mode == "patch"
    )  # the read failed: the last secret serves
    assert reads[-1] == "fail"
    await http.aclose()


async def test_timeouts_wrong_secret_old_worker_and_strangers_are_unavailable() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    relay, http, _ = _client(slow)
    with pytest.raises(RelayUnavailable, match="did not answer in time") as info:
        await relay.send(http, _out(_body(1)), "ses_1")
    assert info.value.upstream_may_have_seen  # the Worker may have called the provider already

    relay, http, _ = _client(PyWorker(secret="t" * 43))
    with pytest.raises(RelayUnavailable, match="relay setup") as info:
        await relay.send(http, _out(_body(1)), "ses_1")
    assert info.value.status == 401 and info.value.code == "unauthorized"

    async def old(request: httpx.Request) -> httpx.Response:
        return _error(426, "protocol_mismatch", "this Worker speaks relay protocol 0")

    relay, http, _ = _client(old)
    with pytest.raises(RelayUnavailable, match="upgrade") as info:
        await relay.send(http, _out(_body(1)), "ses_1")
    assert info.value.status == 426

    async def stranger(request: httpx.Request) -> httpx.Response:
        return httpx.Response(522, text="<html>Cloudflare: connection timed out</html>")

    relay, http, _ = _client(stranger)
    with pytest.raises(RelayUnavailable, match="without the relay's mark") as info:
        await relay.send(http, _out(_body(1)), "ses_1")
    assert info.value.code == "not_a_relay"


async def test_a_new_relay_url_starts_every_session_over() -> None:
    worker = PyWorker()
    relay, http, settings = _client(worker)
    await _send(relay, http, _body(1))
    settings.url = "https://other.example.workers.dev"
    assert _trip(await _send(relay, http, _body(2))).mode == "full_sync"


async def test_a_turn_that_more_than_doubles_the_body_still_patches_its_lane() -> None:
    """A long tool result (a whole file) added in the middle of the body: the base lives on, so it is the same lane."""
    worker = PyWorker()
    relay, http, _ = _client(worker)
    first = json.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "read it"}], "tools": ["t" * 20000]}
    ).encode()
    file_text = " ".join(f"line {i} of the file" for i in range(3000))
    second = first.replace(
        b'"read it"}]', b'"read it"},{"role":"user","content":"' + file_text.encode() + b'"}]'
    )
    assert len(second) > 2 * len(first)
    await _send(relay, http, first)
    trip = _trip(await _send(relay, http, second))
    assert trip.mode == "patch" and [h["lane"] for h, _ in worker.envelopes] == ["0", "0"]


async def test_small_edits_at_both_ends_do_not_lose_the_lane() -> None:
    worker = PyWorker()
    relay, http, _ = _client(worker)
    first = b'{"ts":"0001","history":"' + b"abcdefgh" * 5000 + b'","tail":"one"}'
    second = b'{"ts":"0002","history":"' + b"abcdefgh" * 5000 + b' and more","tail":"two"}'
    await _send(relay, http, first)
    trip = _trip(await _send(relay, http, second))
    assert trip.mode == "patch" and trip.sent_bytes < 600  # the header (hashes, upstream headers) included
