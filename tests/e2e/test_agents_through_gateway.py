"""Real agents and the official SDKs → a real `headway serve` process → fake upstreams on 127.0.0.1.

The gateway runs as its own process with its secrets in the real Secret Service (scripts/test starts one); the
accounts are added with the real CLI. Each agent must finish its prompt with the fake's reply, and the fake must
have seen the account's key — never the local access key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import openai
import pytest

from proxy.config.paths import Paths
from proxy.config.store import SettingsStore
from proxy.features.request_log import RequestLog
from tests.fakes import Behavior, FakeAnthropic, FakeOpenAI
from tests.fakes.codex import FakeCodex
from tests.support.agents import require_agent, run_claude_code, run_codex, run_opencode, run_pi
from tests.support.chatgpt_gateway import chatgpt_gateway_process
from tests.support.gateway import GatewayProcess, e2e_keychain, run_cli, start_gateway_process, wait_until

pytestmark = [pytest.mark.keychain, pytest.mark.agents]

REPLY = "Gateway reply 51c2: served through Headway."
PROMPT = "Reply with one short greeting. Do not use any tools."
MAIN_KEY = "sk-ant-e2e-main-000111"
BACKUP_KEY = "sk-ant-e2e-backup-000222"
OPENAI_KEY = "sk-openai-e2e-000333"


@pytest.fixture
def upstreams() -> Iterator[tuple[FakeAnthropic, FakeOpenAI]]:
    with (
        FakeAnthropic(default=Behavior(text=REPLY), valid_keys=[MAIN_KEY, BACKUP_KEY]) as a,
        FakeOpenAI(default=Behavior(text=REPLY), valid_keys=[OPENAI_KEY]) as o,
    ):
        yield a, o


@pytest.fixture
def gateway(upstreams: tuple[FakeAnthropic, FakeOpenAI]) -> Iterator[GatewayProcess]:
    fake_anthropic, fake_openai = upstreams
    e2e_keychain(Paths.from_env())
    for provider, label, key in (
        ("anthropic", "main", MAIN_KEY),
        ("anthropic", "backup", BACKUP_KEY),
        ("openai", "oa", OPENAI_KEY),
    ):
        added = run_cli("accounts", "add", provider, "--label", label, "--api-key-stdin", input=key + "\n")
        assert added.returncode == 0, added.stderr
    process = start_gateway_process(
        env={"HEADWAY_ANTHROPIC_BASE_URL": fake_anthropic.url, "HEADWAY_OPENAI_BASE_URL": fake_openai.url}
    )
    try:
        yield process
    finally:
        assert process.stop() == 0, process.output()


def _no_local_key_upstream(fake: FakeAnthropic | FakeOpenAI, local_key: str) -> None:
    for request in fake.requests:
        assert local_key not in json.dumps(request.headers)


def test_settings_file_holds_no_secret(gateway: GatewayProcess) -> None:
    text = Paths.from_env().settings_file.read_text()
    for secret in (MAIN_KEY, BACKUP_KEY, OPENAI_KEY, gateway.key):
        assert secret not in text


def test_anthropic_sdk_streaming_and_not(
    gateway: GatewayProcess, upstreams: tuple[FakeAnthropic, FakeOpenAI]
) -> None:
    fake, _ = upstreams
    with anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0) as client:
        message = client.messages.create(
            model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.content[0].text == REPLY  # type: ignore[union-attr]
        with client.messages.stream(
            model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            assert "".join(stream.text_stream) == REPLY
        assert [r.headers["x-api-key"] for r in fake.requests] == [MAIN_KEY, MAIN_KEY]
        _no_local_key_upstream(fake, gateway.key)


def test_openai_sdk_responses_and_chat(
    gateway: GatewayProcess, upstreams: tuple[FakeAnthropic, FakeOpenAI]
) -> None:
    _, fake = upstreams
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=gateway.key, max_retries=0) as client:
        assert client.responses.create(model="gpt-5", input="hi").output_text == REPLY
        events = list(client.responses.create(model="gpt-5", input="hi", stream=True))
        assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == REPLY
        chat = client.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "hi"}])
        assert chat.choices[0].message.content == REPLY
        chunks = list(
            client.chat.completions.create(
                model="gpt-5", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
        assert {r.headers["authorization"] for r in fake.requests} == {f"Bearer {OPENAI_KEY}"}


def test_opencode_both_providers(
    gateway: GatewayProcess, upstreams: tuple[FakeAnthropic, FakeOpenAI], tmp_path: Path
) -> None:
    require_agent("opencode")
    fake_a, fake_o = upstreams
    for model, fake in (("anthropic/claude-sonnet-4-5", fake_a), ("openai/gpt-5", fake_o)):
        result = run_opencode(
            base_url=gateway.url, api_key=gateway.key, model=model, prompt=PROMPT, workdir=tmp_path
        )
        assert result.returncode == 0, result.describe()
        assert REPLY in result.output
        assert fake.requests and fake.requests[-1].headers.get("x-session-affinity") is None  # stripped
    _no_local_key_upstream(fake_a, gateway.key)


def test_claude_code_with_fallback(
    gateway: GatewayProcess, upstreams: tuple[FakeAnthropic, FakeOpenAI], tmp_path: Path
) -> None:
    require_agent("claude")
    fake, _ = upstreams
    fake.enqueue(Behavior(status=429, retry_after=45, error_type="rate_limit_error"))
    result = run_claude_code(base_url=gateway.url, api_key=gateway.key, prompt=PROMPT, workdir=tmp_path)
    assert result.returncode == 0, result.describe()
    assert REPLY in result.output
    keys = [r.headers["x-api-key"] for r in fake.requests if r.path == "/v1/messages"]
    assert keys[0] == MAIN_KEY and set(keys[1:]) == {BACKUP_KEY}
    assert fake.requests[-1].query.get("beta") == "true"
    status = json.loads(run_cli("status", "--json").stdout)
    main = next(a for a in status["accounts"] if a["id"] == "main")
    assert status["running"] is True and main["health"] == "cooling_down"
    assert 30 < main["blocked_for_seconds"] <= 45


def _with_models(process: GatewayProcess, models: dict[str, object]) -> None:
    """Put ``models`` settings in force in the running gateway (its watcher applies the file; /v1/models shows it)."""
    store = SettingsStore.for_paths(Paths.from_env())
    store.update(lambda s: setattr(s, "models", type(s.models).model_validate(models)))
    with anthropic.Anthropic(base_url=process.url, api_key=process.key, max_retries=0) as client:
        marker = "applied-marker"
        store.update(lambda s: s.models.aliases.update({marker: "claude-haiku-4-5"}))
        assert wait_until(lambda: any(m.id == marker for m in client.models.list().data), timeout=10)


def test_claude_code_with_a_model_alias(
    gateway: GatewayProcess, upstreams: tuple[FakeAnthropic, FakeOpenAI], tmp_path: Path
) -> None:
    require_agent("claude")
    fake, _ = upstreams
    _with_models(gateway, {"aliases": {"fast": "claude-haiku-4-5"}})
    fake.reset()
    result = run_claude_code(
        base_url=gateway.url, api_key=gateway.key, prompt=PROMPT, workdir=tmp_path, model="fast"
    )
    assert result.returncode == 0, result.describe()
    assert REPLY in result.output
    models = [r.json["model"] for r in fake.requests if r.path == "/v1/messages" and isinstance(r.json, dict)]
    assert "claude-haiku-4-5" in models and "fast" not in models
    log = RequestLog(Paths.from_env().request_log)
    assert wait_until(lambda: any(row.requested_model == "fast" for row in log.query()), timeout=5)
    row = next(row for row in log.query() if row.requested_model == "fast")
    assert row.model == "claude-haiku-4-5" and row.status == 200


def test_opencode_with_a_model_route(
    gateway: GatewayProcess, upstreams: tuple[FakeAnthropic, FakeOpenAI], tmp_path: Path
) -> None:
    require_agent("opencode")
    fake, _ = upstreams
    _with_models(gateway, {"routes": [{"match": "claude-opus-*", "accounts": ["backup"]}]})
    fake.reset()
    result = run_opencode(
        base_url=gateway.url,
        api_key=gateway.key,
        model="anthropic/claude-opus-4-1",
        prompt=PROMPT,
        workdir=tmp_path,
    )
    assert result.returncode == 0, result.describe()
    assert REPLY in result.output
    served = [r for r in fake.requests if r.path == "/v1/messages"]
    assert served and {r.headers["x-api-key"] for r in served} == {
        BACKUP_KEY
    }  # main is first, but not routed
    sonnet = run_opencode(
        base_url=gateway.url,
        api_key=gateway.key,
        model="anthropic/claude-sonnet-4-5",
        prompt=PROMPT,
        workdir=tmp_path,
    )
    assert sonnet.returncode == 0, sonnet.describe()
    assert fake.requests[-1].headers["x-api-key"] == MAIN_KEY  # no route: the normal pool


def test_pi_both_providers(
    gateway: GatewayProcess, upstreams: tuple[FakeAnthropic, FakeOpenAI], tmp_path: Path
) -> None:
    require_agent("pi")
    fake_a, fake_o = upstreams
    for provider, model, fake in (("anthropic", "claude-sonnet-4-5", fake_a), ("openai", "gpt-5", fake_o)):
        result = run_pi(
            base_url=gateway.url,
            api_key=gateway.key,
            provider=provider,
            model=model,
            prompt=PROMPT,
            workdir=tmp_path,
        )
        assert result.returncode == 0, result.describe()
        assert REPLY in result.output
        assert fake.requests


def test_codex_cli_with_an_openai_key(
    gateway: GatewayProcess, upstreams: tuple[FakeAnthropic, FakeOpenAI], tmp_path: Path
) -> None:
    require_agent("codex")
    _, fake = upstreams
    result = run_codex(
        base_url=gateway.url, api_key=gateway.key, model="gpt-5", prompt=PROMPT, workdir=tmp_path
    )
    assert result.returncode == 0, result.describe()
    assert REPLY in result.output
    assert fake.requests[-1].path == "/v1/responses"
    assert fake.requests[-1].headers["authorization"] == f"Bearer {OPENAI_KEY}"


def test_usage_command_reports_the_requests(gateway: GatewayProcess) -> None:
    with anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key, max_retries=0) as client:
        client.messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
        assert wait_until(lambda: "claude-sonnet-4-6" in run_cli("usage").stdout, timeout=5)


# ---------------------------------------------------------------- ChatGPT subscription through real agents


@pytest.fixture
def chatgpt_gateway() -> Iterator[tuple[GatewayProcess, FakeCodex]]:
    with chatgpt_gateway_process([("personal", "acct-p"), ("work", "acct-w")], reply=REPLY) as served:
        yield served


def test_chatgpt_subscription_serves_codex_opencode_and_pi(
    chatgpt_gateway: tuple[GatewayProcess, FakeCodex], tmp_path: Path
) -> None:
    gateway, codex = chatgpt_gateway
    require_agent("codex")
    require_agent("opencode")
    require_agent("pi")
    result = run_codex(
        base_url=gateway.url, api_key=gateway.key, model="gpt-5", prompt=PROMPT, workdir=tmp_path
    )
    assert result.returncode == 0, result.describe()
    assert REPLY in result.output
    result = run_opencode(
        base_url=gateway.url, api_key=gateway.key, model="openai/gpt-5", prompt=PROMPT, workdir=tmp_path
    )
    assert result.returncode == 0, result.describe()
    assert REPLY in result.output
    # the first account reaches its 5-hour limit: traffic moves to the work seat
    codex.set_usage("acct-p", primary_used=100, primary_resets_in=3600)
    result = run_pi(
        base_url=gateway.url,
        api_key=gateway.key,
        provider="openai",
        model="gpt-5",
        prompt=PROMPT,
        workdir=tmp_path,
    )
    assert result.returncode == 0, result.describe()
    assert REPLY in result.output
    served = [
        r.headers["chatgpt-account-id"] for r in codex.requests if r.path == "/backend-api/codex/responses"
    ]
    assert served[:2] == ["acct-p", "acct-p"] and served[-1] == "acct-w"
    assert all(r.headers["originator"] == "headway" for r in codex.requests if r.path.endswith("/responses"))
    status = json.loads(run_cli("status", "--json").stdout)
    personal = next(a for a in status["accounts"] if a["id"] == "personal")
    assert personal["health"] == "exhausted"
    assert "5h" in {w["name"] for w in personal["quota"]["windows"]}
    text = run_cli("status").stdout
    personal_lines = [line for line in text.splitlines() if "personal" in line]
    assert personal_lines and "out of quota" in personal_lines[0], text
    assert "5h " in text


def test_status_refresh_shows_idle_accounts(chatgpt_gateway: tuple[GatewayProcess, FakeCodex]) -> None:
    _, codex = chatgpt_gateway
    codex.set_usage("acct-w", primary_used=40, secondary_used=10)
    status = json.loads(run_cli("status", "--refresh", "--json").stdout)
    work = next(a for a in status["accounts"] if a["id"] == "work")
    assert {w["name"]: w["remaining_percent"] for w in work["quota"]["windows"]} == {
        "5h": 60.0,
        "weekly": 90.0,
    }
