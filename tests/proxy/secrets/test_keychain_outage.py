"""The keychain going away under a running Headway, against a real gnome-keyring-daemon on a D-Bus session bus of the
test's own (tests/support/private_keyring.py): every get, set and delete fails as a KeychainError that says what
happened, and a keyring daemon that comes back serves what was stored.

Before, keyring's priority probe raised RuntimeError on every call once the daemon or the bus was gone, and
secretstorage's own exceptions came out raw when the daemon went away mid-call; the callers, which keep their last
good value on a KeychainError, crashed instead."""

from __future__ import annotations

import pytest

from proxy.secrets.keychain import Keychain, KeychainError
from tests.support.private_keyring import PrivateSecretService

pytestmark = pytest.mark.keychain


def _each_call(kc: Keychain) -> dict[str, str]:
    """What each call raised: its KeychainError's message; anything else fails the test with its type."""
    said = {}
    for name, call in (
        ("get", lambda: kc.get("account:work")),
        ("set", lambda: kc.set("account:other", "sk-other")),
        ("delete", lambda: kc.delete("account:work")),
    ):
        with pytest.raises(KeychainError) as caught:
            call()
        said[name] = str(caught.value)
    return said


def test_every_call_fails_as_a_keychain_error_when_the_daemon_goes_away(
    private_secret_service: PrivateSecretService,
) -> None:
    kc = Keychain("headway-outage-test")
    kc.set("account:work", "sk-ant-work-secret")
    assert kc.get("account:work") == "sk-ant-work-secret"

    private_secret_service.kill_daemon()
    said = _each_call(kc)
    assert said["get"].startswith("cannot read 'account:work' from the keychain: ")
    assert said["set"].startswith("cannot store 'account:other' in the keychain: ")
    assert said["delete"].startswith("cannot delete 'account:work' from the keychain: ")
    assert all("org.freedesktop.secrets" in message for message in said.values()), said  # who did not answer

    private_secret_service.start_daemon()  # it comes back on the same keyring files: nothing was lost
    assert kc.get("account:work") == "sk-ant-work-secret"
    assert kc.get("account:other") is None  # the failed set stored nothing


def test_every_call_fails_as_a_keychain_error_when_the_session_bus_goes_away(
    private_secret_service: PrivateSecretService,
) -> None:
    kc = Keychain("headway-outage-test")
    kc.set("account:work", "sk-ant-work-secret")
    private_secret_service.stop_bus()
    said = _each_call(kc)
    assert said["get"] == "cannot read 'account:work' from the keychain: [Errno 111] Connection refused"
    assert said["set"].startswith("cannot store 'account:other' in the keychain: ")
    assert said["delete"].startswith("cannot delete 'account:work' from the keychain: ")
