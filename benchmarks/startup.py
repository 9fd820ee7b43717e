"""Figures about a gateway's start rather than its load: cold start to the first proxied 200, and idle memory with
the real keychain as the secrets backend.

Cold start is timed from spawning the process to the end of the first 200 answer through it (a non-streamed
request to the mock): the command's imports, settings, keychain reads and the first upstream connection are all in
it. The home is prepared beforehand (accounts are added through the CLI, not timed) and reused by each spawn, so
every spawn but the first finds its files in the page cache, as a user's login does. The first accepted connection
("listening") is reported as well.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .client import Connection, HTTPError
from .load import PATH, Target, body_for, warm
from .processes import (
    GATEWAY_LISTENING,
    Server,
    cli,
    compile_headway,
    listening_url,
    prepare_gateway,
    rss_mb,
    spawn_gateway,
    start_gateway,
)

__all__ = ["Launcher", "cold_start", "headway_launcher", "keychain_idle_rss"]

_POLL_S = 0.002
_NO_KEYCHAIN = "n/a: no keychain"


@dataclass(frozen=True)
class Launcher:
    """How to start one gateway cold: ``spawn(output)`` starts it with its output to that file; ``url_from`` finds
    where it will listen from the output so far (None until it is there); ``key`` is its access key."""

    name: str
    spawn: Callable[[Path], subprocess.Popen[bytes]]
    url_from: Callable[[str], str | None]
    key: str


def headway_launcher(workdir: Path, mock_url: str) -> Launcher:
    compile_headway()  # as installed: with its bytecode written
    prepared = prepare_gateway(workdir, mock_url)

    def url_from(text: str) -> str | None:
        for line in text.splitlines():
            if line.startswith(GATEWAY_LISTENING):
                return listening_url(line)
        return None

    return Launcher("headway", lambda output: spawn_gateway(prepared, output), url_from, prepared.key)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection(host, port)
    except OSError:
        return False
    writer.close()
    return True


async def _one(launcher: Launcher, output: Path, timeout: float) -> tuple[float, float]:
    """Seconds from spawn to the first accepted connection (listening), and to the first 200 through it."""
    started = time.monotonic()
    proc = launcher.spawn(output)
    server = Server(launcher.name, proc, "", output)
    deadline = started + timeout
    try:
        url = None
        while url is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{launcher.name} did not start:\n{server.log_tail()}")
            url = launcher.url_from(_read(output))
            if url is None:
                await asyncio.sleep(_POLL_S)
        parts = urlsplit(url)
        while not await _accepts(parts.hostname or "127.0.0.1", parts.port or 80):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{launcher.name} did not listen:\n{server.log_tail()}")
            await asyncio.sleep(_POLL_S)
        listening = time.monotonic() - started
        target = Target.of("cold", Server("cold", proc, url, output), launcher.key)
        connection = Connection(parts.hostname or "127.0.0.1", parts.port or 80, target.headers)
        body = body_for(False)
        try:
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{launcher.name} gave no 200 in {timeout:.0f}s:\n{server.log_tail()}")
                try:
                    response = await connection.request(
                        "POST", PATH, body, max(0.1, deadline - time.monotonic())
                    )
                except (HTTPError, OSError):
                    connection.close()  # not listening yet: try again
                    await asyncio.sleep(_POLL_S)
                    continue
                if response.status == 200:
                    return listening, time.monotonic() - started
                await asyncio.sleep(_POLL_S)
        finally:
            connection.close()
    finally:
        server.stop()


async def cold_start(launcher: Launcher, workdir: Path, spawns: int, timeout: float = 60.0) -> dict[str, Any]:
    """The median of ``spawns`` cold starts, one after the other."""
    first_200: list[float] = []
    listening: list[float] = []
    for n in range(spawns):
        heard, answered = await _one(launcher, workdir / f"cold-{launcher.name}-{n}.out", timeout)
        listening.append(heard)
        first_200.append(answered)
    return {
        "median": round(statistics.median(first_200), 3),
        "runs": [round(s, 3) for s in first_200],
        "listening_median": round(statistics.median(listening), 3),
    }


async def keychain_idle_rss(workdir: Path, mock_url: str) -> dict[str, Any]:
    """Idle RSS (after the same warm-up as the main gateway) of a gateway whose secrets backend is the system
    keychain, when a Secret Service is reachable; ``{"mb": None, "status": "n/a: no keychain"}`` otherwise. The
    account's secret is removed from the keychain afterwards."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return {"mb": None, "status": _NO_KEYCHAIN}
    try:
        server = start_gateway(
            workdir, mock_url, settings={"secrets": {"backend": "system"}}, name="keychain-gateway"
        )
    except RuntimeError as exc:
        if "keychain" in str(exc).lower():
            return {"mb": None, "status": f"{_NO_KEYCHAIN} ({str(exc).splitlines()[-1].strip()[:120]})"}
        raise
    try:
        errors = await warm(Target.of("keychain", server, server.key))
        await asyncio.sleep(0.5)
        mb = rss_mb(server.pid)
    finally:
        server.stop()
        if server.home is not None:
            cli(server.home, "accounts", "remove", "bench", "--yes")
    return {"mb": round(mb, 1), "status": "system keychain", "errors": errors}
