"""Launch at login on macOS: a per-user LaunchAgent, ``~/Library/LaunchAgents/dev.headway.Headway.plist``.

``RunAtLoad`` starts Headway when the user logs in; ``LimitLoadToSessionType = Aqua`` keeps it out of SSH
sessions; no ``KeepAlive``: quitting from the menu stays quit. The agent is not loaded now (that would start a
second Headway); launchd picks it up at the next login.
"""

from __future__ import annotations

import plistlib
from pathlib import Path
from typing import Any

from proxy.config.paths import write_private_file

from . import APP_ID, Autostart, AutostartError

__all__ = ["MacAutostart", "launch_agent"]


def launch_agent(command: list[str], environment: dict[str, str]) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "Label": APP_ID,
        "ProgramArguments": list(command),
        "RunAtLoad": True,
        "KeepAlive": False,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
    }
    if environment:
        agent["EnvironmentVariables"] = dict(environment)
    return agent


class MacAutostart(Autostart):
    kind = "LaunchAgent"

    def __init__(
        self, command: list[str], environment: dict[str, str] | None = None, home: Path | None = None
    ):
        super().__init__(command, environment)
        self._home = home

    @property
    def path(self) -> Path:
        return (self._home or Path.home()) / "Library" / "LaunchAgents" / f"{APP_ID}.plist"

    def location(self) -> str:
        return str(self.path)

    def _agent(self) -> dict[str, Any] | None:
        try:
            data = plistlib.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, plistlib.InvalidFileException, ValueError) as exc:
            raise AutostartError(f"cannot read {self.path}: {exc}") from exc
        return data if isinstance(data, dict) else None

    def is_enabled(self) -> bool:
        agent = self._agent()
        return bool(agent and agent.get("RunAtLoad") and not agent.get("Disabled", False))

    def registered_command(self) -> str | None:
        agent = self._agent()
        if not agent:
            return None
        return " ".join(str(a) for a in agent.get("ProgramArguments", []))

    def expected_command(self) -> str | None:
        return " ".join(self.command)

    def enable(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_private_file(self.path, plistlib.dumps(launch_agent(self.command, self.environment)))
        except OSError as exc:
            raise AutostartError(f"cannot write {self.path}: {exc}") from exc

    def disable(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise AutostartError(f"cannot remove {self.path}: {exc}") from exc
