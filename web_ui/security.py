"""Who may use the settings page, and how: the checks every request passes, in this order.

1. **Host allowlist** (:class:`HostGuard`, a WSGI middleware around the whole app, so nothing runs before it):
   only ``127.0.0.1``, ``localhost`` and ``[::1]`` — a DNS-rebinding page names its own host and is refused.
2. **Fetch metadata**: ``Sec-Fetch-Site: cross-site`` is refused everywhere but a top-level GET navigation to the
   sign-in exchange (the browser arrives there from a local ``file:`` page, see ``opener.py``); ``same-site``
   (another port on this machine) everywhere but a top-level GET navigation; a state change must be ``same-origin`` and, when the
   browser sends ``Origin``, it must equal this page's own origin exactly. No CORS headers are ever sent.
3. **Session**: a one-time sign-in token (below) is exchanged at ``GET /login?token=…`` for a random session id in
   an ``HttpOnly; SameSite=Strict`` cookie; anything else without a valid session gets 401.
4. **CSRF**: every request that is not GET/HEAD carries the session's CSRF token in ``X-CSRF-Token`` (the page reads
   it from a ``<meta>`` tag; form posts may send ``csrf_token``).

Every response carries a CSP without inline script or style, ``X-Frame-Options: DENY``, ``nosniff``,
``Referrer-Policy: same-origin`` and ``Cache-Control: no-store``. (Not ``no-referrer``: under it a browser sends
``Origin: null`` with the page's own form posts — Sign out — and the Origin check above cannot tell them from an
opaque origin's. ``same-origin`` sends nothing to any other site and lets same-origin form posts carry the real
``Origin``; ``null`` stays refused.) Tokens and session ids are compared with
``hmac.compare_digest``; only their SHA-256 digests are kept.

One-time sign-in tokens come from two places:

* the tray (same process): :meth:`LoginTokens.mint` keeps the digest in memory;
* the ``headway settings`` command (another process): :func:`mint_token_file` writes the digest into a new 0600 file
  in the 0700 folder ``run_dir/web-login/`` and prints or opens the URL with the token. The server accepts such a file
  once, within :data:`TOKEN_TTL` seconds of its creation, only if it is a regular file owned by this user and not
  readable by anyone else, and deletes it. The filesystem permission is the authentication: whoever can write into
  the owner-only run folder is already this user.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from proxy.config.paths import write_private_file

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "ALLOWED_HOST_NAMES",
    "CSRF_HEADER",
    "SECURITY_HEADERS",
    "TOKEN_TTL",
    "HostGuard",
    "LoginTokens",
    "Session",
    "Sessions",
    "content_security_policy",
    "digest",
    "fetch_metadata_problem",
    "host_name",
    "mint_token_file",
]

log = logging.getLogger("headway.web")

TOKEN_TTL = 60.0
_SAVE_LAST_SEEN_AFTER = 600.0  # a session's last use is written at most every 10 minutes
SESSION_IDLE_SECONDS = 12 * 3600.0
SESSION_MAX_SECONDS = 7 * 24 * 3600.0
MAX_SESSIONS = 32
CSRF_HEADER = "X-CSRF-Token"
ALLOWED_HOST_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
_TOKEN_SUFFIX = ".token"


def content_security_policy() -> str:
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )


SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": content_security_policy(),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _new_token() -> str:
    return secrets.token_urlsafe(32)


# --------------------------------------------------------------------------- Host allowlist


def host_name(host_header: str) -> str:
    """The name part of a Host header, lower-cased: ``[::1]:8080`` → ``[::1]``, ``Localhost:1`` → ``localhost``."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end != -1 else host
    return host.rsplit(":", 1)[0] if ":" in host else host


class HostGuard:
    """WSGI middleware: refuse any request whose Host is not a loopback name (DNS rebinding), before the app runs."""

    def __init__(self, app: WSGIApplication, allowed: Iterable[str] = ALLOWED_HOST_NAMES) -> None:
        self.app = app
        self.allowed = frozenset(a.lower() for a in allowed)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST") or ""
        if host_name(host) not in self.allowed:
            body = b"Refused: this page only answers to 127.0.0.1 and localhost.\n"
            headers = [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
                *SECURITY_HEADERS.items(),
            ]
            start_response("403 Forbidden", headers)
            return [body]
        return self.app(environ, start_response)


# --------------------------------------------------------------------------- fetch metadata / origin


def fetch_metadata_problem(
    *,
    method: str,
    sec_fetch_site: str | None,
    sec_fetch_mode: str | None,
    origin: str | None,
    host: str,
    sign_in: bool = False,
) -> str | None:
    """Why a request is refused as coming from another site, or None when it may go on.

    ``sign_in``: the request is for the one-time sign-in exchange (``/login``). A top-level GET navigation there may
    come from anywhere — the browser opens it from a local ``file:`` page (``opener.py``), which it calls cross-site —
    since it does nothing without a valid one-time token."""
    site = (sec_fetch_site or "").lower()
    unsafe = method.upper() not in ("GET", "HEAD")
    if sign_in and not unsafe and (sec_fetch_mode or "").lower() == "navigate":
        return None
    if site == "cross-site":
        return "requests from other sites are refused"
    if site == "same-site" and (unsafe or (sec_fetch_mode or "").lower() != "navigate"):
        return "requests from other local pages are refused"
    if unsafe:
        if site not in ("", "same-origin"):
            return "state changes must come from this page"
        if origin is not None and origin.lower() != f"http://{host.lower()}":
            return "the request's Origin is not this page"
    return None


# --------------------------------------------------------------------------- one-time sign-in tokens


def mint_token_file(folder: Path, *, clock: Callable[[], float] = time.time) -> str:
    """Mint a one-time token for a running server that watches ``folder``; returns the token (only its digest is
    written, in a new 0600 file; the folder is created 0700)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        os.chmod(folder, 0o700)
    token = _new_token()
    path = folder / f"{secrets.token_hex(8)}{_TOKEN_SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(digest(token))
    return token


class LoginTokens:
    """One-time, short-lived sign-in tokens: minted here (the tray) or dropped as files by the CLI."""

    def __init__(
        self, folder: Path | None = None, *, ttl: float = TOKEN_TTL, clock: Callable[[], float] = time.time
    ) -> None:
        self.folder = folder
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[str, float] = {}  # digest → expiry

    def prepare(self) -> None:
        """Create the token folder (0700) and remove any stale token files."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.name == "posix":
            os.chmod(self.folder, 0o700)
        for path in self.folder.glob(f"*{_TOKEN_SUFFIX}"):
            path.unlink(missing_ok=True)

    def mint(self) -> str:
        token = _new_token()
        now = self._clock()
        with self._lock:
            self._pending = {d: exp for d, exp in self._pending.items() if exp > now}
            self._pending[digest(token)] = now + self.ttl
        return token

    def redeem(self, token: str) -> bool:
        """True exactly once for a token minted less than ``ttl`` seconds ago."""
        if not token or len(token) > 200:
            return False
        wanted = digest(token)
        now = self._clock()
        with self._lock:
            match = None
            for candidate, expiry in list(self._pending.items()):
                if expiry <= now:
                    del self._pending[candidate]
                elif hmac.compare_digest(candidate, wanted):
                    match = candidate
            if match is not None:
                del self._pending[match]
                return True
        return self._redeem_file(wanted, now)

    def _redeem_file(self, wanted: str, now: float) -> bool:
        if self.folder is None or not self.folder.is_dir():
            return False
        found = False
        for path in self.folder.glob(f"*{_TOKEN_SUFFIX}"):
            try:
                info = path.lstat()
            except FileNotFoundError:
                continue
            too_old = now - info.st_mtime > self.ttl or info.st_mtime - now > 5.0
            if too_old or not _private_regular_file(info):
                path.unlink(missing_ok=True)
                continue
            try:
                content = path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                continue
            if not found and hmac.compare_digest(content, wanted):
                try:
                    path.unlink()  # whoever unlinks it first used it
                except FileNotFoundError:
                    continue
                found = True
        return found


def _private_regular_file(info: os.stat_result) -> bool:
    if not stat.S_ISREG(info.st_mode):
        return False
    if os.name != "posix":
        return True  # the per-user profile folder's ACL protects it
    return info.st_uid == os.getuid() and not info.st_mode & 0o077


# --------------------------------------------------------------------------- sessions


@dataclass
class Session:
    id_digest: str
    csrf: str
    created: float
    last_seen: float
    data: dict[str, Any] = field(default_factory=dict)


class Sessions:
    """Signed-in browsers. With a ``file`` (the server's: 0600 in the owner-only run folder) they outlive a restart,
    so an open tab carries on at the page's stable address; the file holds only each session's cookie digest, its
    CSRF token and times — never a cookie value. Without one they live in memory only."""

    def __init__(self, *, clock: Callable[[], float] = time.time, file: Path | None = None) -> None:
        self._clock = clock
        self._file = file
        self._lock = threading.Lock()
        self._sessions: list[Session] = []
        self._version = 0  # bumped under _lock at each change worth saving
        self._save_lock = threading.Lock()  # orders the file writes; taken without _lock
        self._saved = 0
        self._load()

    def create(self) -> tuple[str, Session]:
        """A new session: returns the cookie value (never stored) and the session."""
        value = _new_token()
        now = self._clock()
        session = Session(id_digest=digest(value), csrf=_new_token(), created=now, last_seen=now)
        with self._lock:
            self._expire(now)
            self._sessions.append(session)
            del self._sessions[:-MAX_SESSIONS]
            self._version += 1
        self._save()
        return value, session

    def find(self, cookie_value: str | None) -> Session | None:
        if not cookie_value or len(cookie_value) > 200:
            return None
        wanted = digest(cookie_value)
        now = self._clock()
        with self._lock:
            self._expire(now)
            match = None
            for session in self._sessions:
                if hmac.compare_digest(session.id_digest, wanted):
                    match = session
            stale = match is not None and now - match.last_seen > _SAVE_LAST_SEEN_AFTER
            if match is not None:
                match.last_seen = now
            if stale:
                self._version += 1
        if stale:
            self._save()
        return match

    def end(self, cookie_value: str | None) -> None:
        session = self.find(cookie_value)
        if session is not None:
            with self._lock:
                self._sessions = [s for s in self._sessions if s is not session]
                self._version += 1
            self._save()

    def _load(self) -> None:
        if self._file is None:
            return
        try:
            info = self._file.lstat()
            if not _private_regular_file(info):
                raise ValueError("not a private regular file")
            raw = json.loads(self._file.read_text(encoding="utf-8"))
            loaded = [
                Session(
                    id_digest=str(r["id_digest"]),
                    csrf=str(r["csrf"]),
                    created=float(r["created"]),
                    last_seen=float(r["last_seen"]),
                )
                for r in raw["sessions"]
            ]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "the settings page's sessions were not restored from %s (%s); sign in again", self._file, exc
            )
            return
        self._sessions = loaded[-MAX_SESSIONS:]
        self._expire(self._clock())

    def _save(self) -> None:
        if self._file is None:
            return
        with self._save_lock:
            with self._lock:
                version = self._version
                rows = [
                    {"id_digest": s.id_digest, "csrf": s.csrf, "created": s.created, "last_seen": s.last_seen}
                    for s in self._sessions
                ]
            if version <= self._saved:
                return  # a later snapshot is already on disk
            try:
                write_private_file(self._file, json.dumps({"sessions": rows}).encode())
            except OSError as exc:
                log.warning("cannot save the settings page's sessions to %s: %s", self._file, exc)
                return
            self._saved = version

    def _expire(self, now: float) -> None:
        self._sessions = [
            s
            for s in self._sessions
            if now - s.last_seen < SESSION_IDLE_SECONDS and now - s.created < SESSION_MAX_SECONDS
        ]

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(session.csrf.encode(), (presented or "").encode())
