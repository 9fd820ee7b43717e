"""``headway`` launched at login before the keychain is up: it waits for the keychain, then serves.

A real `headway` process (no arguments, no display: the gateway headless, the path a launch at login takes) against a
real gnome-keyring on a D-Bus bus of the test's own (tests/support/private_keyring.py). The bus has no service
activation, so "the Secret Service is not on the bus yet" is what the process sees until the test starts the daemon.
Before the wait, Headway stopped at once with "No secure keychain", and keyring kept that first choice for the life
of the process, so even a retry in the same process could not have found the daemon.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from proxy.config.paths import Paths, write_private_file
from proxy.secrets.keychain import ACCESS_KEY, Keychain
from tests.support.gateway import wait_until
from tests.support.private_keyring import PrivateSecretService, require_private_secret_service

pytestmark = pytest.mark.keychain


@dataclass
class Launch:
    proc: subprocess.Popen[bytes]
    paths: Paths
    out: Path

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def runtime(self) -> dict[str, object] | None:
        try:
            data = json.loads(self.paths.runtime_file.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and data.get("pid") == self.proc.pid else None


@pytest.fixture
def service(tmp_path: Path) -> Iterator[PrivateSecretService]:
    """A private bus whose Secret Service is not up: the daemon is started by the test, when it chooses."""
    require_private_secret_service()
    with PrivateSecretService(tmp_path / "secret-service") as service:
        service.kill_daemon()
        yield service


@pytest.fixture
def launch(tmp_path: Path, service: PrivateSecretService) -> Iterator[Callable[[str], Launch]]:
    started: list[Launch] = []

    def start(wait: str) -> Launch:
        paths = Paths.from_env({"HEADWAY_HOME": str(tmp_path / "home")})
        paths.ensure()
        write_private_file(paths.settings_file, b'{"gateway": {"port": 0}}\n')
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env |= {
            "HEADWAY_HOME": str(paths.home),
            "HEADWAY_KEYCHAIN_WAIT": wait,
            "DBUS_SESSION_BUS_ADDRESS": service.address,
        }
        env.pop("PYTHON_KEYRING_BACKEND", None)
        out = tmp_path / "headway.out"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tray"], stdout=sink, stderr=subprocess.STDOUT, env=env
            )
        launched = Launch(proc, paths, out)
        started.append(launched)
        return launched

    yield start
    for launched in started:
        if launched.proc.poll() is None:
            launched.proc.kill()
            launched.proc.wait()


def _in_private_keychain(
    service: PrivateSecretService, paths: Paths, monkeypatch: pytest.MonkeyPatch
) -> str | None:
    import keyring
    from keyring.backends import SecretService

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", service.address)
    previous = keyring.get_keyring()
    keyring.set_keyring(SecretService.Keyring())  # type: ignore[no-untyped-call]
    try:
        return Keychain(paths.keychain_service).get(ACCESS_KEY)
    finally:
        keyring.set_keyring(previous)


def test_waits_for_a_keychain_that_comes_up_after_it_and_then_serves(
    launch: Callable[[str], Launch],
    service: PrivateSecretService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headway = launch("60")
    assert wait_until(lambda: "Waiting for the keychain" in headway.output(), timeout=30), headway.output()
    time.sleep(2.0)  # a few retries against the missing service
    assert headway.proc.poll() is None, f"headway stopped instead of waiting:\n{headway.output()}"
    assert headway.runtime() is None  # not serving without its access key

    service.start_daemon()
    assert wait_until(lambda: headway.runtime() is not None, timeout=30), headway.output()
    runtime = headway.runtime()
    assert runtime is not None
    key = _in_private_keychain(service, headway.paths, monkeypatch)
    assert key and key.startswith("hw-")  # created in the keychain that came up, not anywhere else
    assert not headway.paths.secrets_file.exists()
    answer = httpx.get(f"{runtime['url']}/v1/models", headers={"authorization": f"Bearer {key}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    refused = httpx.get(f"{runtime['url']}/v1/models", headers={"authorization": "Bearer nope"}, timeout=10)
    assert refused.status_code == 401
    output = headway.output()
    assert output.count("Waiting for the keychain") == 1, output  # told once, not once a second
    assert "Headway gateway on" in output

    headway.proc.send_signal(signal.SIGTERM)
    assert headway.proc.wait(timeout=15) == 0


def test_gives_up_after_the_wait_with_the_keychain_explained(
    launch: Callable[[str], Launch],
) -> None:
    headway = launch("3")
    began = time.monotonic()
    code = headway.proc.wait(timeout=60)
    took = time.monotonic() - began
    output = headway.output()
    assert code != 0, output
    assert "Waiting for the keychain (up to 3 s" in output
    assert "no secure keychain" in output.lower(), output  # the same explanation and fix as without the wait
    assert "Traceback" not in output, output
    assert took >= 2.0, f"gave up after {took:.1f} s, before the 3 s wait"  # it did wait
    assert headway.runtime() is None


def test_no_wait_stops_at_once(launch: Callable[[str], Launch]) -> None:
    headway = launch("0")
    code = headway.proc.wait(timeout=60)
    output = headway.output()
    assert code != 0
    assert "Waiting for the keychain" not in output
    assert "no secure keychain" in output.lower(), output


def test_a_stop_during_the_wait_ends_it_quietly(launch: Callable[[str], Launch]) -> None:
    headway = launch("600")
    assert wait_until(lambda: "Waiting for the keychain" in headway.output(), timeout=30), headway.output()
    headway.proc.send_signal(signal.SIGTERM)
    code = headway.proc.wait(timeout=10)  # not the ten minutes the wait allows
    output = headway.output()
    assert code == 0, output
    assert "Traceback" not in output and "could not start" not in output.lower(), output
    assert headway.runtime() is None
    assert not headway.paths.lock_file.exists() or _lock_free(headway.paths)


def _lock_free(paths: Paths) -> bool:
    from filelock import FileLock, Timeout

    lock = FileLock(str(paths.lock_file), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return False
    lock.release()
    return True
