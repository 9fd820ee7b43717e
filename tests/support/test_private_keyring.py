"""The private Secret Service the rough keychain tests use (tests/support/private_keyring.py): a real gnome-keyring
on a bus of its own, which `mend` restarts on the same keyring files when it is gone or its default collection does
not answer — and leaves alone when it is sound, so that a real failure stays one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from keyring.backends import SecretService

from tests.support.keyring_daemon import owner_pid
from tests.support.private_keyring import PrivateSecretService, require_private_secret_service

pytestmark = pytest.mark.keychain


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateSecretService]:
    require_private_secret_service()
    with PrivateSecretService(tmp_path / "secret-service") as service:
        monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", service.address)
        yield service


def test_a_sound_daemon_is_left_alone(service: PrivateSecretService) -> None:
    pid = service.daemon_pid
    assert owner_pid(bus=service.address) == pid
    assert service.problem() is None
    assert service.mend("a failing read") is False
    assert service.daemon_pid == pid and service.mends == []


def test_a_daemon_that_is_gone_is_restarted_on_the_same_keyring(service: PrivateSecretService) -> None:
    kr = SecretService.Keyring()  # type: ignore[no-untyped-call]
    kr.set_password("private-test", "key", "s3cret")
    gone = service.daemon_pid
    service.kill_daemon()
    with pytest.raises(keyring.errors.KeyringError):
        kr.get_password("private-test", "key")  # no activation on this bus: nothing starts a locked one
    assert service.mend("a failing read") is True
    assert "gnome-keyring-daemon is gone" in service.mends[0]
    assert service.daemon_pid != gone and owner_pid(bus=service.address) == service.daemon_pid
    assert kr.get_password("private-test", "key") == "s3cret"  # unlocked, the same files


def test_a_broken_default_alias_is_a_problem(service: PrivateSecretService) -> None:
    SecretService.Keyring().set_password("private-test", "key", "s3cret")  # type: ignore[no-untyped-call]
    alias = service.root / "data" / "keyrings" / "default"
    assert not alias.exists() or alias.read_text().strip() == "login"  # no file: "login"
    alias.write_text("nonexistent")  # what a daemon was seen with: an alias naming no collection
    assert service.problem() == "no default collection"
    alias.write_text("login")
    assert service.problem() is None
