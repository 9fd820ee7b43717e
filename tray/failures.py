"""What a user sees when Headway cannot start or a command fails: one clear message and its fix, never a traceback.

:func:`explain` turns a known failure — no usable keychain, a busy port, an invalid settings file, a folder Headway
cannot write, a second instance — into a :class:`Failure`. :func:`handle` prints it, writes the details (with the
traceback, redacted) to the log file, and gives the exit code. Anything else is an unknown error: a short message
plus a crash report (redacted) written next to the log, whose path the message names.
"""

from __future__ import annotations

import errno
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from proxy import __version__
from proxy.config.paths import Paths
from proxy.config.settings import ENVIRONMENT, SettingsError
from proxy.gateway.listener import CannotBind
from proxy.gateway.remote import RemoteNotAllowed
from proxy.logs import LOG_FILE_NAME, redact
from proxy.secrets.keychain import KeychainError

__all__ = ["Failure", "PortBusy", "explain", "handle"]


class PortBusy(OSError):
    """The gateway's port is taken. Carries the address (the OS error does not)."""

    def __init__(self, host: str, port: int, owner: str | None = None) -> None:
        self.host, self.port, self.owner = host, port, owner
        by = f" by {owner}" if owner else ""
        super().__init__(errno.EADDRINUSE, f"port {port} on {host} is already in use{by}")


@dataclass(frozen=True)
class Failure:
    message: str
    fix: str = ""

    def render(self) -> str:
        text = f"headway: {self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


def _keychain_failure(exc: KeychainError) -> Failure:
    from .doctor.keychain import no_keychain_fix

    text = str(exc)
    if text.startswith("No secure keychain"):
        chosen = text.split("keyring chose ", 1)[-1].split(")", 1)[0] if "keyring chose " in text else "none"
        from .doctor.keychain import backend_words

        found = backend_words(chosen)
        if found == "none":
            return Failure(
                f"no secure keychain on this machine (keyring found none: {chosen})", no_keychain_fix()
            )
        found += f" ({chosen})" if found != chosen else ""
        return Failure(f"no secure keychain on this machine (found only {found})", no_keychain_fix())
    from .doctor.keychain import locked_fix, looks_locked

    if looks_locked(text):
        return Failure(f"the keychain is locked (or has no login keyring yet): {redact(text)}", locked_fix())
    return Failure(
        f"the keychain cannot be used: {redact(text)}", "`headway doctor` checks it and says what to do"
    )


def _owner(port: int) -> str | None:
    from .doctor.ports import port_owner

    try:
        return port_owner(port)
    except OSError:
        return None


def _port_failure(exc: OSError) -> Failure:
    port = getattr(exc, "port", None)
    host = getattr(exc, "host", None) or "127.0.0.1"
    where = f"port {port} on {host}" if port else "the gateway's port"
    owner = getattr(exc, "owner", None) or (_owner(port) if isinstance(port, int) else None)
    by = f" by {owner}" if owner else ""
    return Failure(
        f"{where} is already in use{by}",
        "stop the other program (or the other Headway), or choose another port: `headway serve --port N`, or set "
        "gateway.port in the settings file (`headway settings path`)",
    )


def _file_failure(exc: OSError) -> Failure:
    name = exc.filename or "a file"
    if isinstance(exc, PermissionError):
        return Failure(
            f"permission denied: {name}",
            "Headway needs folders of its own that you can write: give them back to you (`sudo chown -R $USER "
            f"{Path(str(name)).parent}`) or point HEADWAY_HOME at a folder you own",
        )
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return Failure(
            f"cannot write {name}: {reason}",
            "free some space on that disk (or raise the limit), then run the command again; the file was left "
            "as it was",
        )
    if exc.errno == errno.EROFS:
        return Failure(
            f"cannot write {name}: {reason}",
            "that file is on a read-only file system (a settings file linked into one, such as Home Manager's "
            "store, is changed where it is made): change it there, or replace it with a copy Headway can write; "
            "the file was left as it was",
        )
    return Failure(
        f"cannot use {name}: {reason}", "free some space or fix the folder, or point HEADWAY_HOME elsewhere"
    )


def explain(exc: BaseException) -> Failure | None:
    """The message and fix for a known failure; None for an unknown one."""
    from .app import AlreadyRunning

    if isinstance(exc, AlreadyRunning):
        return Failure(str(exc), "use the running one, or stop it first")
    if isinstance(exc, KeychainError):
        return _keychain_failure(exc)
    from proxy.features.request_rows import RequestLogError, damaged

    if isinstance(
        exc, RequestLogError
    ):  # the gateway sets a damaged log aside at start; readers meet it as is
        text = str(exc)
        if "newer than this Headway" in text:
            return Failure(text, "upgrade Headway, or move the file aside: a new request log is started")
        if damaged(exc):
            return Failure(
                text, "the gateway keeps the file aside and starts a new log when it starts (`headway serve`)"
            )
        return Failure(text, "`headway doctor` checks Headway's folders and says what to do")
    if isinstance(exc, SettingsError):
        problems = "\n    ".join(exc.problems[:10])
        if exc.source == ENVIRONMENT:  # a HEADWAY_* variable, not the file
            return Failure(
                f"an environment variable Headway reads cannot be used:\n    {problems}",
                "change the variable, or unset it to use the settings file's value",
            )
        return Failure(
            f"the settings file {exc.source} cannot be used:\n    {problems}",
            "fix it (`headway settings check` shows every problem), or put the last good settings back with "
            "`headway settings restore` (with no last-good copy: move the file away to start from the defaults)",
        )
    if isinstance(exc, OSError) and (exc.errno == errno.EADDRINUSE or isinstance(exc, PortBusy)):
        return _port_failure(exc)
    if isinstance(exc, RemoteNotAllowed):
        return Failure(str(exc), "`headway serve --host 127.0.0.1` for this machine only")
    from proxy.wire.tls import CertificatesUnusable

    if isinstance(exc, CertificatesUnusable):
        return Failure(str(exc), exc.fix)
    if isinstance(exc, CannotBind):
        return Failure(
            f"the gateway cannot listen on {exc.host}:{exc.port}: {exc.strerror}",
            "use an address of this machine (gateway.host, `headway serve --host`; 127.0.0.1 is the default) and a port "
            "above 1023 (`headway serve --port N`, or gateway.port in the settings file)",
        )
    if (
        isinstance(exc, OSError)
        and exc.filename
        and exc.errno
        in (
            errno.EACCES,
            errno.EPERM,
            errno.EROFS,
            errno.ENOSPC,
            errno.EDQUOT,
            errno.EFBIG,
            errno.ENOTDIR,
            errno.EEXIST,
        )
    ):
        return _file_failure(exc)
    return None


def _details(exc: BaseException) -> str:
    lines = [
        f"headway {__version__} on Python {platform.python_version()}, {platform.platform()}",
        f"command: {' '.join(sys.argv[1:]) or '(tray)'}",
        "",
        "".join(traceback.format_exception(exc)),
    ]
    return redact("\n".join(lines))


def _append_log(paths: Paths | None, text: str) -> Path | None:
    """Append to the log file (owner-only); None when it cannot be written."""
    if paths is None:
        return None
    path = paths.log_dir / LOG_FILE_NAME
    try:
        paths.log_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
    except OSError:
        return None
    return path


def _crash_report(paths: Paths | None, text: str) -> Path | None:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folders = ([paths.log_dir] if paths is not None else []) + [Path(tempfile.gettempdir())]
    for folder in folders:
        path = folder / f"headway-crash-{stamp}-{os.getpid()}.txt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError:
            continue
        return path
    return None


def handle(exc: BaseException, paths: Paths | None, *, stream: TextIO | None = None) -> int:
    """Tell the user what went wrong (one message and the fix, or where the crash report is); return the exit code."""
    out = sys.stderr if stream is None else stream
    details = _details(exc)
    failure = explain(exc)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    if failure is not None:
        logged = _append_log(paths, f"{stamp} ERROR   headway.cli {redact(failure.message)}\n{details}")
        text = failure.render()
        if logged is not None:
            text += f"\n  details: {logged}"
        print(text, file=out, flush=True)
        return 1
    _append_log(paths, f"{stamp} ERROR   headway.cli unexpected error\n{details}")
    report = _crash_report(paths, details)
    message = f"headway: unexpected error: {type(exc).__name__}: {redact(str(exc))[:300]}"
    if report is not None:
        message += f"\n  the full report is in {report} (please attach it when you report this)"
    print(message, file=out, flush=True)
    return 2
