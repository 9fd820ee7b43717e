"""The feature protocol: how cache control, dumps, pricing, the request log, keep-warm, the relay, metrics and
budgets plug into the forwarder, each in a file of its own.

Modelled on mitmproxy's addons: a feature is an object with a few optional hooks; the forwarder calls, in the
order the engine lists the features, every feature that overrides a hook (it asks once, when it is built, so a
hook nobody overrides costs nothing per request).

One request's life, with the hooks it passes::

    admit(request)                     may refuse the whole request (a HeadwayError in the agent's shape)
    for each candidate account:
        allows(request, account, now)  may skip this account (a Block, shown like any other block)
        prepare(request, account)      may rewrite the request for this account (Anthropic cache modes)
        open(out, request, account)    may send it itself (the relay; a WebSocket upstream); first non-None wins
    on_success(request, account)       the answer is a 2xx and is going to the agent (keep-warm remembers it)
    on_complete(done)                  after the last byte: the whole record (request log, dumps, metrics)

Hooks run on the engine loop. ``allows``, ``prepare``, ``on_success`` and ``on_complete`` are synchronous and must
be quick: a feature with slow work (disk, network) hands it to its own thread or task. ``configure`` is called at
start and after every settings change; ``run`` is a background task the engine starts with the loop and cancels
on stop; ``aclose`` releases what the feature holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import httpx

    from proxy.config.settings import Account, Settings
    from proxy.providers.base import Incoming, Outgoing
    from proxy.routing.health import Block
    from proxy.wire.errors import HeadwayError
    from proxy.wire.usage import Usage

__all__ = ["HOOKS", "Completed", "Feature", "Features", "TransportFailed"]

HOOKS = ("admit", "allows", "prepare", "open", "on_success", "on_complete")


class TransportFailed(Exception):
    """Raised by an ``open`` hook whose own path failed before the response started (nothing reached the agent).

    With ``fallback`` the next transport (finally the direct HTTP client) sends the request; without it the attempt
    on this account fails and the forwarder moves on as for an unreachable upstream.
    """

    def __init__(self, message: str, *, fallback: bool = True) -> None:
        super().__init__(message)
        self.fallback = fallback


@dataclass(frozen=True)
class Completed:
    """A finished request, as features see it after its last byte went out.

    ``account`` is the account whose answer reached the agent (None when none did); ``chain`` lists every attempt
    (``"<account id>:<status or reason>"``); ``upstream_body`` is the body as sent upstream (after every rewrite);
    ``transcript`` the raw upstream bytes when a feature asked for them (:meth:`Feature.wants_transcript`).
    """

    request: Incoming
    account: Account | None
    status: int
    usage: Usage | None
    model: str | None
    finished_at: float  # epoch seconds (the forwarder's clock)
    latency_ms: float
    ttfb_ms: float | None
    chain: tuple[str, ...] = ()
    error: str | None = None
    upstream_body: bytes | None = None
    upstream_request_id: str | None = None
    billing: Literal["metered", "subscription"] | None = None
    transcript: bytes | None = field(default=None, repr=False)


class Feature:
    """A feature of the gateway. Every hook is optional: override only what the feature needs."""

    name = "feature"

    def configure(self, settings: Settings) -> None:
        """The settings in force: at start and after every change (live)."""

    def admit(self, request: Incoming) -> HeadwayError | None:
        """A reason to refuse the whole request before any account is tried, or None."""
        return None

    def allows(self, request: Incoming, account: Account, now: float) -> Block | None:
        """A reason to skip this account for this request (the next one is tried), or None."""
        return None

    def prepare(self, request: Incoming, account: Account) -> Incoming:
        """The request to send to this account; return it unchanged when the feature has nothing to do."""
        return request

    async def open(self, out: Outgoing, request: Incoming, account: Account) -> httpx.Response | None:
        """Send the upstream request by the feature's own path and return the streaming response, or None to
        leave it to the next feature (and finally to the direct HTTP client)."""
        return None

    def on_success(self, request: Incoming, account: Account) -> None:
        """A 2xx answer from ``account`` is going to the agent."""

    def on_complete(self, done: Completed) -> None:
        """The request is over (answered, failed or abandoned)."""

    def wants_transcript(self) -> bool:
        """Whether :attr:`Completed.transcript` should carry the raw upstream bytes (costs memory)."""
        return False

    async def run(self) -> None:
        """A background task for the feature's own upkeep; returns at once when there is none."""

    async def aclose(self) -> None:
        """Release what the feature holds (threads, connections)."""


def _overrides(feature: Feature, hook: str) -> bool:
    return getattr(type(feature), hook) is not getattr(Feature, hook)


class Features:
    """The engine's features in order, with each hook's implementers looked up once."""

    def __init__(self, features: list[Feature]) -> None:
        self.all = tuple(features)
        self.admit = tuple(f for f in self.all if _overrides(f, "admit"))
        self.allows = tuple(f for f in self.all if _overrides(f, "allows"))
        self.prepare = tuple(f for f in self.all if _overrides(f, "prepare"))
        self.open = tuple(f for f in self.all if _overrides(f, "open"))
        self.on_success = tuple(f for f in self.all if _overrides(f, "on_success"))
        self.on_complete = tuple(f for f in self.all if _overrides(f, "on_complete"))
        self.wants_transcript: Callable[[], bool] = lambda: any(f.wants_transcript() for f in self.all)

    def get(self, name: str) -> Feature | None:
        return next((f for f in self.all if f.name == name), None)
