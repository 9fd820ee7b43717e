"""Each real agent completes one prompt against a fake upstream DIRECTLY (no gateway): proves the harness works.

The gateway's end-to-end tests reuse the same runners with `base_url` pointing at Headway instead.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import Behavior, FakeAnthropic, FakeOpenAI, RecordedRequest
from tests.support import agents
from tests.support.agents import require_agent, run_claude_code, run_codex, run_opencode, run_pi

ANTHROPIC_KEY = "sk-ant-direct-test-1234"
OPENAI_KEY = "sk-openai-direct-test-5678"
REPLY = "Harness reply 7f3a: the fake answered."
PROMPT = "Reply with one short greeting. Do not use any tools."


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    # valid_keys: a request without our key gets a 401, so the agent cannot succeed unless the key arrived.
    with FakeAnthropic(default=Behavior(text=REPLY), valid_keys=[ANTHROPIC_KEY]) as fake:
        yield fake


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(default=Behavior(text=REPLY), valid_keys=[OPENAI_KEY]) as fake:
        yield fake


def _posts(requests: list[RecordedRequest]) -> list[RecordedRequest]:
    return [r for r in requests if r.method == "POST"]


def _body(request: RecordedRequest) -> dict[str, Any]:
    assert isinstance(request.json, dict), request.body[:200]
    return request.json


def _check_ok(result: agents.AgentResult) -> None:
    assert not result.timed_out, result.describe()
    assert result.returncode == 0, result.describe()


@pytest.mark.agents
def test_opencode_anthropic(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    require_agent("opencode")
    result = run_opencode(
        base_url=fake_anthropic.url,
        api_key=ANTHROPIC_KEY,
        model="anthropic/claude-sonnet-4-5",
        prompt=PROMPT,
        workdir=tmp_path,
    )
    _check_ok(result)
    posts = _posts(fake_anthropic.requests)
    assert len(posts) == 1, [(r.method, r.path) for r in fake_anthropic.requests]  # --title: no title request
    request = posts[0]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == ANTHROPIC_KEY
    assert request.headers["x-session-id"].startswith("ses_")
    assert _body(request)["model"] == "claude-sonnet-4-5"
    assert request.stream
    assert REPLY in result.stdout, result.describe()
    # OpenCode's own usage bookkeeping lands in the DB the harness points at.
    assert result.db_path is not None and result.db_path.is_file()
    with sqlite3.connect(result.db_path) as db:
        (count,) = db.execute("select count(*) from session").fetchone()
    assert count >= 1


@pytest.mark.agents
def test_opencode_openai(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    require_agent("opencode")
    result = run_opencode(
        base_url=fake_openai.url, api_key=OPENAI_KEY, model="openai/gpt-5", prompt=PROMPT, workdir=tmp_path
    )
    _check_ok(result)
    posts = _posts(fake_openai.requests)
    assert len(posts) == 1, [(r.method, r.path) for r in fake_openai.requests]
    request = posts[0]
    assert request.path == "/v1/responses"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.headers["x-session-id"].startswith("ses_")
    assert _body(request)["model"] == "gpt-5"
    assert REPLY in result.stdout, result.describe()


@pytest.mark.agents
def test_claude_code(fake_anthropic: FakeAnthropic, tmp_path: Path) -> None:
    require_agent("claude")
    result = run_claude_code(
        base_url=fake_anthropic.url, api_key=ANTHROPIC_KEY, prompt=PROMPT, workdir=tmp_path
    )
    _check_ok(result)
    posts = _posts(fake_anthropic.requests)
    assert posts, [(r.method, r.path) for r in fake_anthropic.requests]
    for request in posts:
        assert request.path == "/v1/messages"
        assert request.query == {"beta": "true"}
        assert request.headers["x-api-key"] == ANTHROPIC_KEY
        assert request.headers.get("x-claude-code-session-id")
    summary = json.loads(result.stdout)
    assert summary["is_error"] is False, summary
    assert summary["result"] == REPLY


@pytest.mark.agents
@pytest.mark.parametrize(
    ("provider", "model", "path"),
    [("anthropic", "claude-sonnet-4-5", "/v1/messages"), ("openai", "gpt-5", "/v1/responses")],
)
def test_pi(
    provider: str,
    model: str,
    path: str,
    fake_anthropic: FakeAnthropic,
    fake_openai: FakeOpenAI,
    tmp_path: Path,
) -> None:
    require_agent("pi")
    fake = fake_anthropic if provider == "anthropic" else fake_openai
    key = ANTHROPIC_KEY if provider == "anthropic" else OPENAI_KEY
    result = run_pi(
        base_url=fake.url, api_key=key, provider=provider, model=model, prompt=PROMPT, workdir=tmp_path
    )
    _check_ok(result)
    posts = _posts(fake.requests)
    assert len(posts) == 1, [(r.method, r.path) for r in fake.requests]
    request = posts[0]
    assert request.path == path
    if provider == "anthropic":
        assert request.headers["x-api-key"] == key
    else:
        assert request.headers["authorization"] == f"Bearer {key}"
        assert request.headers.get("session_id")
    assert _body(request)["model"] == model
    assert REPLY in result.stdout, result.describe()


@pytest.mark.agents
def test_codex(fake_openai: FakeOpenAI, tmp_path: Path) -> None:
    require_agent("codex")
    result = run_codex(
        base_url=fake_openai.url,
        api_key=OPENAI_KEY,
        model="gpt-5",
        prompt=PROMPT,
        workdir=tmp_path,
        json_output=True,
    )
    _check_ok(result)
    posts = _posts(fake_openai.requests)
    assert len(posts) == 1, [(r.method, r.path) for r in fake_openai.requests]
    request = posts[0]
    assert request.path == "/v1/responses"
    assert request.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert request.headers["originator"] == "codex_exec"
    assert request.headers["session-id"]
    assert _body(request)["model"] == "gpt-5"
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    texts = [
        e["item"]["text"] for e in events if e.get("type") == "item.completed" and "text" in e.get("item", {})
    ]
    assert REPLY in texts, result.describe()
    assert any(e.get("type") == "turn.completed" for e in events), result.describe()


# -- the harness itself ------------------------------------------------------------------------------------------


def test_require_agent_skips_locally_and_fails_in_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWAY_TEST_NPM_BIN", str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    assert agents.agent_bin("opencode") is None
    with pytest.raises(pytest.skip.Exception):
        require_agent("opencode")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require_agent("opencode")
    (tmp_path / "opencode").write_text("#!/bin/sh\n")
    (tmp_path / "opencode").chmod(0o755)
    assert require_agent("opencode") == tmp_path / "opencode"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    pid_file = tmp_path / "child.pid"
    # The "agent" starts a grandchild that would outlive it, then hangs.
    script = f"sleep 300 & echo $! > {pid_file}; echo started; sleep 300"
    start = time.monotonic()
    result = agents._run(
        ["sh", "-c", script], cwd=tmp_path, env=dict(os.environ), state=state, timeout=1.0, env_extra=None
    )
    assert time.monotonic() - start < 10
    assert result.timed_out
    assert result.returncode != 0
    assert "started" in result.stdout
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(grandchild):
        time.sleep(0.05)
    assert not _alive(grandchild)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"  # a zombie is dead, just not reaped
    except FileNotFoundError:
        return False


@pytest.mark.skipif(sys.platform != "linux", reason="the npm agent cache is set up for Linux")
def test_node22_is_installed() -> None:
    node = require_agent("node22")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert version.startswith("v22."), version
