"""Prices for the cache analysis: the recorded usage, and the same prompts under no cache / 5-minute / 1-hour caching.

Every figure is priced with :func:`proxy.features.pricing.estimate_cost` at *current* prices (genai-prices' bundled tables),
so the four numbers of a turn are comparable even when the log's own estimate was made with older tables.

Price cards. For each (provider, model) the per-token prices of uncached input, cache read, 5-minute write, 1-hour
write and output are read off ``estimate_cost`` with 1,000-token probes (below any long-context tier). When the
table has all of them, a turn is priced by ``estimate_cost`` directly (which applies long-context tiers to the
turn's total input). When it lacks a cache price for an Anthropic model — a read priced like uncached input, or a
1-hour write priced like a 5-minute one — the card is *derived* from the base input price with Anthropic's
multipliers (read 0.1x, 5-minute write 1.25x, 1-hour write 2x) and turns are priced flat from the card (no tiers).
OpenAI bills no cache writes, so its write prices are the uncached price and nothing is derived.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.features.pricing import estimate_cost
from proxy.wire.usage import Usage

__all__ = ["ANTHROPIC_MULTIPLIERS", "PriceCard", "Pricer"]

ANTHROPIC_MULTIPLIERS = {"read": 0.1, "write_5m": 1.25, "write_1h": 2.0}
"""Anthropic's cache price multipliers on the base input price (docs: prompt caching)."""

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
    derived: tuple[str, ...] = ()
    """Prices not in the table, derived from ``input`` with :data:`ANTHROPIC_MULTIPLIERS`."""

    def flat(self, usage: Usage) -> float:
        """``usage`` priced flat from this card (writes of unknown TTL at the 5-minute price)."""
        unknown_ttl = max(
            usage.cache_write_tokens - usage.cache_write_5m_tokens - usage.cache_write_1h_tokens, 0
        )
        return (
            usage.input_tokens * self.input
            + usage.cache_read_tokens * self.cache_read
            + (usage.cache_write_5m_tokens + unknown_ttl) * self.cache_write_5m
            + usage.cache_write_1h_tokens * self.cache_write_1h
            + usage.output_tokens * self.output
        ) / 1_000_000


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
        if card.derived:
            return card.flat(usage)
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
    derived: list[str] = []
    if provider == "anthropic":
        if read is None or _same(read, base):
            read = base * ANTHROPIC_MULTIPLIERS["read"]
            derived.append("cache_read")
        if write_5m is None or _same(write_5m, base):
            write_5m = base * ANTHROPIC_MULTIPLIERS["write_5m"]
            derived.append("cache_write_5m")
        if write_1h is None or _same(write_1h, write_5m) or _same(write_1h, base):
            write_1h = base * ANTHROPIC_MULTIPLIERS["write_1h"]
            derived.append("cache_write_1h")
    return PriceCard(
        provider=provider,
        model=model,
        input=base,
        cache_read=base if read is None else read,
        cache_write_5m=base if write_5m is None else write_5m,
        cache_write_1h=base if write_1h is None else write_1h,
        output=output,
        derived=tuple(derived),
    )


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1.0)
