"""Which keyring backend holds the secrets: the one keyring would choose, found without loading every backend.

``keyring.get_keyring()`` chooses by importing every backend it knows — libsecret through PyGObject (``gi``), KWallet,
keyrings.alt, plugins — and ranking the viable ones by priority. On a Linux desktop that cost `headway serve` about
10 MB of resident memory for the life of the process, only to pick the Secret Service backend (priority 5), which
is what :class:`~proxy.secrets.keychain.Keychain` then uses (the highest-priority secure backend; libsecret talks to
the same Secret Service at 4.8, KWallet outside KDE ranks 4.9).

:func:`system_keyring` decides in this order, and anything it cannot be sure of goes to keyring's own discovery, so
the backend, ``describe()``, ``secure`` and every message stay what they were:

1. A backend keyring already holds (``keyring.set_keyring``, an earlier choice) is kept.
2. An explicit choice wins, read by keyring's own functions: ``PYTHON_KEYRING_BACKEND`` (``load_env``), then
   ``default-keyring`` in keyringrc.cfg (``load_config``).
3. Only on Linux, and only when nothing could outrank or join it: not on KDE (KWallet ranks 5.1 there), no
   ``dbus`` module for KWallet's backend, no keyring plugin but keyring's own backends and keyrings.alt's (never
   used for secrets here) — the Secret Service backend, if it is viable (its module is importable and a Secret
   Service answers on the session bus).
4. Otherwise keyring's full discovery, as before: on macOS and Windows (their backends are light), with no session
   bus, no Secret Service, on KDE, with a plugin.

The choice is handed to ``keyring.set_keyring``, so keyring holds it for the process as it holds its own. When
step 4 runs, keyring reads the variable and the config file once more itself (the same answer: neither chose).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keyring.backend

__all__ = ["forget_choice", "system_keyring"]

#: plugins whose backends are known: keyring's own, and keyrings.alt's (insecure: never chosen, never named)
_KNOWN_PLUGIN_MODULES = ("keyring.backends.", "keyrings.alt.")
_UNKNOWN = object()


def system_keyring() -> keyring.backend.KeyringBackend:
    """The keyring backend for the system keychain (see the module's docstring for how it is chosen)."""
    import keyring.core

    # keyring keeps its choice here; if a future keyring moves it, we cannot tell whether one was made: discover.
    if getattr(keyring.core, "_keyring_backend", _UNKNOWN) is None:
        chosen = keyring.core.load_env() or keyring.core.load_config() or _secret_service_if_it_wins()
        if chosen is not None:
            keyring.core.set_keyring(chosen)
    return keyring.core.get_keyring()


def forget_choice() -> None:
    """Forget the backend keyring holds, and its cached list of viable backends, so the next
    :func:`system_keyring` chooses again from what is there now."""
    import keyring.backend
    import keyring.core

    if getattr(keyring.core, "_keyring_backend", _UNKNOWN) is _UNKNOWN:
        return  # a keyring that keeps its choice elsewhere: nothing here can be forgotten
    keyring.core._keyring_backend = None
    # keyring's full discovery is cached by jaraco's @once, whose reset() raises KeyError when nothing is cached yet
    reset = getattr(keyring.backend.get_all_keyring, "reset", None)
    if callable(reset):
        with contextlib.suppress(KeyError):
            reset()


def _secret_service_if_it_wins() -> keyring.backend.KeyringBackend | None:
    """The Secret Service backend when keyring's discovery would surely rank it first among secure backends, and no
    other secure backend would join it in a chain; else None."""
    import importlib.metadata
    import importlib.util

    if sys.platform != "linux":
        return None
    if "kde" in os.environ.get("XDG_CURRENT_DESKTOP", "").lower():
        return None
    # KWallet's backend needs python-dbus: where it can load, KWallet may be viable and join (and be named in) a chain.
    if importlib.util.find_spec("dbus") is not None:
        return None
    plugins = importlib.metadata.entry_points(group="keyring.backends")
    if any(not (ep.module + ".").startswith(_KNOWN_PLUGIN_MODULES) for ep in plugins):
        return None
    try:
        from keyring.backends import SecretService
    except ImportError:
        return None
    if not SecretService.Keyring.viable:  # no secretstorage, no session bus, no Secret Service on it
        return None
    return SecretService.Keyring()  # type: ignore[no-untyped-call]
