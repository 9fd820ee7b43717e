"""Provider specifics live in proxy/providers and nowhere else: the forwarder and the engine speak only the adapter
interface, and adapters stay stateless (per-request options arrive with each call)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from proxy.config.settings import Account, Settings, UpstreamSettings
from proxy.providers.base import Exhaustion, Incoming
from proxy.providers.registry import build_adapters

ROOT = Path(__file__).resolve().parents[3]
KINDS = frozenset(build_adapters())
CONCRETE = ("proxy.providers.anthropic", "proxy.providers.openai", "proxy.providers.chatgpt")


def _tree(relative: str) -> ast.Module:
    return ast.parse((ROOT / relative).read_text(encoding="utf-8"))


def _engine_class(tree: ast.Module) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Engine")


def _kind_comparisons(node: ast.AST) -> list[str]:
    """`x.kind == "chatgpt"`, `a.kind in (...)` …: an account kind named in a comparison."""
    found = []
    for compare in (n for n in ast.walk(node) if isinstance(n, ast.Compare)):
        for constant in ast.walk(compare):
            if isinstance(constant, ast.Constant) and constant.value in KINDS:
                found.append(f"line {compare.lineno}: {ast.unparse(compare)}")
    return found


def _concrete_imports(tree: ast.Module, package: str) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            absolute = f"{package}.{node.module}" if node.level else node.module
            if absolute.startswith(CONCRETE) or "codex" in absolute:
                found.append(f"line {node.lineno}: {absolute}")
    return found


def _backend_literals(node: ast.AST) -> list[str]:
    """The Codex backend's paths and header names belong to proxy/providers/chatgpt/backend.py."""
    return [
        f"line {n.lineno}: {n.value!r}"
        for n in ast.walk(node)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and ("backend-api" in n.value or n.value == "originator")
    ]


def _provider_settings(node: ast.AST) -> list[str]:
    """`settings.chatgpt…`: a provider's own settings section is read by its adapter, which gets the settings."""
    return [
        f"line {n.lineno}: {ast.unparse(n)}"
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute) and n.attr in KINDS | {"chatgpt"}
    ]


@pytest.mark.parametrize("path", ["proxy/gateway/forward.py", "proxy/engine.py"])
def test_forwarder_and_engine_import_no_concrete_provider(path: str) -> None:
    assert _concrete_imports(_tree(path), "proxy") == []


def test_the_forwarder_never_names_an_account_kind() -> None:
    tree = _tree("proxy/gateway/forward.py")
    assert _kind_comparisons(tree) == []
    assert _backend_literals(tree) == []
    assert _provider_settings(tree) == []


def test_the_engine_never_names_an_account_kind() -> None:
    engine = _engine_class(_tree("proxy/engine.py"))
    assert _kind_comparisons(engine) == []
    assert _backend_literals(engine) == []
    assert _provider_settings(engine) == []


def _incoming() -> Incoming:
    tools = [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]
    body = {"model": "gpt-5", "input": "hi", "tools": tools, "stream": True}
    return Incoming(
        method="POST",
        path="/v1/responses",
        query="",
        headers={},
        body=json.dumps(body).encode(),
        json=body,
        protocol="openai-responses",
        family="openai",
    )


def test_adapters_are_stateless_and_take_the_cache_stabilizer_with_each_request() -> None:
    """Two requests built at once with different settings each get their own: nothing is kept on the adapter."""
    adapters = build_adapters()
    chatgpt = adapters["chatgpt"]
    account = Account(id="c", kind="chatgpt", label="c")
    on, off = Settings(), Settings.model_validate({"chatgpt": {"stabilize_cache": False}})
    with_stabilizer = json.loads(chatgpt.build(_incoming(), account, "tok", UpstreamSettings(), on).content)
    without = json.loads(chatgpt.build(_incoming(), account, "tok", UpstreamSettings(), off).content)
    assert {"type": "web_search", "external_web_access": False} in with_stabilizer["tools"]
    assert [t["type"] for t in without["tools"]] == ["function"]
    assert all(vars(adapter) == {} for adapter in adapters.values())


def test_only_a_chatgpt_usage_limit_exhausts_an_account_until_its_reset() -> None:
    adapters = build_adapters()
    body = json.dumps(
        {"error": {"type": "usage_limit_reached", "resets_at": 2000, "plan_type": "plus"}}
    ).encode()
    assert adapters["chatgpt"].classify_error(429, body, 1000.0) == Exhaustion("usage limit reached", 2000.0)
    assert (
        adapters["chatgpt"].classify_error(429, b'{"error": {"type": "rate_limit_exceeded"}}', 1000.0) is None
    )
    assert adapters["openai-api-key"].classify_error(429, body, 1000.0) is None
    assert adapters["anthropic-api-key"].classify_error(429, body, 1000.0) is None
    assert [k for k, a in adapters.items() if a.oauth or a.polls_usage or a.own_model_list] == ["chatgpt"]
