"""What the settings page works on — :class:`WebContext`, the running services — and where it listens
(:class:`PageAddress`). Apart from the Flask app (``app.py``) so that the composition root and the page's server can
build and hold them without importing Flask: the app is made when the page serves its first request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from proxy.config.paths import Paths
    from proxy.config.store import SettingsStore
    from proxy.engine import Engine
    from proxy.secrets.keychain import Keychain

    from .logins import LoginFlows

__all__ = ["PageAddress", "WebContext"]

H = TypeVar("H")


@dataclass(frozen=True)
class PageAddress:
    """Where the page listens: ``port``, and the port it wanted (``web.port``; 0 = any)."""

    url: str
    port: int
    wanted: int

    @property
    def moved(self) -> bool:
        """The wanted port was taken (or refused), so the page is somewhere else this time."""
        return self.wanted != 0 and self.port != self.wanted


@dataclass
class WebContext:
    """What the page works on: the running services. The page keeps no settings of its own."""

    paths: Paths
    store: SettingsStore
    keychain: Keychain
    engine: Engine
    log_file: Path | None = None
    logins: LoginFlows | None = None
    caches: dict[str, Any] = field(default_factory=dict)
    address: PageAddress | None = None  # set by the server once it listens
    _caches_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def helper(self, name: str, kind: Callable[[], H]) -> H:
        """The page's one ``kind`` under ``name`` in :attr:`caches` (analyses, relay setups, small caches), made on
        first use; the server stops those that have ``stop()``. Built outside the lock; the first one stored wins."""
        with self._caches_lock:
            found = self.caches.get(name)
        if found is None:
            made = kind()
            with self._caches_lock:
                found = self.caches.setdefault(name, made)
        return found  # type: ignore[no-any-return]

    #: The setup checks (``headway doctor``) as {"check", "status", "detail", "fix"} dicts; from the composition root.
    health_checks: Callable[[], list[dict[str, str]]] | None = None
