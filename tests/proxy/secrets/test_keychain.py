"""Keychain: secrets only in a secure keyring backend; insecure backends refused with a message that says what to
do; the opt-in plain file is owner-only and warns. The ``keychain``-marked class uses the real Secret Service."""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import keyring.backends.chainer
import keyring.backends.fail
import keyring.backends.null
import pytest
from keyrings.alt.file import PlaintextKeyring

from proxy.config.paths import Paths
from proxy.secrets.keychain import ACCESS_KEY, Keychain, KeychainError, account_secret_name
from tests.conftest import MemoryKeyring
from tests.support.secret_service import require_secret_service, secret_tool_lookup

SERVICE = "headway-test"


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def use_backend() -> Iterator[object]:
    previous = keyring.get_keyring()

    def select(backend: keyring.backend.KeyringBackend) -> None:
        keyring.set_keyring(backend)

    yield select
    keyring.set_keyring(previous)


# --------------------------------------------------------------------------- a secure backend (in memory)


def test_round_trip_through_a_secure_backend(memory_keyring: MemoryKeyring) -> None:
    kc = Keychain(SERVICE)
    assert kc.secure
    assert kc.get("account:work") is None
    kc.set("account:work", "sk-ant-1")
    assert kc.get("account:work") == "sk-ant-1"
    assert memory_keyring.entries == {(SERVICE, "account:work"): "sk-ant-1"}
    kc.set("account:work", "sk-ant-2")
    assert kc.get("account:work") == "sk-ant-2"
    kc.delete("account:work")
    assert kc.get("account:work") is None
    kc.delete("account:work")  # deleting what is not there is fine
    assert memory_keyring.entries == {}


def test_entries_are_kept_apart_by_service(memory_keyring: MemoryKeyring) -> None:
    Keychain("headway-a").set(ACCESS_KEY, "one")
    Keychain("headway-b").set(ACCESS_KEY, "two")
    assert Keychain("headway-a").get(ACCESS_KEY) == "one"
    assert Keychain("headway-b").get(ACCESS_KEY) == "two"


def test_the_test_profile_never_uses_the_real_service_name(memory_keyring: MemoryKeyring) -> None:
    paths = Paths.from_env()  # HEADWAY_HOME set by conftest
    Keychain(paths.keychain_service).set(account_secret_name("work"), "sk")
    assert [service for service, _ in memory_keyring.entries] == [paths.keychain_service]
    assert paths.keychain_service != "headway"


def test_account_secret_names() -> None:
    assert account_secret_name("work") == "account:work"


def test_describe_names_the_backend(memory_keyring: MemoryKeyring) -> None:
    assert Keychain(SERVICE).describe().endswith(".MemoryKeyring")


@pytest.mark.parametrize(
    ("backend", "name"),
    [
        ("keyring.backends.SecretService", "GNOME Keyring"),
        ("keyring.backends.libsecret", "GNOME Keyring"),
        ("keyring.backends.macOS", "macOS Keychain"),
        ("keyring.backends.Windows", "Windows Credential Manager"),
        ("keyring.backends.kwallet", "KDE Wallet"),
    ],
)
def test_describe_uses_the_names_people_know(use_backend, backend: str, name: str) -> None:  # type: ignore[no-untyped-def]
    cls = {"keyring.backends.Windows": "WinVaultKeyring", "keyring.backends.kwallet": "DBusKeyring"}.get(
        backend, "Keyring"
    )
    # A stand-in with the real backend's module and class name: the real ones only load on their own OS.
    stand_in = type(cls, (MemoryKeyring,), {"__module__": backend})
    use_backend(stand_in())
    assert Keychain(SERVICE).describe() == name


def test_a_chain_uses_its_secure_members_only(use_backend) -> None:  # type: ignore[no-untyped-def]
    secure = MemoryKeyring()

    class Chain(keyring.backends.chainer.ChainerBackend):
        @property
        def backends(self) -> list[keyring.backend.KeyringBackend]:  # type: ignore[override]
            return [secure, keyring.backends.null.Keyring()]

    use_backend(Chain())
    kc = Keychain(SERVICE)
    assert kc.secure
    kc.set("x", "y")
    assert secure.entries == {(SERVICE, "x"): "y"}
    assert "null" not in kc.describe()


def test_backend_errors_become_keychain_errors(use_backend) -> None:  # type: ignore[no-untyped-def]
    class Locked(MemoryKeyring):
        def get_password(self, service: str, username: str) -> str | None:
            raise keyring.errors.KeyringLocked("Failed to unlock the collection!")

        def set_password(self, service: str, username: str, password: str) -> None:
            raise keyring.errors.PasswordSetError("locked")

    use_backend(Locked())
    kc = Keychain(SERVICE)
    with pytest.raises(KeychainError, match="cannot read 'a' from the keychain: Failed to unlock"):
        kc.get("a")
    with pytest.raises(KeychainError, match="cannot store 'a' in the keychain"):
        kc.set("a", "b")


# --------------------------------------------------------------------------- no secure backend


def _assert_refusal_explains_the_fix(message: str) -> None:
    assert "No secure keychain" in message
    assert "Secret Service" in message  # how to get a real one
    assert '"secrets": {"backend": "file"}' in message  # how to opt out, knowingly
    assert "not encrypted" in message


def test_fail_backend_is_refused_with_the_fix(use_backend) -> None:  # type: ignore[no-untyped-def]
    use_backend(keyring.backends.fail.Keyring())
    kc = Keychain(SERVICE)
    assert not kc.secure
    assert kc.describe().startswith("no secure keychain (keyring.backends.fail.Keyring)")
    for call in (
        lambda: kc.set("account:a", "sk"),
        lambda: kc.get("account:a"),
        lambda: kc.delete("account:a"),
    ):
        with pytest.raises(KeychainError) as info:
            call()
        _assert_refusal_explains_the_fix(str(info.value))
        assert "keyring.backends.fail.Keyring" in str(info.value)


def test_null_backend_is_refused(use_backend) -> None:  # type: ignore[no-untyped-def]
    use_backend(keyring.backends.null.Keyring())
    with pytest.raises(KeychainError, match="No secure keychain"):
        Keychain(SERVICE).set("a", "b")


def test_keyrings_alt_plaintext_is_refused_as_insecure(
    use_backend,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    plain = PlaintextKeyring()
    plain.file_path = str(tmp_path / "keyring_pass.cfg")  # type: ignore[misc]
    use_backend(plain)
    kc = Keychain(SERVICE)
    assert not kc.secure
    with pytest.raises(KeychainError) as info:
        kc.set("account:a", "sk-ant-secret")
    _assert_refusal_explains_the_fix(str(info.value))
    assert "keyrings.alt.file.PlaintextKeyring" in str(info.value)
    assert not (tmp_path / "keyring_pass.cfg").exists(), "the secret was written in plain text"


def test_a_chain_of_only_insecure_backends_is_refused(use_backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plain = PlaintextKeyring()
    plain.file_path = str(tmp_path / "keyring_pass.cfg")  # type: ignore[misc]

    class Chain(keyring.backends.chainer.ChainerBackend):
        @property
        def backends(self) -> list[keyring.backend.KeyringBackend]:  # type: ignore[override]
            return [plain, keyring.backends.null.Keyring()]

    use_backend(Chain())
    with pytest.raises(KeychainError, match="No secure keychain"):
        Keychain(SERVICE).set("a", "b")
    assert not (tmp_path / "keyring_pass.cfg").exists()


# --------------------------------------------------------------------------- the opt-in file backend


def test_file_backend_is_owner_only_and_warns(
    tmp_path: Path,
    use_backend,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    use_backend(keyring.backends.fail.Keyring())  # works without any keychain at all
    path = tmp_path / "data" / "secrets.json"
    kc = Keychain(SERVICE, backend="file", file_path=path)
    assert not kc.secure
    assert "NOT encrypted" in kc.describe() and str(path) in kc.describe()
    with caplog.at_level(logging.WARNING, logger="headway.keychain"):
        kc.set("account:work", "sk-ant-file")
    assert any(
        r.levelno == logging.WARNING
        and "not encrypted" in r.getMessage()
        and "account:work" in r.getMessage()
        for r in caplog.records
    )
    assert "sk-ant-file" not in caplog.text
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert json.loads(path.read_text()) == {"account:work": "sk-ant-file"}
    assert kc.get("account:work") == "sk-ant-file"
    kc.set("account:other", "sk-2")
    kc.delete("account:work")
    assert kc.get("account:work") is None
    assert json.loads(path.read_text()) == {"account:other": "sk-2"}
    assert _mode(path) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["secrets.json", "secrets.json.lock"]
    assert _mode(path.with_name("secrets.json.lock")) == 0o600, "the lock file is readable by others"


def test_file_backend_tightens_a_loose_folder(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    Keychain(SERVICE, backend="file", file_path=folder / "secrets.json").set("a", "b")
    assert _mode(folder) == 0o700


def test_file_backend_is_shared_by_two_instances(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    a = Keychain(SERVICE, backend="file", file_path=path)
    b = Keychain(SERVICE, backend="file", file_path=path)
    a.set("x", "1")
    b.set("y", "2")
    assert (a.get("y"), b.get("x")) == ("2", "1")


def test_file_backend_needs_a_path() -> None:
    with pytest.raises(ValueError, match="needs a path"):
        Keychain(SERVICE, backend="file")


# --------------------------------------------------------------------------- the real Secret Service


@pytest.fixture
def secret_service() -> None:
    require_secret_service()


@pytest.mark.keychain
@pytest.mark.usefixtures("secret_service")
class TestRealSecretService:
    def test_set_get_delete_round_trip_lands_in_the_keyring(self) -> None:
        service = f"headway-test-{uuid.uuid4().hex[:12]}"
        kc = Keychain(service)
        assert kc.secure
        assert kc.describe().startswith("GNOME Keyring")
        name = account_secret_name("work")
        secret = f"sk-ant-{uuid.uuid4().hex}"
        try:
            kc.set(name, secret)
            assert kc.get(name) == secret
            # Not just somewhere keyring can read it back: in the Secret Service, for any libsecret client.
            assert secret_tool_lookup(service, name) == secret
            kc.set(name, secret + "-2")
            assert secret_tool_lookup(service, name) == secret + "-2"
        finally:
            kc.delete(name)
        assert kc.get(name) is None
        assert secret_tool_lookup(service, name) is None
        kc.delete(name)  # deleting what is not there is fine

    def test_the_test_profile_service_is_separate_from_the_real_one(self) -> None:
        paths = Paths.from_env()
        kc = Keychain(paths.keychain_service)
        try:
            kc.set(ACCESS_KEY, "hw-test")
            assert paths.keychain_service != "headway"
            assert secret_tool_lookup(paths.keychain_service, ACCESS_KEY) == "hw-test"
        finally:
            kc.delete(ACCESS_KEY)


@pytest.mark.parametrize("content", ["", "{ broken", "[1, 2]", "\xff"])
def test_file_backend_never_overwrites_a_secrets_file_it_cannot_read(tmp_path: Path, content: str) -> None:
    """A truncated or hand-broken secrets file is an error, not "no secrets": a write would replace them all."""
    path = tmp_path / "data" / "secrets.json"
    path.parent.mkdir()
    path.write_bytes(content.encode("latin-1"))
    kc = Keychain("svc", backend="file", file_path=path)
    with pytest.raises(KeychainError, match="secrets file"):
        kc.set("account:new", "sk-new")
    with pytest.raises(KeychainError, match="secrets file"):
        kc.get("account:old")
    assert path.read_bytes() == content.encode("latin-1")
