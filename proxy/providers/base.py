"""What every provider adapter does: build the upstream request, read quota, judge stream events.

An adapter is stateless; per-request facts arrive in :class:`Incoming`, per-account facts in the Account and its
secret, the live settings with each call that needs them. The forwarder (``proxy.gateway.forward``) owns the request's life
and asks the adapter at each step; the forwarder and the engine never name an account kind — what differs between
providers (an error that means "out of quota", a sign-in that must be redone, a usage endpoint, a model list of its
own) is asked of the adapter here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from proxy import __version__
from proxy.config.settings import Account, Settings, UpstreamSettings
from proxy.routing.health import Block
from proxy.routing.quota import Window
from proxy.routing.sessions import AGENT_INTERNAL_HEADERS, SessionInfo
from proxy.wire.request_budget import Receive
from proxy.wire.sse import SSEEvent

__all__ = [
    "Exhaustion",
    "Incoming",
    "Outgoing",
    "ProviderAdapter",
    "ResponseTransformer",
    "StreamProtocol",
    "Verdict",
    "forwardable_headers",
    "join_url",
]

StreamProtocol = Literal["anthropic", "openai-responses", "openai-chat"]

# Never forwarded upstream: hop-by-hop headers, the agent's credentials for Headway, and agent-internal headers.
_DROP_REQUEST = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",  # a compressed body is decoded on arrival (proxy/wire/content_coding.py), sent plain
        "accept-encoding",
        "authorization",
        "x-api-key",
        "cookie",
        "origin",
        "referer",
        *AGENT_INTERNAL_HEADERS,
    }
)


@dataclass
class Incoming:
    """An agent's request, buffered."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    protocol: StreamProtocol
    family: Literal["anthropic", "openai"]
    session: SessionInfo = field(default_factory=SessionInfo)
    purpose: str = "agent"
    cache_change: str | None = None
    # The model name the agent sent when it was an alias (settings models.aliases); ``json`` holds the real one.
    requested_model: str | None = None
    member: str | None = None  # the team member whose key the request carried (None: the local access key)
    # The agent's ASGI receive channel once the body is read: the forwarder watches it to stop when the agent hangs up.
    receive: Receive | None = field(default=None, repr=False, compare=False)

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and self.json.get("stream") is True

    @property
    def model(self) -> str | None:
        value = self.json.get("model") if isinstance(self.json, dict) else None
        return value if isinstance(value, str) else None


@dataclass
class Outgoing:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes


@dataclass(frozen=True)
class Verdict:
    """What a stream event means for the pre-content hold.

    kind: ``meta`` (hold and keep reading), ``content`` (commit: bytes go to the agent), ``error``.
    For errors, action: ``fallback`` (next account, cooling this one down), ``retry`` (transient: same account
    again, bounded), ``pass`` (the agent's own problem: let it through).
    """

    kind: Literal["meta", "content", "error"]
    action: Literal["fallback", "retry", "pass"] = "pass"
    reason: str = ""


@dataclass(frozen=True)
class Exhaustion:
    """An error answer that means the account is out of quota: exhausted until ``resets_at`` (None: not said)."""

    reason: str
    resets_at: float | None


def join_url(base: str, path: str, query: str = "") -> str:
    """``base`` (normalised by :func:`proxy.wire.upstream_url.normalize_base_url`) + the agent's path and query."""
    return f"{base.rstrip('/')}{path}" + (f"?{query}" if query else "")


def forwardable_headers(headers: Mapping[str, str]) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k not in _DROP_REQUEST}
    agent = out.get("user-agent")
    # Headway identifies itself honestly, beside the calling agent's own identity (which it never hides).
    out["user-agent"] = f"{agent} headway/{__version__}" if agent else f"headway/{__version__}"
    return out


class ResponseTransformer(ABC):
    """Turns the upstream's SSE events into what the agent asked for.

    Streaming transformers (``aggregate`` False) return bytes per event as they arrive; aggregating ones collect the
    whole stream and answer once with ``result()`` (status, body) — an agent that did not ask to stream.
    """

    aggregate: bool
    content_type: str

    @abstractmethod
    def feed(self, event: SSEEvent) -> bytes: ...

    @abstractmethod
    def finish(self) -> bytes: ...

    @abstractmethod
    def result(self) -> tuple[int, bytes]: ...


class ProviderAdapter(ABC):
    kind: str
    billing: Literal["metered", "subscription"] = "metered"
    # The secret is a sign-in (OAuth tokens, refreshed by proxy.auth.TokenManager), not an API key: an
    # authentication failure means the account needs a new login.
    oauth: bool = False
    # The provider has a usage endpoint: poll_usage() reads the account's quota windows while it is idle.
    polls_usage: bool = False
    # The provider lists its models itself (list_models()); otherwise GET /v1/models is forwarded upstream.
    own_model_list: bool = False
    # What to tell the user when the account's sign-in is refused for good.
    relogin_hint: str = "replace the key with `headway accounts set-key`"

    def missing_secret(self, account: Account) -> Block:
        """The account's state when the keychain holds no secret for it."""
        return Block("no_secret", f"no API key in the keychain: run `headway accounts set-key {account.id}`")

    def classify_error(self, status: int, body: bytes, now: float) -> Exhaustion | None:
        """An error answer (status, first bytes of its body) that exhausts the account until a reset, else None."""
        return None

    async def poll_usage(
        self, client: httpx.AsyncClient, account: Account, token: str, upstreams: UpstreamSettings
    ) -> tuple[list[Window], str | None]:
        """The account's quota windows and plan type (only when ``polls_usage``); raises httpx.HTTPError / ValueError."""
        raise NotImplementedError

    def usage_poll_seconds(self, settings: Settings) -> float:
        """How often an idle account's usage is polled (only when ``polls_usage``)."""
        return 300.0

    async def list_models(
        self, client: httpx.AsyncClient, account: Account, token: str | None, upstreams: UpstreamSettings
    ) -> list[dict[str, Any]]:
        """OpenAI-style model entries (only when ``own_model_list``); never raises for an unreachable upstream."""
        return []

    def transformer(self, incoming: Incoming) -> ResponseTransformer | None:
        """None: the upstream's bytes go to the agent unchanged."""
        return None

    def streams(self, incoming: Incoming) -> bool:
        """Whether the upstream answers this request as an event stream (its headers then arrive at once)."""
        return incoming.stream

    def upstream_protocol(self, incoming: Incoming) -> StreamProtocol:
        """The protocol the upstream answers in (it differs from the agent's when the adapter translates)."""
        return incoming.protocol

    def plan_type(self, headers: Mapping[str, str]) -> str | None:
        return None

    @abstractmethod
    def base_url(self, account: Account, upstreams: UpstreamSettings) -> str: ...

    @abstractmethod
    def build(
        self,
        incoming: Incoming,
        account: Account,
        secret: str,
        upstreams: UpstreamSettings,
        settings: Settings,
    ) -> Outgoing: ...

    @abstractmethod
    def quota_windows(self, headers: Mapping[str, str], now: float) -> list[Window]: ...

    @abstractmethod
    def classify_event(self, protocol: StreamProtocol, event: SSEEvent) -> Verdict: ...
