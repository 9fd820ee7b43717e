"""Which proxy a request to an upstream goes through: the environment's, or the system's where it names none.

The variables curl reads (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, ``NO_PROXY``; lower case wins), and when
the environment names no proxy at all, macOS's System Settings or Windows's registry — exactly what
``urllib.request.getproxies`` returns, and so what httpx uses for logins and polling: both clients agree. A proxy
named without a scheme (``proxy.corp:3128``) is an HTTP one, as curl and httpx read it. Read once, at start.
"""

from __future__ import annotations

import logging
import sys
import urllib.request
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

__all__ = ["Proxies"]

log = logging.getLogger("headway.upstream")


class Proxies:
    """The proxy for each upstream URL (None: direct), remembered per scheme and host."""

    def __init__(
        self, environ: Mapping[str, str], system: Callable[[], Mapping[str, str]] | None = None
    ) -> None:
        self._proxies = _normalized(_from_variables(environ) or (system or _system_settings)())
        self._of: dict[tuple[str, str], str | None] = {}

    def for_url(self, url: str) -> str | None:
        if not self._proxies:
            return None
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        if key not in self._of:
            host = parts.hostname or ""
            # NO_PROXY matching as urllib does it (undocumented in typeshed, public in the module since 3.2).
            bypass = urllib.request.proxy_bypass_environment(host, self._proxies)  # type: ignore[attr-defined]
            self._of[key] = None if bypass else self._proxies.get(parts.scheme) or self._proxies.get("all")
        return self._of[key]


def _from_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """``{"https": url, "http": url, "all": url, "no": "host,…"}`` from ``*_PROXY`` variables (lower case wins)."""
    proxies: dict[str, str] = {}
    for name in sorted(environ, key=lambda n: n.islower()):  # upper case first, so lower case overrides it
        value = environ[name]
        if value and name.lower().endswith("_proxy"):
            proxies[name.lower().removesuffix("_proxy")] = value
    return proxies


def _normalized(proxies: Mapping[str, str]) -> dict[str, str]:
    """A proxy named without a scheme is an HTTP one (``NO_PROXY``'s host list is left as it is)."""
    return {
        key: value if key == "no" or "://" in value else f"http://{value}" for key, value in proxies.items()
    }


def _system_settings() -> Mapping[str, str]:
    """The proxies set in macOS's System Settings or Windows's registry (none elsewhere)."""
    name = {"darwin": "getproxies_macosx_sysconf", "win32": "getproxies_registry"}.get(sys.platform)
    read = getattr(urllib.request, name, None) if name is not None else None
    if not callable(read):
        return {}
    try:
        found = read()
    except Exception as exc:  # a broken system setting must not stop the gateway
        log.warning("cannot read the system's proxy settings: %s", exc)
        return {}
    return {str(k).lower(): str(v) for k, v in found.items() if v} if isinstance(found, Mapping) else {}
