"""The keychain: which backend (in words people know), unlocked, and a probe that writes, reads and deletes.

The same diagnosis gives the CLI's one-line message when a command meets an unusable keychain
(:func:`no_keychain_fix`).
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

from proxy.config.paths import Paths
from proxy.config.settings import Settings
from proxy.secrets.keychain import Keychain, KeychainError, looks_locked

from . import Check

__all__ = ["PROBE_TIMEOUT", "backend_words", "check", "locked_fix", "looks_locked", "make", "no_keychain_fix"]

PROBE_TIMEOUT = 10.0

#: module prefix of a keyring backend → what people call it
_WORDS: tuple[tuple[str, str], ...] = (
    ("keyring.backends.SecretService", "Secret Service (GNOME Keyring or KWallet)"),
    ("keyring.backends.libsecret", "Secret Service via libsecret (GNOME Keyring)"),
    ("keyring.backends.kwallet", "KWallet"),
    ("keyring.backends.macOS", "macOS Keychain"),
    ("keyring.backends.Windows", "Windows Credential Manager"),
    ("keyrings.alt", "a plain-text keyring file (keyrings.alt, not secure)"),
    ("keyring.backends.chainer", "a chain of keyrings"),
    ("keyring.backends.fail", "none"),
    ("keyring.backends.null", "none"),
)


def backend_words(module_path: str) -> str:
    for prefix, words in _WORDS:
        if module_path.startswith(prefix):
            return words
    return module_path


def no_keychain_fix() -> str:
    return (
        "start a Secret Service in this session (GNOME Keyring: `gnome-keyring-daemon --start --components=secrets`, "
        "or KDE's KWallet), or — on a headless server, knowingly — keep secrets in an owner-only file that is NOT "
        "encrypted: `headway secrets backend file`"
    )


def locked_fix() -> str:
    return (
        "unlock the keyring in your desktop session (logging in does it; or Passwords and Keys / seahorse), or from "
        "a terminal: `echo -n PASSWORD | gnome-keyring-daemon --unlock` (the first run creates the login keyring); on a "
        "headless server, knowingly: `headway secrets backend file`"
    )


def make(paths: Paths, settings: Settings) -> Keychain:
    return Keychain(paths.keychain_service, backend=settings.secrets.backend, file_path=paths.secrets_file)


def _with_timeout(what: Any, timeout: float) -> tuple[bool, Any]:
    """Run ``what()`` on a daemon thread: (finished, result or exception). A keychain waiting on an unlock prompt
    must not hang ``doctor``."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(what())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=run, name="headway-doctor-keychain", daemon=True)
    thread.start()
    thread.join(timeout)
    return (bool(box), box[0] if box else None)


def _probe(keychain: Keychain) -> None:
    name = f"doctor-probe-{secrets.token_hex(4)}"
    value = secrets.token_urlsafe(12)
    keychain.set(name, value)
    try:
        if keychain.get(name) != value:
            raise KeychainError("a probe entry read back differently from what was written")
    finally:
        keychain.delete(name)
    if keychain.get(name) is not None:
        raise KeychainError("a probe entry was still there after deleting it")


def _secret_service_locked() -> bool | None:
    """Whether the default Secret Service collection is locked (None: cannot tell). Asks without unlocking."""
    try:
        import secretstorage

        connection = secretstorage.dbus_init()
        try:
            return bool(secretstorage.get_default_collection(connection).is_locked())
        finally:
            connection.close()
    except Exception:
        return None


def check(keychain: Keychain, *, timeout: float = PROBE_TIMEOUT) -> Check:
    if keychain.backend == "file":
        where = keychain.describe()
        finished, outcome = _with_timeout(lambda: _probe(keychain), timeout)
        if isinstance(outcome, Exception) or not finished:
            return Check(
                "keychain",
                "fail",
                f"{where}: the probe failed: {outcome}",
                "check the data folder's permissions",
            )
        return Check(
            "keychain",
            "warn",
            f"{where}; write/read/delete probe ok",
            "this file is owner-only but NOT encrypted; once a keychain runs here: `headway secrets backend system`",
        )
    finished, description = _with_timeout(keychain.describe, timeout)
    if not finished:
        return Check(
            "keychain", "fail", f"the keychain did not answer within {timeout:.0f} s", no_keychain_fix()
        )
    if isinstance(description, Exception):
        return Check("keychain", "fail", f"cannot ask the keychain: {description}", no_keychain_fix())
    if not keychain.secure:
        chosen = backend_words(str(description).split("(", 1)[-1].rstrip(")"))
        return Check(
            "keychain", "fail", f"no secure keychain on this machine (only {chosen})", no_keychain_fix()
        )
    words = ", ".join(backend_words(part.strip()) for part in str(description).split(","))
    if "SecretService" in str(description) or "libsecret" in str(description):
        locked = _secret_service_locked()
        if locked:
            return Check(
                "keychain",
                "fail",
                f"{words}: the login keyring is locked",
                locked_fix(),
            )
    finished, outcome = _with_timeout(lambda: _probe(keychain), timeout)
    if not finished:
        return Check(
            "keychain",
            "fail",
            f"{words}: no answer within {timeout:.0f} s (waiting for an unlock prompt?)",
            locked_fix(),
        )
    if isinstance(outcome, Exception):
        if looks_locked(outcome):
            return Check(
                "keychain",
                "fail",
                f"{words}: locked, or no login keyring yet, and no unlock prompt could be shown ({outcome})",
                locked_fix(),
            )
        return Check("keychain", "fail", f"{words}: the probe failed: {outcome}", no_keychain_fix())
    return Check("keychain", "ok", f"{words}, unlocked; write/read/delete probe ok")
