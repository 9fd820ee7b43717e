"""Alias resolution: only the top-level model's bytes change; ambiguous bodies are serialised again."""

from __future__ import annotations

import json

from proxy.gateway.aliases import resolve_alias
from proxy.providers.base import Incoming

ALIASES = {"fast": "claude-haiku-4-5", "ünï": "claude-opus-4-1"}


def _incoming(body: bytes) -> Incoming:
    return Incoming(
        method="POST",
        path="/v1/messages",
        query="",
        headers={},
        body=body,
        json=json.loads(body),
        protocol="anthropic",
        family="anthropic",
    )


def test_an_alias_changes_only_the_models_bytes() -> None:
    body = b'{"messages": [{"role": "user", "content": "a  b"}],\n  "model"  :   "fast", "max_tokens": 5}'
    out = resolve_alias(_incoming(body), ALIASES)
    assert out.body == body.replace(b'"fast"', b'"claude-haiku-4-5"')
    assert out.model == "claude-haiku-4-5" and out.requested_model == "fast"


def test_a_nested_model_key_with_the_same_value_is_left_alone() -> None:
    body = json.dumps(
        {
            "model": "fast",
            "messages": [
                {"role": "user", "content": [{"type": "tool_result", "content": {"model": "fast"}}]}
            ],
        }
    ).encode()
    out = resolve_alias(_incoming(body), ALIASES)
    assert json.loads(out.body) == {**json.loads(body), "model": "claude-haiku-4-5"}
    assert out.json["messages"][0]["content"][0]["content"] == {"model": "fast"}


def test_an_escaped_top_level_model_is_found_by_parsing() -> None:
    body = b'{"model": "f\\u0061st", "x": {"model": "fast"}}'
    out = resolve_alias(_incoming(body), ALIASES)
    assert json.loads(out.body) == {"model": "claude-haiku-4-5", "x": {"model": "fast"}}


def test_a_non_ascii_alias_and_no_alias() -> None:
    body = '{"model": "ünï"}'.encode()
    assert json.loads(resolve_alias(_incoming(body), ALIASES).body) == {"model": "claude-opus-4-1"}
    plain = _incoming(b'{"model": "claude-sonnet-4-5"}')
    assert resolve_alias(plain, ALIASES) is plain
    assert resolve_alias(_incoming(b'{"model": 5}'), ALIASES).body == b'{"model": 5}'
