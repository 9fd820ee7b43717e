"""Cost estimates in USD, from the price tables bundled with ``genai-prices``.

What the tables give us (genai-prices 0.2.x): per-model input, output, cache-read and cache-write prices; a separate
one-hour cache-write price for Anthropic models (2x input, where the five-minute write is 1.25x); prices that
changed over time (``at``); long-context tiers chosen by total input. What they do not: OpenAI has no cache-write
price (writes are not billed there); a write whose TTL the upstream did not report is priced at the five-minute
rate; batch / flex / priority service tiers are not applied (we price the standard tier); server-tool fees (web
search) are not counted.

No network, ever: genai-prices only fetches newer tables when someone starts its ``UpdatePrices`` background task.
Headway never does, so every estimate reads the tables shipped inside the installed package, and a stale table
means a slightly stale estimate, never a stalled request.

Subscription accounts (ChatGPT Plus/Pro) are not billed per token: they cost 0.0.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Literal, get_args

import genai_prices

from proxy.wire.usage import Usage

__all__ = ["Billing", "estimate_cost"]

Billing = Literal["metered", "subscription"]

_log = logging.getLogger(__name__)


def estimate_cost(
    provider: str,
    model: str,
    usage: Usage,
    *,
    at: datetime | None = None,
    billing: str = "metered",
) -> float | None:
    """The estimated price in USD of ``usage`` on ``model`` at ``provider`` (``"anthropic"`` or ``"openai"``).

    ``at`` is when the request ran (naive means UTC; default now). Returns 0.0 for ``billing="subscription"``, and
    None when the provider or model is unknown to the price tables or the usage cannot be priced.
    """
    if billing not in get_args(Billing):
        raise ValueError(f"unknown billing {billing!r}; expected one of {get_args(Billing)}")
    if billing == "subscription":
        return 0.0
    if not model:
        return None
    try:
        calculation = genai_prices.calc_price(
            _to_price_usage(usage),
            model,
            provider_id=provider,
            genai_request_timestamp=at,
        )
    except LookupError:
        _log.debug("no price known for %s model %r", provider, model)
        return None
    except ValueError as exc:
        _log.warning("cannot price %s model %r with %r: %s", provider, model, usage, exc)
        return None
    return float(calculation.total_price)


def _to_price_usage(usage: Usage) -> genai_prices.Usage:
    """Translate to genai-prices' usage, where ``input_tokens`` counts *all* input and the cache counts are parts of
    it (and ``cache_write_tokens`` is the whole of which the 5m / 1h writes are parts)."""
    write_1h = usage.cache_write_1h_tokens
    write_5m = usage.cache_write_5m_tokens
    writes = max(usage.cache_write_tokens, write_5m + write_1h)
    output = usage.output_tokens
    counts = {
        "input_tokens": usage.input_tokens + usage.cache_read_tokens + writes,
        "output_tokens": output,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": writes,
        "cache_write_5m_tokens": write_5m,
        "cache_write_1h_tokens": write_1h,
        "output_reasoning_tokens": min(usage.reasoning_tokens, output),
    }
    return genai_prices.Usage(**{key: value for key, value in counts.items() if value})
