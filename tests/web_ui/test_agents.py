"""Agent config writers: merge into the user's file, back it up first, change nothing the second time."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from web_ui.agents import (
    AgentConfigError,
    Endpoint,
    config_path,
    endpoint_for,
    env_overrides,
    mask_key,
    plan,
    snippet,
    write,
)

EP = Endpoint(root="http://127.0.0.1:7337", key="hw-TESTKEY-0123456789abcdef")


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), **extra}


def configure(name: str, home: Path, **extra: str):  # type: ignore[no-untyped-def]
    return write(plan(name, EP, environ=env_for(home, **extra)))


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".headway-backup-*"))


def test_default_paths_and_overrides(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    assert config_path("opencode", env) == tmp_path / ".config" / "opencode" / "opencode.json"
    assert config_path("opencode", {**env, "XDG_CONFIG_HOME": "/x"}) == Path("/x/opencode/opencode.json")
    assert config_path("opencode", {**env, "OPENCODE_CONFIG": "/y/oc.json"}) == Path("/y/oc.json")
    assert config_path("pi", env) == tmp_path / ".pi" / "agent" / "models.json"
    assert config_path("pi", {**env, "PI_CODING_AGENT_DIR": "/p"}) == Path("/p/models.json")
    assert config_path("codex", env) == tmp_path / ".codex" / "config.toml"
    assert config_path("codex", {**env, "CODEX_HOME": "/c"}) == Path("/c/config.toml")
    assert config_path("claude-code", env) == tmp_path / ".claude" / "settings.json"
    assert config_path("claude-code", {**env, "CLAUDE_CONFIG_DIR": "/cc"}) == Path("/cc/settings.json")
    assert config_path("aider", env) == tmp_path / ".aider.conf.yml"
    assert config_path("openhands", env) is None
    with pytest.raises(AgentConfigError):
        config_path("nope", env)


def test_endpoint_for_a_wildcard_bind_uses_loopback() -> None:
    assert endpoint_for("http://0.0.0.0:7337/", "k").root == "http://127.0.0.1:7337"
    assert endpoint_for("http://127.0.0.1:9", "k").v1 == "http://127.0.0.1:9/v1"
    assert mask_key(f"key={EP.key}", EP.key) == "key=hw-••••••••cdef"


# --------------------------------------------------------------------------- JSON: OpenCode, Pi, Claude Code


def test_opencode_merges_backs_up_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / ".config" / "opencode" / "opencode.json"
    path.parent.mkdir(parents=True)
    original = {
        "$schema": "https://opencode.ai/config.json",
        "model": "anthropic/claude-sonnet-4-5",
        "theme": "dark",
        "provider": {
            "anthropic": {"models": {"claude-sonnet-4-5": {}}, "options": {"timeout": 30}},
            "ollama": {
                "npm": "@ai-sdk/openai-compatible",
                "options": {"baseURL": "http://localhost:11434/v1"},
            },
        },
    }
    path.write_text(json.dumps(original, indent=4))
    path.chmod(0o644)

    first = configure("opencode", tmp_path)
    assert first.changed and first.backup is not None
    assert json.loads(first.backup.read_text()) == original
    data = json.loads(path.read_text())
    assert data["theme"] == "dark" and data["model"] == "anthropic/claude-sonnet-4-5"
    assert data["provider"]["ollama"] == original["provider"]["ollama"]
    assert data["provider"]["anthropic"]["models"] == {"claude-sonnet-4-5": {}}
    assert data["provider"]["anthropic"]["options"] == {"timeout": 30, "baseURL": EP.v1, "apiKey": EP.key}
    assert data["provider"]["openai"]["options"] == {"baseURL": EP.v1, "apiKey": EP.key}
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600
        assert first.backup.stat().st_mode & 0o777 == 0o600

    text = path.read_text()
    second = configure("opencode", tmp_path)
    assert not second.changed and second.backup is None
    assert path.read_text() == text
    assert len(backups(path)) == 1


def test_a_new_file_is_created_owner_only_without_a_backup(tmp_path: Path) -> None:
    result = configure("pi", tmp_path)
    path = tmp_path / ".pi" / "agent" / "models.json"
    assert result.changed and result.backup is None and result.path == path
    assert json.loads(path.read_text()) == {
        "providers": {
            "anthropic": {"baseUrl": EP.root, "apiKey": EP.key},
            "openai": {"baseUrl": EP.v1, "apiKey": EP.key},
        }
    }
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600


def test_pi_keeps_custom_providers_and_models(tmp_path: Path) -> None:
    path = tmp_path / "agent" / "models.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {
                "providers": {
                    "ollama": {
                        "baseUrl": "http://localhost:11434/v1",
                        "api": "openai-completions",
                        "models": [{"id": "llama"}],
                    },
                    "anthropic": {"models": [{"id": "custom-claude"}]},
                }
            }
        )
    )
    configure("pi", tmp_path, PI_CODING_AGENT_DIR=str(path.parent))
    data = json.loads(path.read_text())
    assert data["providers"]["ollama"]["models"] == [{"id": "llama"}]
    assert data["providers"]["anthropic"] == {
        "models": [{"id": "custom-claude"}],
        "baseUrl": EP.root,
        "apiKey": EP.key,
    }


def test_claude_code_sets_the_env_block_and_drops_a_conflicting_api_key(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {"permissions": {"allow": ["Bash(ls)"]}, "env": {"FOO": "1", "ANTHROPIC_API_KEY": "sk-ant-real"}}
        )
    )
    result = configure("claude-code", tmp_path, ANTHROPIC_API_KEY="sk-ant-shell")
    data = json.loads(path.read_text())
    assert data["permissions"] == {"allow": ["Bash(ls)"]}
    assert data["env"] == {"FOO": "1", "ANTHROPIC_BASE_URL": EP.root, "ANTHROPIC_AUTH_TOKEN": EP.key}
    assert any("removed env.ANTHROPIC_API_KEY" in n for n in result.notes)
    assert any("unset it" in n for n in result.notes)
    assert [o.variable for o in result.overrides] == ["ANTHROPIC_API_KEY"]
    assert "sk-ant-real" in result.backup.read_text()  # type: ignore[union-attr]


def test_unparseable_json_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / ".claude" / "settings.json"
    path.parent.mkdir()
    path.write_text('{"env": {"A": 1}, // a comment\n}')
    with pytest.raises(AgentConfigError, match="not plain JSON"):
        configure("claude-code", tmp_path)
    assert path.read_text() == '{"env": {"A": 1}, // a comment\n}'
    path.write_text('{"env": "oops"}')
    with pytest.raises(AgentConfigError, match="env is not an object"):
        configure("claude-code", tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_a_symlinked_config_is_written_through_to_its_target(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles" / "models.json"
    dotfiles.parent.mkdir()
    dotfiles.write_text("{}")
    link = tmp_path / ".pi" / "agent" / "models.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(dotfiles)
    result = configure("pi", tmp_path)
    assert link.is_symlink() and result.path == dotfiles
    assert "baseUrl" in dotfiles.read_text()


# --------------------------------------------------------------------------- TOML: Codex


CODEX_BEFORE = """\
# my codex config
model = "o3"   # the model I like
approval_policy = "on-request"

[mcp_servers.docs]
command = "npx"
args = ["-y", "docs-mcp"]

[model_providers.headway]
# kept: my own tuning
request_max_retries = 4
env_key = "HEADWAY_KEY"
base_url = "http://127.0.0.1:1/v1"

[model_providers.other]
name = "Other"
base_url = "https://other.example/v1"
"""


def test_codex_sets_the_provider_and_keeps_everything_else(tmp_path: Path) -> None:
    path = tmp_path / ".codex" / "config.toml"
    path.parent.mkdir()
    path.write_text(CODEX_BEFORE)
    first = configure("codex", tmp_path)
    text = path.read_text()
    assert first.backup is not None and first.backup.read_text() == CODEX_BEFORE
    assert "# my codex config" in text and "# the model I like" in text and "# kept: my own tuning" in text
    data = tomllib.loads(text)
    assert data["model"] == "o3" and data["model_provider"] == "headway"
    assert data["mcp_servers"] == {"docs": {"command": "npx", "args": ["-y", "docs-mcp"]}}
    assert data["model_providers"]["other"]["base_url"] == "https://other.example/v1"
    assert data["model_providers"]["headway"] == {
        "name": "Headway",
        "wire_api": "responses",
        "supports_websockets": True,
        "experimental_bearer_token": EP.key,
        "request_max_retries": 4,
        "base_url": EP.v1,
    }
    assert text.index("model_provider =") < text.index("[mcp_servers.docs]")
    second = configure("codex", tmp_path)
    assert not second.changed and path.read_text() == text


def test_codex_from_scratch_and_replacing_an_existing_choice(tmp_path: Path) -> None:
    configure("codex", tmp_path)
    path = tmp_path / ".codex" / "config.toml"
    assert tomllib.loads(path.read_text()) == {
        "model_provider": "headway",
        "model_providers": {
            "headway": {
                "name": "Headway",
                "base_url": EP.v1,
                "wire_api": "responses",
                "supports_websockets": True,
                "experimental_bearer_token": EP.key,
            }
        },
    }
    other = tmp_path / "other"
    (other / ".codex").mkdir(parents=True)
    (other / ".codex" / "config.toml").write_text('model_provider = "openai"\n')
    configure("codex", other)
    assert tomllib.loads((other / ".codex" / "config.toml").read_text())["model_provider"] == "headway"


@pytest.mark.parametrize(
    "before",
    [
        'model_providers = { headway = { name = "x", base_url = "http://x" }, other = { name = "o" } }  # inline\n',
        'model_providers = { other = { name = "o" } }  # inline\n',
        '# dotted keys\nmodel_providers.headway.name = "x"\nmodel_providers.headway.env_key = "K"\n\n[tui]\nx = 1\n',
        'model = "o3"\n\n[[profiles_list]]\nname = "a"\n\n[model_providers]\nother.name = "o"\n',
        "'quoted' = 'literal string'\nmulti = \"\"\"\nline\n\"\"\"\n[model_providers.'headway']\nbase_url = 'x'\n",
    ],
)
def test_codex_every_legal_toml_form_is_edited_and_the_rest_kept(tmp_path: Path, before: str) -> None:
    """Inline tables, dotted keys, arrays of tables, literal and multi-line strings: all legal TOML that the old
    line-based editor refused or could not place; tomlkit edits them in place."""
    path = tmp_path / ".codex" / "config.toml"
    path.parent.mkdir()
    path.write_text(before)
    configure("codex", tmp_path)
    text = path.read_text()
    after = tomllib.loads(text)
    assert after["model_provider"] == "headway"
    headway = after["model_providers"]["headway"]
    assert headway["base_url"] == EP.v1 and headway["experimental_bearer_token"] == EP.key
    assert "env_key" not in headway
    expected = tomllib.loads(before)
    expected["model_providers"].pop("headway", None)
    after["model_providers"].pop("headway")
    after.pop("model_provider")
    assert after == expected
    for comment in ("# inline", "# dotted keys"):
        assert (comment in before) == (comment in text)
    assert text.endswith("\n") and "\n\n\n" not in text
    assert not configure("codex", tmp_path).changed


def test_codex_forms_it_cannot_edit_safely_are_refused(tmp_path: Path) -> None:
    path = tmp_path / ".codex" / "config.toml"
    path.parent.mkdir()
    not_a_table = 'model_providers = "x"\n'
    path.write_text(not_a_table)
    with pytest.raises(AgentConfigError):
        configure("codex", tmp_path)
    assert path.read_text() == not_a_table
    path.write_text("model = [unclosed\n")
    with pytest.raises(AgentConfigError, match="not valid TOML"):
        configure("codex", tmp_path)


# --------------------------------------------------------------------------- YAML: aider


AIDER_BEFORE = """\
# aider settings
model: anthropic/claude-sonnet-4-5
openai-api-key: sk-old-key   # old
dark-mode: true
set-env:
  - FOO=bar
  - ANTHROPIC_BASE_URL=https://old.example
auto-commits: false
"""


def test_aider_replaces_its_keys_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / ".aider.conf.yml"
    path.write_text(AIDER_BEFORE)
    first = configure("aider", tmp_path)
    text = path.read_text()
    assert first.backup is not None
    assert "# aider settings" in text and "model: anthropic/claude-sonnet-4-5" in text
    assert "dark-mode: true" in text and "auto-commits: false" in text
    assert "sk-old-key" not in text and "old.example" not in text
    assert f'openai-api-base: "{EP.v1}"' in text and f'anthropic-api-key: "{EP.key}"' in text
    assert '  - "FOO=bar"' in text and f'  - "ANTHROPIC_BASE_URL={EP.root}"' in text
    assert text.count("set-env:") == 1 and text.count("openai-api-key:") == 1
    second = configure("aider", tmp_path)
    assert not second.changed and path.read_text() == text


def test_aider_inline_set_env_is_merged(tmp_path: Path) -> None:
    path = tmp_path / ".aider.conf.yml"
    path.write_text("set-env: [A=1, 'B=2']\n")
    configure("aider", tmp_path)
    text = path.read_text()
    assert '  - "A=1"' in text and '  - "B=2"' in text


@pytest.mark.parametrize(
    "before",
    [
        "model: [unclosed\n",  # not YAML at all
        "model: a\nmodel: b\n",  # duplicate keys: which one aider uses is not ours to guess
        "- just\n- a list\n",  # not a mapping
        "set-env:\n  FOO: bar\n",  # set-env as a mapping: not aider's form
    ],
)
def test_aider_a_file_it_cannot_read_exactly_is_left_alone(tmp_path: Path, before: str) -> None:
    path = tmp_path / ".aider.conf.yml"
    path.write_text(before)
    with pytest.raises(AgentConfigError):
        configure("aider", tmp_path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir() if "aider" in p.name] == [path.name]  # no backup, no temp file


def test_aider_every_other_key_means_the_same_after_the_edit(tmp_path: Path) -> None:
    """The edit is checked by parsing: a block scalar under a replaced key, quoted and flow values elsewhere."""
    before = (
        "# top\n"
        "openai-api-key: >-\n  sk-folded\n  continued\n"
        "read: ['a.md', \"b.md\"]\n"
        "map:\n  nested: {x: 1}\n"
        'set-env: "ANTHROPIC_API_BASE=https://old"\n'
        "lint-cmd: 'python: ruff'   # a colon inside\n"
    )
    path = tmp_path / ".aider.conf.yml"
    path.write_text(before)
    configure("aider", tmp_path)
    text = path.read_text()
    after = YAML(typ="safe", pure=True).load(text)
    assert after == {
        "read": ["a.md", "b.md"],
        "map": {"nested": {"x": 1}},
        "lint-cmd": "python: ruff",
        "openai-api-base": EP.v1,
        "openai-api-key": EP.key,
        "anthropic-api-key": EP.key,
        "set-env": [f"ANTHROPIC_BASE_URL={EP.root}"],
    }
    assert "# top" in text and "sk-folded" not in text and "continued" not in text


# --------------------------------------------------------------------------- OpenHands and snippets


def test_openhands_is_printed_only(tmp_path: Path) -> None:
    p = plan("openhands", EP, environ=env_for(tmp_path))
    assert p.path is None and "LLM_BASE_URL=http://127.0.0.1:7337" in p.new_text
    with pytest.raises(AgentConfigError):
        write(p)


@pytest.mark.parametrize("name", ["opencode", "pi", "codex", "claude-code", "openhands", "aider"])
def test_every_snippet_names_the_endpoint_and_key(name: str) -> None:
    text = snippet(name, EP)
    assert EP.key in text and EP.root in text
    if name in ("opencode", "pi", "claude-code"):
        json.loads(text)
    if name == "codex":
        tomllib.loads(text)


def test_a_file_changed_between_plan_and_write_is_not_clobbered(tmp_path: Path) -> None:
    path = tmp_path / ".pi" / "agent" / "models.json"
    path.parent.mkdir(parents=True)
    path.write_text("{}")
    p = plan("pi", EP, environ=env_for(tmp_path))
    path.write_text('{"providers": {}}')
    with pytest.raises(AgentConfigError, match="changed while"):
        write(p)


@pytest.mark.parametrize(
    ("agent", "variables", "expected"),
    [
        (
            "claude-code",
            {"ANTHROPIC_API_KEY": "sk-ant-x", "ANTHROPIC_BASE_URL": "http://elsewhere"},
            ["ANTHROPIC_API_KEY"],
        ),
        (
            "pi",
            {"ANTHROPIC_API_KEY": "sk-ant-x", "OPENAI_API_KEY": "sk-x"},
            ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"],
        ),
        ("aider", {"AIDER_OPENAI_API_KEY": "sk-x", "OPENAI_API_KEY": "sk-x"}, ["AIDER_OPENAI_API_KEY"]),
        ("codex", {"OPENAI_API_KEY": "sk-x", "OPENAI_BASE_URL": "http://elsewhere"}, []),
        ("opencode", {"ANTHROPIC_API_KEY": "sk-ant-x", "OPENAI_API_KEY": "sk-x"}, []),
    ],
)
def test_env_overrides_name_what_each_agent_reads_ahead_of_its_file(
    agent: str, variables: dict[str, str], expected: list[str]
) -> None:
    found = env_overrides(agent, EP.key, variables)
    assert [o.variable for o in found] == expected
    for override in found:
        assert override.variable in override.message() and "unset" in override.message()


def test_a_variable_holding_headways_own_key_is_no_override(tmp_path: Path) -> None:
    assert env_overrides("pi", EP.key, {"ANTHROPIC_API_KEY": EP.key, "OPENAI_API_KEY": ""}) == []
    path = tmp_path / "agent" / "models.json"
    result = configure("pi", tmp_path, PI_CODING_AGENT_DIR=str(path.parent), OPENAI_API_KEY="sk-proj-other")
    assert [o.variable for o in result.overrides] == ["OPENAI_API_KEY"]
    assert any("OPENAI_API_KEY is set" in n for n in result.notes)
