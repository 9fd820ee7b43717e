"""The hot path's upstream client against real servers on 127.0.0.1: the fakes, a real forward proxy, a closed port."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.wire.sleep_watch import SleepWatch
from proxy.wire.upstream_client import Timeouts, UpstreamClient
from tests.fakes import Behavior, FakeAnthropic
from tests.support.forgetful_relay import ForgetfulRelay
from tests.support.http_proxy import HttpProxy
from tests.support.tls import SelfSigned, self_signed

BODY = json.dumps(
    {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
)
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


def _client(environ: dict[str, str] | None = None, read: float = 10.0) -> UpstreamClient:
    return UpstreamClient(lambda: Timeouts(connect=5.0, read=read), environ=environ or {})


async def _post(client: UpstreamClient, url: str, body: str = BODY) -> httpx.Response:
    response = await client.send("POST", f"{url}/v1/messages", HEADERS, body.encode())
    await response.aread()
    await response.aclose()
    return response


async def test_a_request_and_its_answer(fake: FakeAnthropic) -> None:
    client = _client()
    try:
        response = await _post(client, fake.url)
    finally:
        await client.aclose()
    assert response.status_code == 200
    assert response.json()["content"][0]["text"] == "Hello from the fake"
    assert response.headers["request-id"] == fake.requests[-1].request_id
    sent = fake.requests[-1]
    assert sent.json == json.loads(BODY)
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["accept-encoding"] == "gzip, deflate"
    assert "user-agent" not in sent.headers  # never aiohttp's: the adapters set Headway's own


async def test_a_gzip_answer_is_decoded(fake: FakeAnthropic) -> None:
    payload = {"id": "msg_1", "type": "message", "content": []}
    fake.enqueue(
        Behavior(body=gzip.compress(json.dumps(payload).encode()), headers={"content-encoding": "gzip"})
    )
    client = _client()
    try:
        response = await _post(client, fake.url)
    finally:
        await client.aclose()
    assert response.json() == payload


async def test_cookies_are_never_sent_back(fake: FakeAnthropic) -> None:
    # One client serves every account: an upstream's cookie would link them.
    fake.enqueue(Behavior(headers={"set-cookie": "session=abc; Path=/"}))
    client = _client()
    try:
        await _post(client, fake.url)
        await _post(client, fake.url)
    finally:
        await client.aclose()
    assert "cookie" not in fake.requests[-1].headers


async def test_keep_alive_reuses_one_connection(fake: FakeAnthropic) -> None:
    client = _client()
    try:
        for _ in range(5):
            await _post(client, fake.url)
    finally:
        await client.aclose()
    assert fake.connection_count == 1


async def test_a_stream_closed_early_does_not_leave_its_rest_for_the_next_request(
    fake: FakeAnthropic,
) -> None:
    client = _client()
    streamed = json.dumps({**json.loads(BODY), "stream": True})
    fake.enqueue(Behavior(chunks=20))
    try:
        response = await client.send("POST", f"{fake.url}/v1/messages", HEADERS, streamed.encode())
        async for _ in response.aiter_bytes():
            break  # the agent went away after the first bytes
        await response.aclose()
        after = await _post(client, fake.url)
    finally:
        await client.aclose()
    assert after.json()["type"] == "message"


async def test_the_proxy_from_the_environment_is_used(fake: FakeAnthropic) -> None:
    with HttpProxy() as proxy:
        client = _client({"HTTP_PROXY": proxy.url})
        try:
            response = await _post(client, fake.url)
        finally:
            await client.aclose()
    assert response.status_code == 200
    assert proxy.request_lines == [f"POST {fake.url}/v1/messages HTTP/1.1"]


async def test_the_systems_proxy_settings_are_used_when_the_environment_names_none(
    fake: FakeAnthropic,
) -> None:
    """macOS's System Settings and Windows's registry (here: what reading them returned), as urllib's getproxies and
    so httpx read them for logins and polling. Before, model requests ignored them and went direct, while everything
    else went through the proxy: behind a company's proxy, model requests failed."""
    with HttpProxy() as proxy:
        system = {"http": f"127.0.0.1:{proxy.port}"}  # as the registry may give it: no scheme
        sides = (
            UpstreamClient(lambda: Timeouts(5.0, 10.0), environ={}, system_proxies=lambda: system),
            # the environment wins, and a variable of its own (NO_PROXY alone included) means "not the system's"
            UpstreamClient(
                lambda: Timeouts(5.0, 10.0),
                environ={"NO_PROXY": "example.org"},
                system_proxies=lambda: system,
            ),
        )
        answers = []
        for client in sides:
            try:
                answers.append((await _post(client, fake.url)).status_code)
            finally:
                await client.aclose()
    assert answers == [200, 200]
    assert proxy.request_lines == [f"POST {fake.url}/v1/messages HTTP/1.1"]  # the first only


async def test_a_proxy_variable_without_a_scheme_is_an_http_proxy(fake: FakeAnthropic) -> None:
    """``HTTP_PROXY=proxy.corp:3128``, as curl and httpx read it; before: "the proxy proxy.corp:// … not supported"."""
    with HttpProxy() as proxy:
        client = _client({"HTTP_PROXY": f"127.0.0.1:{proxy.port}"})
        try:
            response = await _post(client, fake.url)
        finally:
            await client.aclose()
    assert response.status_code == 200 and len(proxy.request_lines) == 1


# -- HTTPS: a certificate, and a company's proxy in the way ---------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> SelfSigned:
    return self_signed(tmp_path / "tls")


@pytest.fixture
def https_fake(certificate: SelfSigned) -> Iterator[FakeAnthropic]:
    with FakeAnthropic(tls=certificate.server_context()) as server:
        yield server


async def test_https_through_the_environments_proxy_is_a_tunnel(
    https_fake: FakeAnthropic, certificate: SelfSigned
) -> None:
    """HTTPS_PROXY, as behind a company's proxy: CONNECT, then TLS to the upstream inside the tunnel."""
    with HttpProxy() as proxy:
        client = UpstreamClient(
            lambda: Timeouts(connect=5.0, read=10.0),
            environ={"HTTPS_PROXY": proxy.url},
            tls=certificate.client_context(),
        )
        try:
            first = await _post(client, https_fake.url)
            second = await _post(client, https_fake.url)  # the tunnel is kept alive, like any connection
        finally:
            await client.aclose()
    assert first.status_code == second.status_code == 200
    assert proxy.request_lines == [f"CONNECT 127.0.0.1:{https_fake.port} HTTP/1.1"]
    assert https_fake.requests[-1].headers["x-api-key"] == "sk-ant-test"


async def test_a_proxy_that_wants_a_password_gets_the_one_in_the_variable_and_errors_never_show_it(
    https_fake: FakeAnthropic, certificate: SelfSigned
) -> None:
    """A company's proxy asks for a user name and password, given in the variable's URL (any character,
    percent-encoded). A refusal is said plainly; before, it was aiohttp's "407, message=…, url='http://bob:<the
    password>@…'", which went on to the log and to the agent."""
    password = "p@ss:w/rd-Hunter2"
    outcomes: list[str | int] = []
    with HttpProxy(credentials=("bob", password)) as proxy:
        for variable in (proxy.url_with("bob", password), proxy.url_with("bob", "wrong-Hunter3"), proxy.url):
            client = UpstreamClient(
                lambda: Timeouts(connect=5.0, read=10.0),
                environ={"HTTPS_PROXY": variable},
                tls=certificate.client_context(),
            )
            try:
                outcomes.append((await _post(client, https_fake.url)).status_code)
            except httpx.ProxyError as exc:
                outcomes.append(str(exc))
            finally:
                await client.aclose()
    accepted, wrong, missing = outcomes
    assert accepted == 200 and len(https_fake.requests) == 1
    assert proxy.authorizations[0] is not None and proxy.authorizations[-1] is None
    assert wrong == (
        f"the proxy at 127.0.0.1:{proxy.port} refused the connection: 407 Proxy Authentication Required "
        "(it did not accept the user name and password in the proxy variable's URL)"
    )
    assert isinstance(missing, str) and "it wants a user name and password" in missing
    assert "Hunter" not in wrong + missing


async def test_a_certificate_nobody_vouches_for_is_a_connect_error_that_says_so(
    https_fake: FakeAnthropic,
) -> None:
    """What a hotel's Wi-Fi sign-in page or a company's TLS-inspecting proxy looks like from here; the message says
    so and what to do (before: aiohttp's "Cannot connect to host … ssl:True [SSLCertVerificationError: …]")."""
    client = _client()  # the system's (certifi's) roots: the self-signed certificate is not among them
    try:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED") as raised:
            await _post(client, https_fake.url)
    finally:
        await client.aclose()
    assert https_fake.requests == []
    assert str(raised.value) == (
        f"the certificate of 127.0.0.1:{https_fake.port} is not trusted (CERTIFICATE_VERIFY_FAILED: self-signed "
        "certificate); something on this network intercepts HTTPS: a Wi-Fi sign-in page (sign in with a browser "
        "first), or a company proxy (point SSL_CERT_FILE at its root certificate)"
    )


async def test_a_name_that_does_not_resolve_says_so() -> None:
    """Offline, or DNS down (``.invalid`` never resolves: RFC 6761). Before: "Cannot connect to host … ssl:default
    [Name or service not known]"."""
    client = _client()
    try:
        with pytest.raises(httpx.ConnectError) as raised:
            await _post(client, "https://no-such-host.invalid")
    finally:
        await client.aclose()
    assert str(raised.value).startswith("cannot find no-such-host.invalid (")
    assert str(raised.value).endswith("is this machine online? (its DNS may be down)")


async def test_no_proxy_goes_direct(fake: FakeAnthropic) -> None:
    with HttpProxy() as proxy:
        client = _client({"http_proxy": proxy.url, "no_proxy": "127.0.0.1"})
        try:
            response = await _post(client, fake.url)
        finally:
            await client.aclose()
    assert response.status_code == 200 and proxy.request_lines == []


async def test_an_unsupported_proxy_kind_is_a_clear_error(fake: FakeAnthropic) -> None:
    client = _client({"ALL_PROXY": "socks5://127.0.0.1:1080"})
    try:
        with pytest.raises(httpx.ProxyError, match=r"socks5:// .* not supported"):
            await _post(client, fake.url)
    finally:
        await client.aclose()
    assert fake.requests == []


async def test_a_closed_port_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        client = _client()
        try:
            with pytest.raises(httpx.ConnectError):
                await _post(client, f"http://127.0.0.1:{port}")
        finally:
            await client.aclose()


async def test_silence_beyond_the_read_timeout_is_a_read_timeout(fake: FakeAnthropic) -> None:
    fake.enqueue(Behavior(hang=True))
    client = _client(read=0.3)
    try:
        with pytest.raises(httpx.ReadTimeout):
            await _post(client, fake.url)
    finally:
        await client.aclose()


async def test_a_stream_cut_mid_body_is_a_protocol_error(fake: FakeAnthropic) -> None:
    fake.enqueue(Behavior(chunks=10, drop_after_events=3))
    client = _client()
    streamed = json.dumps({**json.loads(BODY), "stream": True})
    try:
        response = await client.send("POST", f"{fake.url}/v1/messages", HEADERS, streamed.encode())
        with pytest.raises(httpx.RemoteProtocolError):
            async for _ in response.aiter_bytes():
                pass
        await response.aclose()
    finally:
        await client.aclose()


async def _settle(fake: FakeAnthropic) -> None:
    """Give the loop time to take in what the fake sent and its close (the fake has answered when this returns)."""
    await asyncio.sleep(0.3)


async def test_bytes_that_arrived_with_a_broken_connection_come_before_the_error(fake: FakeAnthropic) -> None:
    # The events and the connection's end arrive together: aiohttp alone would raise first and drop them.
    fake.enqueue(Behavior(chunks=6, drop_after_events=5, one_write=True))
    client = _client()
    streamed = json.dumps({**json.loads(BODY), "stream": True})
    received = b""
    try:
        response = await client.send("POST", f"{fake.url}/v1/messages", HEADERS, streamed.encode())
        await _settle(fake)  # both the bytes and the end are in before the first read
        with pytest.raises(httpx.RemoteProtocolError):
            async for chunk in response.aiter_bytes():
                received += chunk
        await response.aclose()
    finally:
        await client.aclose()
    assert received.count(b"event: ") == 5


# -- a kept-alive connection the upstream forgot (the laptop slept, the network changed) ----------------------------


async def test_a_kept_alive_connection_the_upstream_forgot_is_sent_again_on_a_new_one(
    fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: "Connection reset by peer" — the agent's first request after the laptop woke up failed (one account)
    or went to the next account, although the upstream was fine."""
    with ForgetfulRelay("127.0.0.1", fake.port) as relay:
        client = _client()
        try:
            assert (await _post(client, relay.url)).status_code == 200
            relay.forget()
            with caplog.at_level(logging.INFO, logger="headway.upstream"):
                again = await _post(client, relay.url)
        finally:
            await client.aclose()
    assert again.status_code == 200 and again.json()["content"][0]["text"] == "Hello from the fake"
    assert relay.resets == 1 and relay.connections == 2
    assert len(fake.requests) == 2  # the reset request never reached the upstream; it was sent once more
    assert "closed a kept-alive connection before answering" in caplog.text


async def test_every_forgotten_connection_in_the_pool_costs_one_resend_not_a_failure(
    fake: FakeAnthropic,
) -> None:
    with ForgetfulRelay("127.0.0.1", fake.port) as relay:
        client = _client()
        try:
            # three at once: three connections, all kept alive in the pool afterwards
            await asyncio.gather(*(_post(client, relay.url) for _ in range(3)))
            assert relay.connections == 3
            relay.forget()
            answers = [await _post(client, relay.url) for _ in range(4)]
        finally:
            await client.aclose()
    assert [a.status_code for a in answers] == [200] * 4
    assert relay.resets == 3


class _Clocks:
    """A wall clock and a monotonic one that a test moves apart, as a machine's sleep does."""

    def __init__(self) -> None:
        self.slept = 0.0

    def wall(self) -> float:
        return time.time() + self.slept

    def sleep_watch(self) -> SleepWatch:
        return SleepWatch(wall=self.wall, monotonic=time.monotonic)


async def test_after_the_machine_slept_kept_connections_that_a_firewall_forgot_are_not_waited_on(
    fake: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    """The silent kind of forgetting (a router dropping packets it has no state for): no reset ever comes. Before,
    each request after the wake-up waited out the read timeout on a kept connection, one dead connection after the
    other; now the pool from before the sleep is not used again."""
    clocks = _Clocks()
    with ForgetfulRelay("127.0.0.1", fake.port) as relay:
        client = UpstreamClient(
            lambda: Timeouts(connect=5.0, read=3.0), environ={}, sleep_watch=clocks.sleep_watch()
        )
        try:
            await asyncio.gather(*(_post(client, relay.url) for _ in range(2)))
            assert relay.connections == 2
            relay.forget(silently=True)
            clocks.slept = 8 * 3600.0  # a night
            with caplog.at_level(logging.INFO, logger="headway.upstream"):
                answers = [await _post(client, relay.url) for _ in range(3)]
        finally:
            await client.aclose()
    assert [a.status_code for a in answers] == [200] * 3
    assert relay.swallowed == 0, "a request went out on a connection from before the sleep"
    assert relay.connections == 3  # one new connection, kept alive for the next two
    assert "the machine slept (about 8h)" in caplog.text


async def test_an_answer_streaming_across_the_sleep_is_read_to_its_end_and_then_its_pool_closes(
    fake: FakeAnthropic,
) -> None:
    """The old pool is retired, not closed under an answer still open on it (a short sleep need not kill it)."""
    clocks = _Clocks()
    fake.enqueue(Behavior(delay=0.05))
    client = UpstreamClient(
        lambda: Timeouts(connect=5.0, read=5.0), environ={}, sleep_watch=clocks.sleep_watch()
    )
    streaming = json.dumps({**json.loads(BODY), "stream": True}).encode()
    try:
        long = await client.send("POST", f"{fake.url}/v1/messages", HEADERS, streaming)
        old = client._pool
        assert old is not None
        clocks.slept = 45.0
        assert (await _post(client, fake.url)).status_code == 200
        assert client._pool is not old and not old.session.closed
        events = (await long.aread()).decode()
        await long.aclose()
        assert "message_stop" in events
        for _ in range(50):
            if old.session.closed:
                break
            await asyncio.sleep(0.01)
        assert old.session.closed, "the retired pool stayed open after its last answer"
    finally:
        await client.aclose()


def test_the_sleep_watch_counts_only_the_time_the_monotonic_clock_missed() -> None:
    wall, mono = [1000.0], [5.0]
    watch = SleepWatch(threshold=30.0, wall=lambda: wall[0], monotonic=lambda: mono[0])
    wall[0] += 3600.0
    mono[0] += 3600.0  # an hour awake and idle: no sleep
    assert watch.slept() == 0.0
    wall[0] += 29.0  # too short to matter
    assert watch.slept() == 0.0
    wall[0] += 7200.0
    mono[0] += 1.0
    assert watch.slept() == 7199.0
    assert watch.slept() == 0.0  # told once
    wall[0] -= 600.0  # a wall clock set back is no sleep, and the next sleep is measured from there
    assert watch.slept() == 0.0
    wall[0] += 40.0
    assert watch.slept() == 40.0


def _resetting_server() -> tuple[socket.socket, list[int], threading.Thread]:
    """A server that reads each request and resets the connection without answering; counts the connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[int] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                accepted.append(1)
                conn.recv(65536)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, accepted, thread


async def test_an_upstream_that_resets_every_request_is_sent_it_only_once_more() -> None:
    server, accepted, thread = _resetting_server()
    client = _client()
    try:
        with pytest.raises(httpx.TransportError, match=r"reset|disconnected"):
            await _post(client, f"http://127.0.0.1:{server.getsockname()[1]}")
    finally:
        await client.aclose()
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)
    assert len(accepted) == 2


async def test_a_connection_the_upstream_closed_without_answering_is_not_sent_again(
    fake: FakeAnthropic,
) -> None:
    """A close, not a reset: the upstream may have read the request (and be billing it); the gateway tries the next
    account instead, as before."""
    fake.enqueue(Behavior(drop_after_events=1))  # a non-streamed request: closed without any answer
    client = _client()
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await _post(client, fake.url)
    finally:
        await client.aclose()
    assert len(fake.requests) == 1


async def test_a_timeout_is_not_sent_again(fake: FakeAnthropic) -> None:
    fake.enqueue(Behavior(first_byte_delay=2.0))
    client = _client(read=0.3)
    try:
        with pytest.raises(httpx.ReadTimeout):
            await _post(client, fake.url)
    finally:
        await client.aclose()
    assert len(fake.requests) == 1
