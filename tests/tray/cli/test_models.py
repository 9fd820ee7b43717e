"""`headway models` as a real subprocess."""

from __future__ import annotations

import json

from proxy.config.paths import Paths, write_private_file
from tests.tray.cli.harness import cli, ok, read_settings, seed_accounts


def _with_models(paths: Paths) -> None:
    seed_accounts(paths)  # Work (anthropic), Personal (openai), Spare (anthropic)
    settings = read_settings(paths)
    settings["models"] = {
        "aliases": {"fast": "claude-haiku-4-5", "cheap": "gpt-5-mini"},
        "routes": [
            {"match": "claude-opus-*", "accounts": ["Spare"]},
            {"match": "claude-haiku-*", "accounts": ["work"]},
        ],
    }
    write_private_file(paths.settings_file, json.dumps(settings).encode())


def test_models_lists_aliases_routes_and_who_serves_what(file_home: Paths) -> None:
    _with_models(file_home)
    out = ok(cli("models"))
    assert "fast → claude-haiku-4-5" in out and "cheap → gpt-5-mini" in out
    assert "claude-opus-* → Spare" in out
    assert "fast (claude-haiku-4-5): Work\n" in out  # the haiku route applies to the alias's target
    assert "cheap (gpt-5-mini): Personal" in out
    assert "any other Claude (Anthropic) model: Work, Spare" in out
    data = json.loads(ok(cli("models", "--json")))
    assert data["aliases"]["fast"] == "claude-haiku-4-5"
    assert data["routes"][0] == {"match": "claude-opus-*", "accounts": ["Spare"]}
    assert {"model": "claude-opus-*", "route": True, "accounts": ["Spare"]} in data["serving"]


def test_models_with_nothing_configured(file_home: Paths) -> None:
    out = ok(cli("models"))
    assert "Aliases:\n  none" in out and "Routes (the first match wins):\n  none" in out
