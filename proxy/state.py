"""Runtime state that survives restarts: quota snapshots, account health, sticky pins.

Small, separate from the user's settings file, owned by the engine loop and saved (owner-only, atomically) when
it changed, at most every few seconds, and at shutdown.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .health import HealthBook
from .paths import ensure_private_dir, write_private_file
from .quota import QuotaBook
from .router import Router

__all__ = ["RuntimeState"]

log = logging.getLogger("headway.state")


@dataclass
class RuntimeState:
    quota: QuotaBook = field(default_factory=QuotaBook)
    health: HealthBook = field(default_factory=HealthBook)
    router: Router = field(default_factory=Router)
    dirty: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {"version": 1, "quota": self.quota.to_json(), "health": self.health.to_json(), "pins": self.router.to_json()}
        )

    @classmethod
    def load(cls, path: Path) -> RuntimeState:
        state = cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return state
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable runtime state %s: %s", path, exc)
            return state
        if isinstance(data, dict):
            state.quota = QuotaBook.from_json(data.get("quota"))
            state.health = HealthBook.from_json(data.get("health"))
            state.router.load_json(data.get("pins"))
        return state

    def save(self, path: Path) -> None:
        ensure_private_dir(path.parent)
        write_private_file(path, self.to_json().encode())
        self.dirty = False
