"""Connect an agent (web_ui/views/connect.py): the agents listed with masked keys, and a config written once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.web_ui.conftest import Web


def test_connect_lists_agents_with_masked_keys_and_writes_configs(signed_in: Web, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
