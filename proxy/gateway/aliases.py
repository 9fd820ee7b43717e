"""Model aliases (settings ``models.aliases``): a name an agent sends, mapped to the real model before routing.

The upstream receives the real model. The body is rewritten in place — only the top-level ``"model"`` value's bytes
change — so everything else the agent sent reaches the upstream byte for byte; when that value cannot be found
unambiguously in the bytes, the body is serialised again from its parsed form.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from proxy.providers.base import Incoming

__all__ = ["resolve_alias"]


def resolve_alias(incoming: Incoming, aliases: Mapping[str, str]) -> Incoming:
    """``incoming`` asking for the real model when its model is an alias (``requested_model`` keeps the alias)."""
    requested = incoming.model
    if requested is None or requested not in aliases:
        return incoming
    target = aliases[requested]
    parsed: dict[str, Any] = dict(incoming.json)
    parsed["model"] = target
    return replace(
        incoming,
        body=_rewrite(incoming.body, requested, target, parsed),
        json=parsed,
        requested_model=requested,
    )


def _rewrite(body: bytes, alias: str, target: str, parsed: dict[str, Any]) -> bytes:
    old = json.dumps(alias).encode()
    found = list(re.finditer(rb'"model"\s*:\s*' + re.escape(old), body))
    if len(found) == 1:
        end = found[0].end()
        candidate = body[: end - len(old)] + json.dumps(target, ensure_ascii=False).encode() + body[end:]
        try:
            if json.loads(candidate) == parsed:  # the one match was the top-level model, not a nested one
                return candidate
        except ValueError:
            pass
    return json.dumps(parsed, ensure_ascii=False, separators=(",", ":")).encode()
