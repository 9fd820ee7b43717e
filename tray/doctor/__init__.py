"""``headway doctor``: check everything a first run meets, one line each, with the fix.

Each check is a small function returning :class:`Check` (``ok`` / ``warn`` / ``fail``, a short detail, the fix); the
modules of this package own one area each — the keychain, files and folders, ports and the running instance, the
desktop (tray, notifications, autostart), accounts, agents, and the network. :func:`run_checks` runs them all; a check
that raises is reported as a failure of its own, never as a traceback. Nothing here changes settings or secrets
(the keychain probe writes and deletes one entry of its own).

The same list is what the settings page's "Health check" section and the tray's "Check setup…" show.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from proxy.config.paths import Paths
from proxy.logs import redact

__all__ = ["Check", "Status", "exit_code", "format_checks", "run_checks", "summary", "to_json"]

log = logging.getLogger("headway.doctor")

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    check: str
    status: Status
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _guarded(name: str, run: Callable[[], Iterable[Check]]) -> list[Check]:
    try:
        return list(run())
    except Exception as exc:  # a broken check is a finding, not a crash
        log.debug("check %s failed", name, exc_info=True)
        return [Check(name, "fail", f"the check itself failed: {type(exc).__name__}: {redact(str(exc))}", "")]


def run_checks(
    paths: Paths,
    *,
    environ: Mapping[str, str] | None = None,
    network: bool = False,
    platform: str | None = None,
) -> list[Check]:
    """Every check, in the order a user would fix things."""
    from . import accounts, agents, desktop, files, keychain, ports, upstreams

    env = os.environ if environ is None else environ
    context = files.load_context(paths)
    checks: list[Check] = []
    checks += _guarded("settings", lambda: files.settings_checks(paths, context))
    checks += _guarded("headway home", lambda: files.home_checks(paths))
    kc = keychain.make(paths, context.settings)
    checks += _guarded("keychain", lambda: [keychain.check(kc)])
    checks += _guarded("ports", lambda: ports.checks(paths, context.settings))
    checks += _guarded("instance", lambda: [ports.instance_check(paths, kc)])
    checks += _guarded("tray", lambda: desktop.tray_checks(env, platform))
    checks += _guarded("autostart", lambda: [desktop.autostart_check()])
    checks += _guarded("accounts", lambda: accounts.checks(paths, context.settings, kc))
    checks += _guarded("agents", lambda: agents.checks(paths, context.settings, kc, env))
    checks += _guarded(upstreams.NAME, lambda: [upstreams.url_check(context.settings, env)])
    checks += _guarded(upstreams.CERTIFICATES, lambda: [upstreams.certificates_check()])
    if network:
        from . import network as net

        checks += _guarded("network", lambda: net.checks(context.settings, env))
    return checks


def exit_code(checks: Sequence[Check]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 1 if any(c.status == "fail" for c in checks) else 0


def summary(checks: Sequence[Check]) -> str:
    fails = sum(c.status == "fail" for c in checks)
    warns = sum(c.status == "warn" for c in checks)
    if not fails and not warns:
        return f"All {len(checks)} checks passed."
    parts = [f"{fails} failed" if fails else "", f"{warns} with warnings" if warns else ""]
    return f"{len(checks)} checks: " + ", ".join(p for p in parts if p) + "."


_MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def format_checks(checks: Sequence[Check]) -> str:
    width = max((len(c.check) for c in checks), default=0)
    lines = []
    for c in checks:
        lines.append(f"[{_MARK[c.status]}] {c.check:<{width}}  {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"       {'':<{width}}  fix: {c.fix}")
    lines.append(summary(checks))
    return "\n".join(lines)


def to_json(checks: Sequence[Check]) -> str:
    return json.dumps([c.as_dict() for c in checks], indent=2)
