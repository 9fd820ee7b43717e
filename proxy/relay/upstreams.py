"""The upstream allowlist: which provider origins the relay Worker may call.

``headway relay setup`` binds :func:`relay_origins` (the Anthropic, OpenAI and ChatGPT bases in force, environment
overrides and per-account ``base_url`` included) as the Worker's ``RELAY_UPSTREAMS`` and records them in
``relay.upstreams``. The Worker refuses any other upstream with 403 ``upstream_not_allowed``; the gateway does not
even try: :func:`origin_of` an outgoing URL not in ``relay.upstreams`` goes direct. :func:`allowlist_drift` says what
changed since the last setup, for ``headway relay status`` and the page.

Origins are compared parsed (scheme, host, port; the default port dropped), as the Worker's ``URL.origin`` does;
a URL with user info (``https://api.anthropic.com@elsewhere/``) has no acceptable origin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from proxy.config.settings import Settings, effective_upstreams

__all__ = ["AllowlistDrift", "allowlist_drift", "origin_of", "relay_origins"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, lowercased, default port dropped; None if it has none."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    scheme = parsed.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parsed.host or parsed.userinfo:
        return None
    host = parsed.host.lower()
    if ":" in host:
        host = f"[{host}]"
    port = parsed.port
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def relay_origins(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """The provider origins agent requests may go to with these settings in this environment, sorted."""
    upstreams = effective_upstreams(settings, environ)
    urls = [upstreams.anthropic, upstreams.openai, upstreams.chatgpt]
    urls += [account.base_url for account in settings.accounts if account.base_url]
    return sorted({origin for origin in map(origin_of, urls) if origin is not None})


@dataclass(frozen=True)
class AllowlistDrift:
    """How the Worker's list (bound at the last setup) differs from the origins Headway uses now."""

    bound: list[str] | None  # None: deployed by a Headway without the allowlist
    wanted: list[str]
    missing: list[str]  # used now, not bound: those requests go direct until setup runs again

    @property
    def out_of_date(self) -> bool:
        return self.bound is None or bool(self.missing)

    def message(self) -> str | None:
        if self.bound is None:
            return "the Worker predates the upstream allowlist: run `headway relay setup` to update it"
        if self.missing:
            return (
                f"the Worker's upstream list is out of date (missing {', '.join(self.missing)}): requests there go "
                "direct until you run `headway relay setup`"
            )
        return None


def allowlist_drift(bound: Sequence[str] | None, wanted: Sequence[str]) -> AllowlistDrift:
    bound_set = {origin_of(url) for url in bound} if bound is not None else set()
    missing = [origin for origin in wanted if origin not in bound_set]
    return AllowlistDrift(list(bound) if bound is not None else None, list(wanted), missing)
