"""Secrets in the OS keychain, and nowhere else.

API keys, OAuth token sets, the local access key and the relay secret are stored with ``keyring`` under one service
name (``headway``, or a per-``HEADWAY_HOME`` name in the test profile), one entry per secret.

When no secure backend exists (no Secret Service on a headless Linux box, or only keyrings.alt's plain-text files),
Headway says so and refuses to store secrets — unless the user has set ``secrets.backend = "file"`` in the settings,
which keeps them in an owner-only JSON file and warns that it is not encrypted. Which backend keyring would use is
found by :func:`~proxy.secrets.system_keyring.system_keyring` without loading every backend keyring knows.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from proxy.config.paths import ensure_private_dir, private_file_lock, write_private_file
from proxy.secrets.system_keyring import forget_choice, system_keyring

if (
    TYPE_CHECKING
):  # keyring (and the Secret Service client it loads) is imported when the system keychain is used
    import keyring.backend

__all__ = [
    "ACCESS_KEY",
    "Keychain",
    "KeychainError",
    "account_secret_name",
    "ensure_access_key",
    "looks_locked",
    "wait_for_access_key",
]

log = logging.getLogger("headway.keychain")

ACCESS_KEY = "local-access-key"

_INSECURE_MODULES = ("keyring.backends.fail", "keyring.backends.null", "keyrings.alt")


def account_secret_name(account_id: str) -> str:
    return f"account:{account_id}"


class KeychainError(Exception):
    """The keychain cannot be used; the message says why and what to do."""


# What people call the keychains keyring talks to (the page, `headway keys` and the doctor show these words).
_KNOWN_NAMES = {
    "keyring.backends.SecretService.Keyring": "GNOME Keyring",
    "keyring.backends.libsecret.Keyring": "GNOME Keyring",
    "keyring.backends.kwallet.DBusKeyring": "KDE Wallet",
    "keyring.backends.kwallet.DBusKeyringKWallet4": "KDE Wallet",
    "keyring.backends.macOS.Keyring": "macOS Keychain",
    "keyring.backends.Windows.WinVaultKeyring": "Windows Credential Manager",
}


def _backend_name(kr: keyring.backend.KeyringBackend) -> str:
    return f"{type(kr).__module__}.{type(kr).__qualname__}"


def _known_name(kr: keyring.backend.KeyringBackend) -> str:
    """The keychain's everyday name; the backend's dotted name when it has none (a plugin, a test double)."""
    dotted = _backend_name(kr)
    return _KNOWN_NAMES.get(dotted, dotted)


def _secure_backends(kr: keyring.backend.KeyringBackend) -> list[keyring.backend.KeyringBackend]:
    members = list(getattr(kr, "backends", None) or [kr])
    return [b for b in members if not _backend_name(b).startswith(_INSECURE_MODULES)]


def _rank(kr: keyring.backend.KeyringBackend) -> float:
    """A backend's priority, asked only to choose among several. Asking may probe the service (the Secret Service
    backend opens a D-Bus connection to do so) and raises when it is gone: such a backend ranks last."""
    try:
        return float(getattr(kr, "priority", 0) or 0)
    except Exception:
        return float("-inf")


def looks_locked(error: BaseException | str) -> bool:
    """A Secret Service that needs an unlock (or a first keyring) and could not show its password prompt, or whose
    prompt the user dismissed."""
    text = str(error).lower()
    return "prompt dismissed" in text or "locked" in text or "unlock" in text


def _why(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _FileBackend:
    """Owner-only JSON file. Not encrypted: only for machines with no keychain, by explicit choice."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = private_file_lock(path.with_name(path.name + ".lock"), timeout=10)

    def _load(self) -> dict[str, str]:
        """The secrets; a file that exists but cannot be read as them is an error, never "no secrets" (a write
        would then replace every secret in it)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise KeychainError(
                f"cannot read the secrets file {self.path}: {exc}; fix or restore it"
            ) from exc
        if not isinstance(data, dict):
            raise KeychainError(f"the secrets file {self.path} is not a JSON object; fix or restore it")
        return {str(k): str(v) for k, v in data.items()}

    def get(self, name: str) -> str | None:
        with self._lock:
            return self._load().get(name)

    def set(self, name: str, value: str) -> None:
        ensure_private_dir(self.path.parent)
        with self._lock:
            data = self._load()
            data[name] = value
            write_private_file(self.path, json.dumps(data, indent=1).encode())

    def delete(self, name: str) -> None:
        with self._lock:
            data = self._load()
            if data.pop(name, None) is not None:
                write_private_file(self.path, json.dumps(data, indent=1).encode())


class Keychain:
    """Get, set and delete named secrets. Calls may block (D-Bus): keep them off the event loop."""

    def __init__(
        self,
        service: str,
        *,
        backend: Literal["system", "file"] = "system",
        file_path: Path | None = None,
    ) -> None:
        self.service = service
        self.backend = backend
        self._file = _FileBackend(file_path) if backend == "file" and file_path is not None else None
        if backend == "file" and file_path is None:
            raise ValueError("the file backend needs a path")
        self._mutex = threading.Lock()

    def describe(self) -> str:
        if self._file is not None:
            return f"plain file {self._file.path} (NOT encrypted; chosen in settings)"
        kr = system_keyring()
        secure = _secure_backends(kr)
        if not secure:
            return f"no secure keychain ({_backend_name(kr)})"
        return ", ".join(dict.fromkeys(_known_name(b) for b in secure))

    @property
    def secure(self) -> bool:
        if self._file is not None:
            return False
        return bool(_secure_backends(system_keyring()))

    def _system(self) -> keyring.backend.KeyringBackend:
        kr = system_keyring()
        secure = _secure_backends(kr)
        if not secure:
            raise KeychainError(
                "No secure keychain is available on this machine "
                f"(keyring chose {_backend_name(kr)}). Headway keeps API keys and tokens only in the OS keychain. "
                "Start a Secret Service (e.g. gnome-keyring) in this session, or — on a headless server, knowing it "
                'is not encrypted — set "secrets": {"backend": "file"} in the settings file.'
            )
        # The highest-priority secure backend; an insecure member of a chain is never read or written. One is used
        # without asking its priority: that costs a D-Bus round trip per call and fails when the service is gone.
        return secure[0] if len(secure) == 1 else max(secure, key=_rank)

    def look_again(self) -> bool:
        """Forget keyring's choice of backend when it holds no secure one, so the next call chooses again: a Secret
        Service that registers on the session bus after the first look (at login) is then found. keyring keeps its
        first choice for the life of the process otherwise. True when there was such a choice to forget."""
        if self._file is not None or self.secure:
            return False
        forget_choice()
        return True

    def get(self, name: str) -> str | None:
        if self._file is not None:
            return self._file.get(name)
        with _keychain_errors(f"cannot read {name!r} from the keychain"):
            return self._system().get_password(self.service, name)

    def set(self, name: str, value: str) -> None:
        if self._file is not None:
            log.warning("storing %s in the plain secrets file %s (not encrypted)", name, self._file.path)
            self._file.set(name, value)
            return
        with _keychain_errors(f"cannot store {name!r} in the keychain"), self._mutex:
            self._system().set_password(self.service, name, value)

    def delete(self, name: str) -> None:
        if self._file is not None:
            self._file.delete(name)
            return
        import keyring.errors

        with _keychain_errors(f"cannot delete {name!r} from the keychain"), self._mutex:
            try:
                self._system().delete_password(self.service, name)
            except keyring.errors.PasswordDeleteError:
                pass  # nothing stored under that name: deleted already


@contextlib.contextmanager
def _keychain_errors(doing: str) -> Iterator[None]:
    """Every exception from a system-keychain call as a KeychainError that starts with ``doing``.

    Every exception, not only keyring's: a backend is third-party code talking to another process, and what it lets
    through when that process or the session bus goes away mid-call (secretstorage's SecretServiceNotAvailableException,
    jeepney's DBusErrorResponse, a reset socket) means the same thing to every caller: the keychain did not answer.
    Callers keep their last good value on a KeychainError."""
    try:
        yield
    except KeychainError:
        raise
    except Exception as exc:
        raise KeychainError(f"{doing}: {_why(exc)}") from exc


def ensure_access_key(keychain: Keychain) -> str:
    """The local access key agents use as their API key; created at first run."""
    key = keychain.get(ACCESS_KEY)
    if not key:
        key = "hw-" + secrets.token_urlsafe(32)
        keychain.set(ACCESS_KEY, key)
    return key


def wait_for_access_key(
    keychain: Keychain,
    wait: float,
    on_wait: Callable[[KeychainError, float], None] | None = None,
    *,
    cancelled: threading.Event | None = None,
    interval: float = 1.0,
) -> str | None:
    """:func:`ensure_access_key`, waiting up to ``wait`` seconds for a system keychain that does not answer yet.

    At login Headway can start before the keychain does: the Secret Service not yet on the session bus (nothing
    secure found, or the service not answering). Each second the keychain is asked again (keyring's choice of
    backend looked at afresh when it found no secure one); ``on_wait(error, seconds waited)`` is called before each
    pause. The last error is raised when the time is up; None is returned when ``cancelled`` is set during a pause
    (the user quit).

    Two failures never wait. A locked keychain: asking again would show its unlock prompt again each second, and a
    dismissed prompt is the user's answer. A secrets file: what is wrong with it does not mend itself."""
    started = time.monotonic()
    while True:
        try:
            return ensure_access_key(keychain)
        except KeychainError as exc:
            waited = time.monotonic() - started
            if keychain.backend == "file" or looks_locked(exc) or waited + interval > wait:
                raise
            if on_wait is not None:
                on_wait(exc, waited)
            if cancelled is None:
                time.sleep(interval)
            elif cancelled.wait(interval):
                return None
            keychain.look_again()
