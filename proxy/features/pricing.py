"""Cost estimates in USD from Headway's own price table (:mod:`proxy.features.price_table`).

Counted: input, output (reasoning tokens are part of output, never extra), cache reads, and Anthropic's cache
writes at the five-minute or one-hour rate (a write whose TTL the upstream did not report is priced at the
five-minute rate); Anthropic's long-context rates for a request above the threshold. Not counted: batch / flex /
priority service tiers (the standard tier is priced), server-tool fees (web search). No network, ever.

Subscription accounts (ChatGPT Plus/Pro) are not billed per token: they cost 0.0. A model the table does not know
costs None — "price unknown" — and its tokens are still counted wherever costs are shown.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal, get_args

from proxy.wire.usage import Usage

if TYPE_CHECKING:
    from proxy.features.price_table import ModelPrice

__all__ = ["Billing", "estimate_cost", "price_of"]

Billing = Literal["metered", "subscription"]

_CACHE_READ = 0.1  # Anthropic: x input
_CACHE_WRITE_5M = 1.25
_CACHE_WRITE_1H = 2.0
_PER_TOKEN = 1e-6  # the table is per million tokens


def _table(provider: str) -> Mapping[str, ModelPrice] | None:
    """The provider's prices; the table is imported when the first cost is computed, not when the gateway starts."""
    from proxy.features import price_table

    return {"anthropic": price_table.ANTHROPIC, "openai": price_table.OPENAI}.get(provider)


@functools.lru_cache(maxsize=256)  # the table is fixed; a gateway prices the same few models all day
def price_of(provider: str, model: str) -> ModelPrice | None:
    """The table's row for ``model`` (a dated snapshot or ``provider/`` prefix finds its base), else None."""
    table = _table(provider)
    if table is None or not model:
        return None
    name = model.rsplit("/", 1)[-1].lower()
    best = max((key for key in table if name == key or name.startswith(key + "-")), key=len, default=None)
    return None if best is None else table[best]


def estimate_cost(provider: str, model: str, usage: Usage, *, billing: str = "metered") -> float | None:
    """The estimated price in USD of ``usage`` on ``model`` at ``provider`` (``"anthropic"`` or ``"openai"``).

    Returns 0.0 for ``billing="subscription"``, and None when the provider or the model is not in the price table.
    """
    if billing not in get_args(Billing):
        raise ValueError(f"unknown billing {billing!r}; expected one of {get_args(Billing)}")
    if billing == "subscription":
        return 0.0
    price = price_of(provider, model)
    if price is None:
        return None
    if provider == "anthropic":
        return _anthropic(price, usage)
    cached = price.input if price.cached_input is None else price.cached_input
    written = usage.cache_write_tokens  # OpenAI reports no writes; a counterfactual write is billed as input
    return (
        (usage.input_tokens + written) * price.input
        + usage.cache_read_tokens * cached
        + usage.output_tokens * price.output
    ) * _PER_TOKEN


def _anthropic(price: ModelPrice, usage: Usage) -> float:
    write_1h = usage.cache_write_1h_tokens
    write_5m = max(usage.cache_write_tokens - write_1h, usage.cache_write_5m_tokens)
    total_input = usage.input_tokens + usage.cache_read_tokens + write_5m + write_1h
    rate_in, rate_out = price.input, price.output
    tier = price.long_context
    if tier is not None and total_input > tier.above_input_tokens:
        rate_in, rate_out = tier.input, tier.output
    return (
        usage.input_tokens * rate_in
        + usage.cache_read_tokens * rate_in * _CACHE_READ
        + write_5m * rate_in * _CACHE_WRITE_5M
        + write_1h * rate_in * _CACHE_WRITE_1H
        + usage.output_tokens * rate_out
    ) * _PER_TOKEN
