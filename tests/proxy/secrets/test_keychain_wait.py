"""wait_for_access_key: which keychain failures are waited out, for how long, and how a wait ends.

The backends are keyring backends of the test's own that fail the way the real ones do (a Secret Service that is
not on the bus yet raises from secretstorage; a locked one raises keyring's KeyringLocked). The real process, with
a real gnome-keyring that comes up late, is tests/tray/test_keychain_wait.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.backends.fail
import keyring.core
import keyring.errors
import pytest

from proxy.secrets.keychain import ACCESS_KEY, Keychain, KeychainError, wait_for_access_key
from tests.conftest import MemoryKeyring

SERVICE = "headway-test"


class LateKeyring(MemoryKeyring):
    """Fails its first ``failures`` calls with ``error``, then works."""

    def __init__(self, failures: int, error: Exception) -> None:
        super().__init__()
        self.failures = failures
        self.error = error
        self.calls = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return super().get_password(service, username)


@pytest.fixture
def backend() -> Iterator[list[keyring.backend.KeyringBackend]]:
    previous = keyring.get_keyring()
    chosen: list[keyring.backend.KeyringBackend] = []
    yield chosen
    keyring.set_keyring(previous)


def _use(chosen: list[keyring.backend.KeyringBackend], kr: keyring.backend.KeyringBackend) -> None:
    chosen.append(kr)
    keyring.set_keyring(kr)


NOT_THERE = RuntimeError("org.freedesktop.DBus.Error.ServiceUnknown: The name is not activatable")


def test_a_keychain_that_answers_late_is_waited_for(backend: list[keyring.backend.KeyringBackend]) -> None:
    late = LateKeyring(3, NOT_THERE)
    _use(backend, late)
    told: list[tuple[str, float]] = []
    key = wait_for_access_key(
        Keychain(SERVICE), 30, lambda e, waited: told.append((str(e), waited)), interval=0.05
    )
    assert key and key.startswith("hw-")
    assert late.entries == {(SERVICE, ACCESS_KEY): key}  # created once the keychain answered
    assert len(told) == 3 and all("not activatable" in why for why, _ in told)
    assert [w for _, w in told] == sorted(w for _, w in told)  # how long it has waited, growing


def test_the_wait_ends_with_the_last_error(backend: list[keyring.backend.KeyringBackend]) -> None:
    _use(backend, LateKeyring(10_000, NOT_THERE))
    began = time.monotonic()
    with pytest.raises(KeychainError, match=r"cannot read 'local-access-key'.*not activatable"):
        wait_for_access_key(Keychain(SERVICE), 0.5, interval=0.05)
    assert 0.35 <= time.monotonic() - began < 5


def test_no_wait_means_the_first_error(backend: list[keyring.backend.KeyringBackend]) -> None:
    late = LateKeyring(1, NOT_THERE)
    _use(backend, late)
    told: list[float] = []
    with pytest.raises(KeychainError):
        wait_for_access_key(Keychain(SERVICE), 0, lambda e, waited: told.append(waited))
    assert late.calls == 1 and told == []


def test_a_locked_keychain_is_not_asked_again(backend: list[keyring.backend.KeyringBackend]) -> None:
    """Asking again would show the unlock prompt again every second; a dismissed prompt is the user's answer."""
    late = LateKeyring(1, keyring.errors.KeyringLocked("Failed to unlock the collection!"))
    _use(backend, late)
    with pytest.raises(KeychainError, match="unlock"):
        wait_for_access_key(Keychain(SERVICE), 30, interval=0.05)
    assert late.calls == 1


def test_a_broken_secrets_file_is_not_waited_for(tmp_path: Path) -> None:
    secrets_file = tmp_path / "secrets.json"
    secrets_file.write_text("{not json")
    keychain = Keychain(SERVICE, backend="file", file_path=secrets_file)
    began = time.monotonic()
    with pytest.raises(KeychainError, match="cannot read the secrets file"):
        wait_for_access_key(keychain, 30, interval=0.05)
    assert time.monotonic() - began < 1


def test_a_cancel_ends_the_wait_at_once(backend: list[keyring.backend.KeyringBackend]) -> None:
    _use(backend, LateKeyring(10_000, NOT_THERE))
    cancelled = threading.Event()
    threading.Timer(0.2, cancelled.set).start()
    began = time.monotonic()
    assert wait_for_access_key(Keychain(SERVICE), 600, cancelled=cancelled, interval=5) is None
    assert time.monotonic() - began < 2  # inside the pause, not after it


def test_a_keychain_found_insecure_is_looked_for_again(
    backend: list[keyring.backend.KeyringBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """keyring keeps its first choice for the process: at login that is "nothing secure" (the Secret Service is not
    on the bus yet). Each retry forgets it, so the next call chooses from what is there then."""
    there: list[keyring.backend.KeyringBackend] = [keyring.backends.fail.Keyring()]
    # what a fresh choice finds (PYTHON_KEYRING_BACKEND's reader is the first thing system_keyring() asks)
    monkeypatch.setattr(keyring.core, "load_env", lambda: there[-1])
    _use(backend, there[-1])
    found = MemoryKeyring()
    told: list[float] = []

    def on_wait(error: KeychainError, waited: float) -> None:
        assert "No secure keychain" in str(error)
        told.append(waited)
        if len(told) == 2:
            there.append(found)  # the Secret Service registers on the bus

    key = wait_for_access_key(Keychain(SERVICE), 30, on_wait, interval=0.05)
    assert len(told) == 2
    assert found.entries == {(SERVICE, ACCESS_KEY): key}


def test_a_secure_choice_is_kept(backend: list[keyring.backend.KeyringBackend]) -> None:
    kr = MemoryKeyring()
    _use(backend, kr)
    assert Keychain(SERVICE).look_again() is False
    assert keyring.get_keyring() is kr
    _use(backend, keyring.backends.fail.Keyring())
    assert Keychain(SERVICE).look_again() is True
    assert keyring.core._keyring_backend is None  # the next call chooses again
