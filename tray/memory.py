"""What a long-running Headway process (`headway serve`, bare `headway`) does first, to start fast and stay small.

Called by those entry points before the engine's modules are imported (never by other commands or by tests that
build the services in their own process). Each step was measured with ``python -m benchmarks imports`` (figures
in docs/architecture.md, "The hot path: what a request costs"); none changes what Headway does:

- **aiohttp's default TLS contexts.** aiohttp builds two contexts when it is imported, each loading the system's
  certificate store (about 0.8 MB each), for requests that bring no context of their own. Headway's upstream client
  hands aiohttp the engine's context on every request (proxy/wire/upstream_client.py), so they are never used.
  aiohttp is therefore imported here first, with the standard library's context constructors loading no store for
  the length of that import (aiohttp's connector is the only module in it that builds a context; the constructors
  are restored right after): a start-up 0.56 → 0.45 s to the first proxied 200, measured. Its two contexts are then
  replaced by one that trusts no certificate: a request that ever went out without Headway's context would fail its
  TLS handshake — never go unverified or unencrypted. Where aiohttp was imported earlier (a test process), the
  contexts are replaced all the same; done before the rest of the gateway is imported, the memory they held is
  reused instead of staying a hole in the heap.
- **aiohttp's zstd.** aiohttp imports a zstd library at its own import when one is installed, to decode zstd answers
  (0.6 MB). Headway's upstream client never lets aiohttp decode an answer (httpx does; proxy/wire/upstream_client.py),
  and the gateway needs zstd only for request bodies an agent compressed (proxy/wire/content_coding.py), which load
  it on the first such body. So it is hidden from that one import (aiohttp then says it has no zstd), and available
  again right after.
- **No full collections while starting.** Importing the gateway creates some 100,000 objects that live as long as
  the process, and the cyclic collector walked them again and again as they came (about 150 passes, 30 ms of a
  0.48 s start; one full pass, 12-20 ms, among them). From the first step here until the gateway has listened for a
  second, only the young generation is collected (what dies young is still freed as it goes: holding the collector
  off entirely cost 0.3 MB idle). Then :func:`settle` (called by ``Services.start``) collects once, freezes what is
  left out of every later pass (it lives as long as the process; a full pass over it took 12-20 ms of the gateway's
  loop), and puts the thresholds back. Measured, interleaved starts: 0.49 → 0.47 s to the first proxied 200, the
  same idle memory.
- **httpx's command line.** httpx imports its command-line tool when it is imported, which loads pygments' lexer
  table (0.5 MB) wherever pygments is installed, to fail a moment later on the missing ``rich``; Headway never runs
  that tool. It is hidden from httpx's import (httpx then defines its stub). The bundle has no pygments, so this
  saves nothing there; it does in any environment that has it (a shared venv, the development one).
- **One malloc arena.** glibc gives each thread that allocates its own arena (up to 8 per core) and keeps what each
  arena once held. Headway's threads mostly wait, and Python allocates under its lock anyway; with one arena the
  process holds less. glibc on Linux only; elsewhere nothing is done.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import ssl
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["prepare_long_running_process", "settle"]

log = logging.getLogger("headway.memory")

_M_ARENA_MAX = -8  # glibc's malloc.h
_ZSTD_MODULES = ("backports.zstd", "compression.zstd")


_collector: dict[
    str, tuple[int, ...]
] = {}  # the thresholds prepare_long_running_process replaced, until settle
_HELD = (0, 1 << 30, 1 << 30)  # young objects are collected as usual; older generations wait for settle()


def prepare_long_running_process() -> None:
    if gc.isenabled() and gc.get_threshold()[1:] != _HELD[1:]:  # first: all below is what it would walk again
        _collector["thresholds"] = gc.get_threshold()
        gc.set_threshold(gc.get_threshold()[0], *_HELD[1:])
    _one_malloc_arena()
    _drop_aiohttp_default_tls()
    with _hidden(("httpx._main",)):
        import httpx  # noqa: F401  # without its command-line tool (see above)


def settle() -> None:
    """Once started: collect what starting left, freeze the rest out of later passes, and collect as usual again."""
    gc.collect()
    gc.freeze()
    thresholds = _collector.pop("thresholds", None)
    if thresholds is not None:
        gc.set_threshold(*thresholds)


def _one_malloc_arena() -> None:
    if sys.platform != "linux":
        return
    try:
        libc_version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):  # not glibc (musl has no such name)
        return
    if not libc_version.startswith("glibc"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        if not libc.mallopt(_M_ARENA_MAX, 1):
            log.debug("mallopt(M_ARENA_MAX) was refused")
    except (OSError, AttributeError) as exc:  # no symbol, no libc: keep glibc's default
        log.debug("cannot limit malloc arenas: %s", exc)


def _drop_aiohttp_default_tls() -> None:
    """aiohttp imported without its default TLS contexts' certificate stores and without zstd (see above)."""
    if "aiohttp.connector" not in sys.modules:
        with _no_certificate_loading(), _hidden(_ZSTD_MODULES):
            import aiohttp.connector  # its import-time contexts, built without a certificate store; no zstd
    import aiohttp.connector

    # Verifies certificates and host names, with no CA loaded: every handshake through it fails.
    trusts_nothing = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for name in ("_SSL_CONTEXT_VERIFIED", "_SSL_CONTEXT_UNVERIFIED"):
        if isinstance(getattr(aiohttp.connector, name, None), ssl.SSLContext):
            setattr(aiohttp.connector, name, trusts_nothing)


@contextlib.contextmanager
def _hidden(names: tuple[str, ...]) -> Iterator[None]:
    """For the length of the block, importing any of ``names`` fails as if it were not installed (unless loaded)."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # the import system's "not importable" marker
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]


@contextlib.contextmanager
def _no_certificate_loading() -> Iterator[None]:
    """For the length of the block, new TLS contexts load no certificate store (they then trust nothing)."""
    create, load = ssl.create_default_context, ssl.SSLContext.set_default_verify_paths

    def bare(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names; no CA loaded

    ssl.create_default_context = bare
    ssl.SSLContext.set_default_verify_paths = lambda self: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        ssl.create_default_context = create
        ssl.SSLContext.set_default_verify_paths = load  # type: ignore[method-assign]
