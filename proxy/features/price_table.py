"""List prices, USD per million tokens, as Anthropic and OpenAI publish them for the standard tier.

Kept by hand and small on purpose: Headway prices the models coding agents use, and a model that is not here is
"price unknown" (its tokens are still counted) rather than a guess. To add a model, add a line; a dated snapshot
(``claude-sonnet-4-5-20250929``) and a ``provider/`` prefix find their base entry, and the longest matching prefix
wins (``gpt-5-mini`` before ``gpt-5``). Checked against the providers' pricing pages; what is and is not counted
is in :mod:`proxy.features.pricing`.

Anthropic bills cache reads at 0.1x input, five-minute cache writes at 1.25x and one-hour writes at 2x
(``shared/reference/anthropic.md``), so its rows carry input and output only. Sonnet 4 and 4.5 bill a request whose
input (cached parts included) exceeds 200k tokens at the long-context rates, for the whole request. OpenAI bills
cached input at its own rate and bills no cache writes (a written prompt is ordinary input).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ANTHROPIC", "OPENAI", "LongContext", "ModelPrice"]


@dataclass(frozen=True, slots=True)
class LongContext:
    above_input_tokens: int
    input: float
    output: float


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input: float
    output: float
    cached_input: float | None = None  # OpenAI: the cached-input rate (None: not discounted)
    long_context: LongContext | None = None


_SONNET_LONG = LongContext(above_input_tokens=200_000, input=6.0, output=22.5)

ANTHROPIC: dict[str, ModelPrice] = {
    "claude-opus-4-5": ModelPrice(5.0, 25.0),
    "claude-opus-4-1": ModelPrice(15.0, 75.0),
    "claude-opus-4": ModelPrice(15.0, 75.0),
    "claude-sonnet-4-5": ModelPrice(3.0, 15.0, long_context=_SONNET_LONG),
    "claude-sonnet-4": ModelPrice(3.0, 15.0, long_context=_SONNET_LONG),
    "claude-haiku-4-5": ModelPrice(1.0, 5.0),
    "claude-3-7-sonnet": ModelPrice(3.0, 15.0),
    "claude-3-5-sonnet": ModelPrice(3.0, 15.0),
    "claude-3-5-haiku": ModelPrice(0.8, 4.0),
    "claude-3-opus": ModelPrice(15.0, 75.0),
    "claude-3-haiku": ModelPrice(0.25, 1.25),
}

OPENAI: dict[str, ModelPrice] = {
    "gpt-5.1-codex-mini": ModelPrice(0.25, 2.0, 0.025),
    "gpt-5.1-codex": ModelPrice(1.25, 10.0, 0.125),
    "gpt-5.1": ModelPrice(1.25, 10.0, 0.125),
    "gpt-5-codex": ModelPrice(1.25, 10.0, 0.125),
    "gpt-5-pro": ModelPrice(15.0, 120.0),
    "gpt-5-mini": ModelPrice(0.25, 2.0, 0.025),
    "gpt-5-nano": ModelPrice(0.05, 0.4, 0.005),
    "gpt-5": ModelPrice(1.25, 10.0, 0.125),
    "gpt-4.1-mini": ModelPrice(0.4, 1.6, 0.1),
    "gpt-4.1-nano": ModelPrice(0.1, 0.4, 0.025),
    "gpt-4.1": ModelPrice(2.0, 8.0, 0.5),
    "gpt-4o-mini": ModelPrice(0.15, 0.6, 0.075),
    "gpt-4o": ModelPrice(2.5, 10.0, 1.25),
    "codex-mini-latest": ModelPrice(1.5, 6.0, 0.375),
    "o4-mini": ModelPrice(1.1, 4.4, 0.275),
    "o3-mini": ModelPrice(1.1, 4.4, 0.55),
    "o3-pro": ModelPrice(20.0, 80.0),
    "o3": ModelPrice(2.0, 8.0, 0.5),
    "o1-mini": ModelPrice(1.1, 4.4, 0.55),
    "o1": ModelPrice(15.0, 60.0, 7.5),
}
