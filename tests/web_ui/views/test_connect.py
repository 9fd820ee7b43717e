"""Connect an agent (web_ui/views/connect.py): the agents listed with masked keys, and a config written once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web_ui.conftest import Web


def test_connect_lists_agents_with_masked_keys_and_writes_configs(
    signed_in: Web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    listing = signed_in.get_json("/api/agents")
    names = [a["name"] for a in listing["agents"]]
    assert names == ["opencode", "pi", "codex", "claude-code", "openhands", "aider"]
    key = signed_in.gateway.key
    assert all(key not in a["snippet"] for a in listing["agents"])
    codex = next(a for a in listing["agents"] if a["name"] == "codex")
    assert codex["path"] == str(home / ".codex" / "config.toml") and codex["configured"] is False

    first = signed_in.post("/api/agents/codex/write")
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["changed"] is True and body["backup"] is None and body["agent"]["configured"] is True
    text = (home / ".codex" / "config.toml").read_text()
    assert 'model_provider = "headway"' in text and key in text
    second = signed_in.post("/api/agents/codex/write").get_json()
    assert second["changed"] is False
    assert signed_in.post("/api/agents/openhands/write").status_code == 400
    assert signed_in.post("/api/agents/nope/write").status_code == 404


def test_the_snippet_with_the_real_key_only_comes_from_a_csrf_protected_post(signed_in: Web) -> None:
    key = signed_in.gateway.key
    assert signed_in.client.get("/api/agents/codex/snippet").status_code == 405
    assert signed_in.client.post("/api/agents/codex/snippet", json={}).status_code == 403  # no CSRF token
    response = signed_in.post("/api/agents/codex/snippet")
    assert response.status_code == 200 and key in response.get_json()["snippet"]
    assert response.headers["Cache-Control"] == "no-store"
    assert signed_in.post("/api/agents/nope/snippet").status_code == 404


def test_a_broken_agent_config_is_reported_and_left_as_it_was(
    signed_in: Web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    config = home / ".codex" / "config.toml"
    broken = 'model = "gpt-5"\n[model_providers.other\nname = "unterminated\n'
    config.write_text(broken)

    listing = signed_in.get_json("/api/agents")
    codex = next(a for a in listing["agents"] if a["name"] == "codex")
    assert codex["problem"] and str(config) in codex["problem"]
    response = signed_in.post("/api/agents/codex/write")
    assert response.status_code == 409 and str(config) in response.get_json()["error"]
    assert config.read_text() == broken
    assert sorted(p.name for p in config.parent.iterdir()) == [
        "config.toml"
    ]  # no backup, no temporary file left
