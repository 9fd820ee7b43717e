"""The gateway's and the settings page's ports (free, used by this Headway, or by something else — which), and the
running instance (reachable, version)."""

from __future__ import annotations

import errno
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from proxy import __version__
from proxy.config.paths import Paths
from proxy.config.settings import Settings
from proxy.secrets.keychain import ACCESS_KEY, Keychain, KeychainError

from . import Check

__all__ = ["checks", "instance_check", "port_owner", "port_state"]

STATUS_TIMEOUT = 3.0


def _read_runtime(paths: Paths) -> dict[str, Any] | None:
    from tray.app import read_runtime

    return read_runtime(paths)


def _read_web(paths: Paths) -> dict[str, Any] | None:
    from web_ui.server import read_web_info

    return read_web_info(paths)


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def port_owner(port: int) -> str | None:
    """``name (pid N)`` of the process listening on ``port``, when this system says (Linux /proc); else None."""
    if not sys.platform.startswith("linux"):
        return None
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    name = (entry / "comm").read_text().strip()
                    return f"{name} (pid {entry.name})"
        except OSError:
            continue
    return None


def port_state(host: str, port: int) -> str:
    """``free`` or ``busy`` (someone listens there), ``unavailable: …`` for other bind errors."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "busy"
            return f"unavailable: {exc.strerror or exc}"
    return "free"


def _check_port(name: str, host: str, port: int, ours: int | None, setting: str, pid: int | None) -> Check:
    where = f"{host}:{port}"
    if port == 0:
        return Check(name, "ok", "a free port is picked at each start")
    if ours == port:
        return Check(name, "ok", f"{where} is served by this Headway (pid {pid})")
    state = port_state(host, port)
    if state == "free":
        return Check(name, "ok", f"{where} is free")
    if state == "busy":
        owner = port_owner(port)
        return Check(
            name,
            "fail",
            f"{where} is in use by {owner or 'another program'}",
            f"stop that program, or give Headway another port: set {setting} in the settings file"
            + (" (or run `headway serve --port N`)" if setting == "gateway.port" else ""),
        )
    return Check(
        name, "fail", f"cannot listen on {where}: {state.split(': ', 1)[-1]}", f"check {setting} and the host"
    )


def checks(paths: Paths, settings: Settings) -> list[Check]:
    runtime = _read_runtime(paths) or {}
    gateway = settings.gateway
    running_port = runtime.get("port") if isinstance(runtime.get("port"), int) else None
    gateway_check = _check_port(
        "gateway port", gateway.host, gateway.port, running_port, "gateway.port", runtime.get("pid")
    )
    if running_port and running_port != gateway.port and gateway_check.status == "ok":
        gateway_check = replace(
            gateway_check,
            detail=f"{gateway_check.detail}; the running Headway (pid {runtime.get('pid')}) listens on port "
            f"{running_port} instead (`serve --port`, or a port change it could not make)",
        )
    out = [gateway_check]
    web_settings = getattr(settings, "web", None)
    web_port = getattr(web_settings, "port", None)
    web = _read_web(paths) or {}
    web_running: int | None = None
    if isinstance(web.get("url"), str):
        try:
            web_running = int(str(web["url"]).rsplit(":", 1)[1].split("/")[0])
        except (IndexError, ValueError):
            web_running = None
    if isinstance(web_port, int):
        page_check = _check_port(
            "settings page port", "127.0.0.1", web_port, web_running, "web.port", web.get("pid")
        )
        if page_check.status == "fail" and not web_running:
            # not fatal: the page takes a free port for the run (and says so); only bookmarks miss it
            page_check = replace(
                page_check,
                status="warn",
                detail=page_check.detail + "; the page will take another port this run",
            )
        if web_running and web_running != web_port:
            page_check = replace(
                page_check,
                status="warn" if page_check.status == "fail" else page_check.status,
                detail=f"{page_check.detail}; the running page is on port {web_running} this time, so bookmarks of "
                f"port {web_port} do not reach it",
            )
        out.append(page_check)
    elif web_running:
        out.append(Check("settings page port", "ok", f"127.0.0.1:{web_running} is served by this Headway"))
    else:
        out.append(Check("settings page port", "ok", "a free port is picked at each start"))
    return out


def instance_check(paths: Paths, keychain: Keychain) -> Check:
    runtime = _read_runtime(paths)
    if runtime is None:
        return Check(
            "running instance", "ok", "Headway is not running (start it with `headway` or `headway serve`)"
        )
    url, pid = runtime.get("url"), runtime.get("pid")
    try:
        key = keychain.get(ACCESS_KEY) or ""
    except KeychainError as exc:
        return Check(
            "running instance",
            "warn",
            f"running at {url} (pid {pid}); cannot read the access key: {exc}",
            "see the keychain check",
        )
    try:
        response = httpx.get(f"{url}/status", headers={"x-api-key": key}, timeout=STATUS_TIMEOUT)
    except httpx.TimeoutException:
        return Check(
            "running instance",
            "fail",
            f"pid {pid} holds {url} but /status did not answer within {STATUS_TIMEOUT:.0f} s",
            "look at the log (`headway doctor` names it under headway home), or restart Headway",
        )
    except httpx.HTTPError as exc:
        return Check(
            "running instance", "fail", f"pid {pid} should serve {url} but: {exc}", "restart Headway"
        )
    if response.status_code == 401:
        return Check(
            "running instance",
            "warn",
            f"running at {url} (pid {pid}) but it refused this key (was it rotated?)",
            "restart Headway so it reads the current key",
        )
    try:
        data = response.json()
        version = data.get("version")
    except ValueError:
        version = None
    if not response.is_success or not version:
        return Check(
            "running instance",
            "fail",
            f"{url}/status answered HTTP {response.status_code}",
            "restart Headway",
        )
    detail = f"running at {url} (pid {pid}), version {version}"
    listen_error = data.get("listen_error")
    if listen_error:
        return Check(
            "running instance", "warn", f"{detail}; {listen_error}", "choose a free port in the settings"
        )
    if version != __version__:
        return Check(
            "running instance", "warn", f"{detail}; this command is {__version__}", "restart Headway"
        )
    return Check("running instance", "ok", detail)
