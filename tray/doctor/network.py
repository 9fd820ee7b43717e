"""``doctor --network``: each upstream reachable — its name resolves, TLS is accepted, one unauthenticated request
answers (any HTTP status counts: 401 means the service is there)."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx

from proxy import __version__
from proxy.config.settings import Settings, SettingsError, effective_upstreams
from proxy.logs import redact
from proxy.wire.tls import CertificatesUnusable, client_context

from . import Check
from .upstreams import unusable

__all__ = ["checks"]

TIMEOUT = 8.0

_PATHS = {
    "anthropic": "/v1/models",
    "openai": "/v1/models",
    "chatgpt": "/",
    "openai_auth": "/.well-known/openid-configuration",
}


def _one(name: str, base: str, verify: ssl.SSLContext) -> Check:
    check = f"upstream {name}"
    parts = urlsplit(base)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return Check(
            check,
            "fail",
            f"{host}: the name does not resolve ({exc.strerror or exc})",
            "check DNS / your network",
        )
    try:
        response = httpx.get(
            base.rstrip("/") + _PATHS.get(name, "/"),
            timeout=TIMEOUT,
            headers={"User-Agent": f"headway/{__version__}"},
            follow_redirects=False,
            trust_env=True,
            verify=verify,
        )
    except httpx.ConnectError as exc:
        message = redact(str(exc))
        if "CERTIFICATE" in message.upper() or "SSL" in message.upper():
            return Check(
                check,
                "fail",
                f"{host}: TLS failed: {message}",
                "a proxy or firewall intercepts TLS? set SSL_CERT_FILE to its CA",
            )
        return Check(
            check, "fail", f"{host}: cannot connect: {message}", "check your network, firewall or HTTPS_PROXY"
        )
    except httpx.TimeoutException:
        return Check(
            check,
            "fail",
            f"{host}: no answer within {TIMEOUT:.0f} s",
            "check your network, firewall or HTTPS_PROXY",
        )
    except httpx.HTTPError as exc:
        return Check(check, "fail", f"{host}: {redact(str(exc))}", "check your network")
    tls = "TLS ok, " if parts.scheme == "https" else ""
    return Check(check, "ok", f"{host}: resolves, {tls}answered HTTP {response.status_code}")


def checks(settings: Settings, environ: Mapping[str, str]) -> list[Check]:
    try:
        upstreams = effective_upstreams(settings, environ).urls()
    except SettingsError as exc:  # no request is made to a URL that cannot be used
        return [unusable("network", exc)]
    try:
        verify = client_context()  # the gateway's: certifi, or SSL_CERT_FILE / SSL_CERT_DIR
    except CertificatesUnusable as exc:  # the certificates check says so; no upstream can be verified
        return [Check("network", "fail", f"no upstream asked: {exc}", exc.fix)]
    with ThreadPoolExecutor(len(upstreams)) as pool:
        return list(pool.map(lambda item: _one(item[0], item[1], verify), upstreams.items()))
