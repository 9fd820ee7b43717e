"""The estimated dollars of a finished request, for the features that need them on the loop (metrics, member
spend caps). Headway's own price table answers in a few microseconds, so this runs inline in ``on_complete``."""

from __future__ import annotations

from proxy.features.base import Completed
from proxy.features.pricing import estimate_cost

__all__ = ["request_cost"]


def request_cost(done: Completed) -> float | None:
    """Dollars for ``done``; None when it has no account, model, usage or billing, or the model's price is unknown."""
    account, model, usage = done.account, done.model, done.usage
    if account is None or not model or usage is None or done.billing is None:
        return None
    provider = "anthropic" if account.family == "anthropic" else "openai"
    return estimate_cost(provider, model, usage, billing=done.billing)
