"""Prices for the cache analysis: the recorded usage, and the same prompts under no cache / 5-minute / 1-hour caching.

Every figure is priced with :func:`proxy.features.pricing.estimate_cost` at *current* prices (Headway's price
table), so the four numbers of a turn are comparable even when the log's own estimate was made with older prices.
A :class:`PriceCard` shows, per model, the per-million prices the analysis used (read off ``estimate_cost`` with
1,000-token probes, below any long-context tier); turns are priced by ``estimate_cost`` itself, which applies the
long-context rates to a turn's total input. OpenAI bills no cache writes: a written prompt is billed as input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.features.pricing import estimate_cost
from proxy.wire.usage import Usage

__all__ = ["PriceCard", "Pricer"]

_PROBE = 1000


@dataclass(frozen=True, slots=True)
class PriceCard:
    """USD per million tokens for one model, as used by the analysis."""

    provider: str
    model: str
    input: float
    cache_read: float
    cache_write_5m: float
    cache_write_1h: float
    output: float


@dataclass
class Pricer:
    """Prices usages per (provider, model), caching each model's :class:`PriceCard`. Not thread-safe."""

    _cards: dict[tuple[str, str], PriceCard | None] = field(default_factory=dict)

    def card(self, provider: str, model: str | None) -> PriceCard | None:
        """The model's card, or None when the price tables do not know the model."""
        if not model:
            return None
        key = (provider, model)
        if key not in self._cards:
            self._cards[key] = _probe(provider, model)
        return self._cards[key]

    def price(self, provider: str, model: str | None, usage: Usage) -> float | None:
        """USD for ``usage``; None when the model has no price."""
        card = self.card(provider, model)
        if card is None or model is None:
            return None
        return estimate_cost(provider, model, usage)

    def cards(self) -> list[PriceCard]:
        """Every card looked up so far (the models the analysis priced)."""
        return [card for card in self._cards.values() if card is not None]


def _probe(provider: str, model: str) -> PriceCard | None:
    def per_million(usage: Usage) -> float | None:
        cost = estimate_cost(provider, model, usage)
        return None if cost is None else cost * 1_000_000 / _PROBE

    base = per_million(Usage(input_tokens=_PROBE))
    if base is None:
        return None
    read = per_million(Usage(cache_read_tokens=_PROBE))
    write_5m = per_million(Usage(cache_write_tokens=_PROBE, cache_write_5m_tokens=_PROBE))
    write_1h = per_million(Usage(cache_write_tokens=_PROBE, cache_write_1h_tokens=_PROBE))
    output = per_million(Usage(output_tokens=_PROBE)) or 0.0
    return PriceCard(
        provider=provider,
        model=model,
        input=base,
        cache_read=base if read is None else read,
        cache_write_5m=base if write_5m is None else write_5m,
        cache_write_1h=base if write_1h is None else write_1h,
        output=output,
    )
