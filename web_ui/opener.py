"""Opening the settings page signed in without putting the sign-in token on a command line.

A browser is started with its address as an argument (``$BROWSER <url>``, ``xdg-open <url>``, ``open <url>``), and
any local user can read another's arguments with ``ps``. A one-time token there could be redeemed by whoever is
fastest. So the browser gets a file instead: a small HTML page, created 0600 in the owner-only folder
``run_dir/web-open/``, that forwards to ``/login?token=…`` (a meta refresh: no script). Only its path is visible on
the command line, and only this user can read it. Used pages hold a token that is already spent or expired in
:data:`~web_ui.security.TOKEN_TTL` seconds; they are deleted at the next open and when the page's server starts.

The forward comes from a ``file:`` page, so the browser marks ``/login`` as ``Sec-Fetch-Site: cross-site``; the page's
security layer lets exactly that request through (a top-level GET navigation to ``/login``, which does nothing
without a valid token) and answers it with a same-origin hop to ``/`` so the SameSite=Strict cookie is sent.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
import webbrowser
from pathlib import Path

from markupsafe import escape

from proxy.config.paths import Paths, ensure_private_dir

from .security import TOKEN_TTL

__all__ = ["OPENER_SUFFIX", "clear_openers", "open_signed_in", "opener_dir", "write_opener"]

log = logging.getLogger("headway.web")

OPENER_SUFFIX = ".html"


def opener_dir(paths: Paths) -> Path:
    return paths.run_dir / "web-open"


def clear_openers(folder: Path, *, older_than: float = 0.0) -> None:
    """Delete the opener pages in ``folder`` older than ``older_than`` seconds (all of them by default)."""
    now = time.time()
    try:
        entries = list(folder.glob(f"*{OPENER_SUFFIX}"))
    except OSError:
        return
    for path in entries:
        try:
            if now - path.lstat().st_mtime >= older_than:
                path.unlink()
        except OSError:
            continue


def write_opener(folder: Path, url: str) -> Path:
    """A new 0600 page in the 0700 ``folder`` that sends the browser to ``url``; returns its path."""
    ensure_private_dir(folder)
    clear_openers(folder, older_than=TOKEN_TTL)
    target = escape(url)
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="referrer" content="no-referrer">'
        f'<meta http-equiv="refresh" content="0;url={target}">'
        "<title>Opening Headway's settings…</title></head>\n"
        f'<body><p><a href="{target}">Open Headway\'s settings</a></p></body></html>\n'
    )
    path = folder / f"{secrets.token_hex(12)}{OPENER_SUFFIX}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(page)
    return path


def open_signed_in(paths: Paths, login_url: str) -> bool:
    """Open ``login_url`` (a one-time sign-in link) in the user's browser through an opener page. Never raises."""
    try:
        page = write_opener(opener_dir(paths), login_url)
    except OSError as exc:
        log.warning("cannot write the page that opens the settings: %s", exc)
        return False
    try:
        opened = webbrowser.open(page.as_uri())
    except (webbrowser.Error, OSError) as exc:
        log.warning("cannot open the browser: %s", exc)
        opened = False
    if not opened:
        page.unlink(missing_ok=True)
    return opened
