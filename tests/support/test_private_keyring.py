"""The private Secret Service the rough keychain tests use (tests/support/private_keyring.py): a real gnome-keyring
on a bus of its own, which `mend` restarts on the same keyring files when it is gone or its default collection does
not answer — and leaves alone when it is sound, so that a real failure stays one."""

from __future__ import annotations

import keyring
import pytest
from keyring.backends import SecretService

from tests.support.keyring_daemon import owner_pid
from tests.support.private_keyring import PrivateSecretService

pytestmark = pytest.mark.keychain


def test_a_sound_daemon_is_left_alone(private_secret_service: PrivateSecretService) -> None:
    pid = private_secret_service.daemon_pid
    assert owner_pid(bus=private_secret_service.address) == pid
    assert private_secret_service.problem() is None
    assert private_secret_service.mend("a failing read") is False
    assert private_secret_service.daemon_pid == pid and private_secret_service.mends == []


def test_a_daemon_that_is_gone_is_restarted_on_the_same_keyring(
    private_secret_service: PrivateSecretService,
) -> None:
    kr = SecretService.Keyring()  # type: ignore[no-untyped-call]
    kr.set_password("private-test", "key", "s3cret")
    gone = private_secret_service.daemon_pid
    private_secret_service.kill_daemon()
    with pytest.raises(keyring.errors.KeyringError):
        kr.get_password("private-test", "key")  # no activation on this bus: nothing starts a locked one
    assert private_secret_service.mend("a failing read") is True
    assert "gnome-keyring-daemon is gone" in private_secret_service.mends[0]
    assert (
        private_secret_service.daemon_pid != gone
        and owner_pid(bus=private_secret_service.address) == private_secret_service.daemon_pid
    )
    assert kr.get_password("private-test", "key") == "s3cret"  # unlocked, the same files


def test_a_broken_default_alias_is_a_problem(private_secret_service: PrivateSecretService) -> None:
    SecretService.Keyring().set_password("private-test", "key", "s3cret")  # type: ignore[no-untyped-call]
    alias = private_secret_service.root / "data" / "keyrings" / "default"
    assert not alias.exists() or alias.read_text().strip() == "login"  # no file: "login"
    alias.write_text("nonexistent")  # what a daemon was seen with: an alias naming no collection
    assert private_secret_service.problem() == "no default collection"
    alias.write_text("login")
    assert private_secret_service.problem() is None
