"""The gateway's port: a busy port fails start() at once; a live change binds the new port before giving up the old
one, and when it cannot, keeps serving and says so in the status (issue 10, defect 4)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from proxy.config.accounts import add_api_key_account
from proxy.config.paths import Paths
from proxy.engine import EngineOptions, PortInUse
from tests.fakes import Behavior, FakeAnthropic
from tests.support.gateway import wait_until
from tray.app import Services, build_services

pytestmark = pytest.mark.timeout(60)

MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def busy() -> Iterator[socket.socket]:
    """A port another program listens on."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield sock
    finally:
        sock.close()


def build(anthropic: FakeAnthropic, port: int) -> Services:
    """Services whose port comes from the settings (not fixed by options), so a settings change moves it."""
    environ = {**os.environ, "HEADWAY_ANTHROPIC_BASE_URL": anthropic.url}
    services = build_services(Paths.from_env(), EngineOptions(environ=environ))
    services.store.update(lambda s: setattr(s.gateway, "port", port))
    return services


def set_port(services: Services, port: int) -> None:
    services.store.update(lambda s: setattr(s.gateway, "port", port))


def health(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def refused(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False
    return False


def test_start_on_a_busy_port_fails_at_once_with_a_clear_error(
    anthropic: FakeAnthropic, busy: socket.socket
) -> None:
    port = busy.getsockname()[1]
    services = build(anthropic, port)
    started = time.monotonic()
    with pytest.raises(PortInUse) as caught:
        services.engine.start()
    assert time.monotonic() - started < 5.0
    assert isinstance(caught.value, OSError)
    assert (caught.value.host, caught.value.port) == ("127.0.0.1", port)
    assert str(caught.value) == f"port {port} on 127.0.0.1 is in use"
    assert services.engine._thread is None  # nothing was started
    services.stop(timeout=3.0)


def test_a_live_move_to_a_busy_port_keeps_serving_and_says_why(
    anthropic: FakeAnthropic, busy: socket.socket
) -> None:
    first, taken = free_port(), busy.getsockname()[1]
    services = build(anthropic, first)
    services.start()
    engine = services.engine
    try:
        assert engine.port == first and engine.status()["listen_error"] is None

        set_port(services, taken)
        assert wait_until(lambda: engine.status()["listen_error"] is not None, timeout=10)
        expected = f"port {taken} on 127.0.0.1 is in use; still serving on 127.0.0.1:{first}"
        assert engine.status()["listen_error"] == expected
        assert health(first)  # the old listener was never closed
        assert engine.port == first and engine.status()["url"] == f"http://127.0.0.1:{first}"
        runtime = json.loads(services.paths.runtime_file.read_text())
        assert runtime["port"] == first  # the CLI still finds the running gateway
        status = httpx.get(
            f"http://127.0.0.1:{first}/status", headers={"x-api-key": engine.access_key or ""}, timeout=5
        )
        assert status.json()["listen_error"] == expected  # `headway status --json` reads this

        set_port(services, first)  # back to where it listens: the problem is gone
        assert wait_until(lambda: engine.status()["listen_error"] is None, timeout=10)
        assert health(first) and engine.port == first
    finally:
        services.stop(timeout=3.0)


def test_a_live_move_to_a_free_port_moves_and_closes_the_old_one(
    anthropic: FakeAnthropic, busy: socket.socket
) -> None:
    first, second = free_port(), free_port()
    services = build(anthropic, first)
    services.start()
    engine = services.engine
    try:
        set_port(
            services, busy.getsockname()[1]
        )  # a failed move first: the error must not outlive a good one
        assert wait_until(lambda: engine.status()["listen_error"] is not None, timeout=10)

        set_port(services, second)
        assert wait_until(lambda: engine.port == second, timeout=10)
        assert health(second)
        assert wait_until(lambda: refused(first), timeout=10)
        assert engine.status()["listen_error"] is None
        assert engine.status()["url"] == f"http://127.0.0.1:{second}"
        assert json.loads(services.paths.runtime_file.read_text())["port"] == second
    finally:
        services.stop(timeout=3.0)


def test_a_stream_in_flight_finishes_while_the_gateway_moves(anthropic: FakeAnthropic) -> None:
    first, second = free_port(), free_port()
    services = build(anthropic, first)
    add_api_key_account(services.store, services.keychain, "anthropic-api-key", "main", "sk-ant-1")
    services.start()
    engine = services.engine
    assert engine.access_key
    headers = {"x-api-key": engine.access_key, "anthropic-version": "2023-06-01"}
    anthropic.enqueue(Behavior(chunks=6, delay=0.3))
    streaming = threading.Event()
    result: dict[str, object] = {}

    def stream() -> None:
        with httpx.stream(
            "POST",
            f"http://127.0.0.1:{first}/v1/messages",
            json={**MESSAGE, "stream": True},
            headers=headers,
            timeout=20,
        ) as response:
            chunks = []
            for chunk in response.iter_text():
                streaming.set()
                chunks.append(chunk)
            result["status"] = response.status_code
            result["text"] = "".join(chunks)

    client = threading.Thread(target=stream)
    try:
        assert wait_until(lambda: engine.settings.accounts != [], timeout=10)
        client.start()
        assert streaming.wait(10)
        set_port(services, second)
        assert wait_until(lambda: engine.port == second and health(second), timeout=10)
        client.join(20)
        assert result.get("status") == 200
        assert "message_stop" in str(result.get("text"))  # the old listener let its open stream finish
        assert wait_until(lambda: refused(first), timeout=10)
    finally:
        client.join(20)
        services.stop(timeout=3.0)
