"""`headway configure <agent>` for real: it edits each agent's own config file (merging with what the user had,
keeping a backup, idempotent), and then the REAL agent — started with nothing but that file — works through
Headway (a `headway serve` subprocess) against a fake upstream.

The agent runs with a HOME of its own and no provider variables at all: the only way it can reach the fake upstream
with the right key is the config `headway configure` wrote (the fakes refuse any key but the account's, and the
agent only ever knows Headway's local access key).
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.config.paths import Paths
from proxy.features.request_log import RequestLog
from tests.fakes import Behavior, FakeAnthropic, FakeOpenAI
from tests.support import agents
from tests.support.agents import require_agent
from tests.support.gateway import GatewayProcess, run_cli, start_gateway_process, wait_until

ANTHROPIC_KEY = "sk-ant-api03-configure-test-" + "a" * 24
OPENAI_KEY = "sk-proj-configure-test-" + "b" * 24
REPLY = "Configured reply 51c2: it came through Headway."
PROMPT = "Reply with one short greeting. Do not use any tools."


@pytest.fixture
def anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(default=Behavior(text=REPLY), valid_keys=[ANTHROPIC_KEY]) as fake:
        yield fake


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(default=Behavior(text=REPLY), valid_keys=[OPENAI_KEY]) as fake:
        yield fake


@pytest.fixture
def headway(anthropic: FakeAnthropic, openai: FakeOpenAI, headway_home: Path) -> Iterator[GatewayProcess]:
    paths = Paths.from_env()
    paths.ensure()
    # Two processes share the secrets: the plain-file backend (never the real keychain in tests).
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}}))
    env = {"HEADWAY_ANTHROPIC_BASE_URL": anthropic.url, "HEADWAY_OPENAI_BASE_URL": openai.url}
    process = start_gateway_process(env=env)
    try:
        for provider, label, key in (("anthropic", "main", ANTHROPIC_KEY), ("openai", "oa", OPENAI_KEY)):
            added = run_cli(
                "accounts", "add", provider, "--label", label, "--api-key-stdin", input=key + "\n"
            )
            assert added.returncode == 0, added.stderr
        yield process
    finally:
        process.stop()


def _agent_home(workdir: Path, name: str) -> tuple[Path, dict[str, str]]:
    """A private HOME / XDG set for one agent (the harness's), with no provider variables in it."""
    state = agents._state_dir(workdir, name)
    return state, agents._base_env(state)


def _configure(agent: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    keep = {
        k: env[k] for k in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")
    }
    return run_cli("configure", agent, env=keep)


def _configure_twice(agent: str, env: dict[str, str], path: Path, before: str) -> None:
    first = _configure(agent, env)
    assert first.returncode == 0, first.stderr
    assert f"wrote {path}" in first.stdout and "backup:" in first.stdout
    (backup,) = path.parent.glob(path.name + ".headway-backup-*")
    assert backup.read_text() == before
    written = path.read_text()
    second = _configure(agent, env)
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stdout
    assert path.read_text() == written
    assert len(list(path.parent.glob(path.name + ".headway-backup-*"))) == 1


def _through_headway(
    headway: GatewayProcess, upstream: FakeAnthropic | FakeOpenAI, key: str, result: agents.AgentResult
) -> None:
    assert not result.timed_out, result.describe()
    assert result.returncode == 0, result.describe()
    assert REPLY in result.stdout, result.describe()
    posts = [r for r in upstream.requests if r.method == "POST"]
    assert posts, "the agent's request never reached the upstream"
    auth = posts[-1].headers.get("x-api-key") or posts[-1].headers.get("authorization", "")
    assert key in auth  # Headway swapped the local key for the account's
    log = RequestLog(Paths.from_env().request_log)
    assert wait_until(lambda: len(log.query(limit=10)) > 0, timeout=5)
    assert headway.key not in json.dumps([r.headers for r in posts])


@pytest.mark.agents
def test_opencode(headway: GatewayProcess, anthropic: FakeAnthropic, tmp_path: Path) -> None:
    binary = require_agent("opencode")
    state, env = _agent_home(tmp_path, "opencode")
    path = state / "config" / "opencode" / "opencode.json"
    path.parent.mkdir(parents=True)
    before = json.dumps(
        {
            "$schema": "https://opencode.ai/config.json",
            "autoupdate": False,
            "share": "disabled",
            "provider": {"ollama": {"options": {"baseURL": "http://localhost:11434/v1"}}},
        },
        indent=2,
    )
    path.write_text(before)
    _configure_twice("opencode", env, path, before)
    data = json.loads(path.read_text())
    assert (
        data["autoupdate"] is False
        and data["provider"]["ollama"]["options"]["baseURL"] == "http://localhost:11434/v1"
    )

    workdir = tmp_path / "project"
    workdir.mkdir()
    env.update(agents.OPENCODE_QUIET_ENV)
    argv = [binary, "run", "--pure", "--title", "configure test", "-m", "anthropic/claude-sonnet-4-5", PROMPT]
    result = agents._run(argv, cwd=workdir, env=env, state=state, timeout=90, env_extra=None)
    _through_headway(headway, anthropic, ANTHROPIC_KEY, result)


@pytest.mark.agents
def test_pi(headway: GatewayProcess, anthropic: FakeAnthropic, tmp_path: Path) -> None:
    binary = require_agent("pi")
    state, env = _agent_home(tmp_path, "pi")
    path = state / "home" / ".pi" / "agent" / "models.json"
    path.parent.mkdir(parents=True)
    before = json.dumps(
        {
            "providers": {
                "ollama": {
                    "baseUrl": "http://localhost:11434/v1",
                    "api": "openai-completions",
                    "apiKey": "ollama",
                    "models": [{"id": "llama3.1:8b"}],
                }
            }
        }
    )
    path.write_text(before)
    _configure_twice("pi", env, path, before)
    assert json.loads(path.read_text())["providers"]["ollama"]["models"] == [{"id": "llama3.1:8b"}]

    env.update(agents.PI_QUIET_ENV)
    argv = [binary, "-p", "--model", "anthropic/claude-sonnet-4-5", PROMPT]
    result = agents._run(argv, cwd=tmp_path, env=env, state=state, timeout=90, env_extra=None)
    _through_headway(headway, anthropic, ANTHROPIC_KEY, result)


@pytest.mark.agents
def test_codex(headway: GatewayProcess, openai: FakeOpenAI, tmp_path: Path) -> None:
    binary = require_agent("codex")
    state, env = _agent_home(tmp_path, "codex")
    path = state / "home" / ".codex" / "config.toml"
    path.parent.mkdir(parents=True)
    before = '# mine\nmodel = "gpt-5"\ncheck_for_update_on_startup = false\n\n[analytics]\nenabled = false\n'
    path.write_text(before)
    _configure_twice("codex", env, path, before)
    data = tomllib.loads(path.read_text())
    assert (
        data["model"] == "gpt-5"
        and data["analytics"] == {"enabled": False}
        and data["model_provider"] == "headway"
    )

    assert data["model_providers"]["headway"]["supports_websockets"] is True

    argv = [binary, "exec", "--skip-git-repo-check", "--sandbox", "read-only", PROMPT]
    result = agents._run(argv, cwd=tmp_path, env=env, state=state, timeout=90, env_extra=None)
    _through_headway(headway, openai, OPENAI_KEY, result)
    # the configured Codex speaks the Responses API over WebSocket to Headway
    assert "agent WebSocket opened on /v1/responses" in headway.log_path.read_text()


@pytest.mark.agents
def test_claude_code(headway: GatewayProcess, anthropic: FakeAnthropic, tmp_path: Path) -> None:
    binary = require_agent("claude")
    state, env = _agent_home(tmp_path, "claude")
    node = agents.node22_bin()
    if node is not None:
        env["PATH"] = os.pathsep.join([str(node.parent), env["PATH"]])
    path = state / "home" / ".claude" / "settings.json"
    path.parent.mkdir(parents=True)
    before = json.dumps({"permissions": {"allow": ["Bash(ls)"]}, "env": {"DISABLE_TELEMETRY": "1"}})
    path.write_text(before)
    _configure_twice("claude-code", env, path, before)
    data = json.loads(path.read_text())
    assert data["permissions"] == {"allow": ["Bash(ls)"]}
    assert data["env"]["DISABLE_TELEMETRY"] == "1" and data["env"]["ANTHROPIC_BASE_URL"] == headway.url

    env.update(agents.CLAUDE_QUIET_ENV)
    argv = [binary, "-p", PROMPT, "--output-format", "json"]
    result = agents._run(argv, cwd=tmp_path, env=env, state=state, timeout=90, env_extra=None)
    _through_headway(headway, anthropic, ANTHROPIC_KEY, result)


def test_configure_print_and_openhands(headway: GatewayProcess, tmp_path: Path) -> None:
    printed = run_cli("configure", "codex", "--print", env={"HOME": str(tmp_path)})
    assert printed.returncode == 0
    assert (
        tomllib.loads(printed.stdout)["model_providers"]["headway"]["experimental_bearer_token"]
        == headway.key
    )
    assert not (tmp_path / ".codex").exists()
    openhands = run_cli("configure", "openhands", env={"HOME": str(tmp_path)})
    assert openhands.returncode == 0
    assert (
        f"LLM_BASE_URL={headway.url}" in openhands.stdout and f"LLM_API_KEY={headway.key}" in openhands.stdout
    )
    assert "environment" in openhands.stderr
    broken = tmp_path / "opencode.json"
    broken.write_text("{not json")
    refused = run_cli("configure", "opencode", "--file", str(broken))
    assert refused.returncode != 0 and "not plain JSON" in refused.stderr
    assert broken.read_text() == "{not json"
