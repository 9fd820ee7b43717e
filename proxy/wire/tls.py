"""The certificate context both HTTP clients verify upstreams with, loaded beside the rest of a start.

One context serves the engine's httpx client and the hot path's aiohttp client (each would load the CA bundle
again: about 1.2 MB). It is httpx's default: certifi's bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set.

Loading the bundle is OpenSSL parsing some 140 PEM certificates: about 20 ms, which the engine used to spend on its
loop just before listening. OpenSSL parses without holding Python's lock, so the engine starts the load on a thread
of its own as its start begins (:func:`load_in_background`) and reads the keychain and opens the request log
meanwhile; its loop then takes the finished context. The environment is read when the load starts.

A bundle that cannot be loaded (``SSL_CERT_FILE`` naming a file that is gone, or one that holds no certificate) is a
:class:`CertificatesUnusable` naming the variable and the file: the engine's start fails with it, and the command
says what to fix. (OpenSSL's own error says only "No such file or directory", with no file name.)
"""

from __future__ import annotations

import os
import ssl
import threading
from concurrent.futures import Future

__all__ = ["CertificatesUnusable", "client_context", "load_in_background", "source"]


class CertificatesUnusable(Exception):
    """The certificates to trust cannot be loaded from where the environment (or certifi) says they are."""

    fix = (
        "point SSL_CERT_FILE at a readable PEM file of the certificates to trust (a company proxy's root), or unset "
        "it (and SSL_CERT_DIR) to trust the usual public certificates"
    )

    def __init__(self, source: str, reason: str) -> None:
        self.source, self.reason = source, reason
        super().__init__(f"cannot load the certificates to trust from {source}: {reason}")


def client_context() -> ssl.SSLContext:
    """A new context, loaded now."""
    import httpx

    try:
        return httpx.create_ssl_context(trust_env=True)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise CertificatesUnusable(source(), getattr(exc, "strerror", None) or str(exc)) from exc


def source() -> str:
    """Where httpx.create_ssl_context looks, in its order."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    import certifi

    return f"certifi's bundle ({certifi.where()})"


def load_in_background() -> Future[ssl.SSLContext]:
    """:func:`client_context` on a daemon thread; the future holds the context or the error."""
    future: Future[ssl.SSLContext] = Future()

    def load() -> None:
        try:
            future.set_result(client_context())
        except BaseException as exc:  # the engine's start reports it
            future.set_exception(exc)

    threading.Thread(target=load, name="headway-tls-load", daemon=True).start()
    return future
