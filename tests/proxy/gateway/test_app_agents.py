"""A real Claude Code through the in-process gateway with a provider key exported next to the local key.

Claude Code with ``ANTHROPIC_API_KEY`` exported (common) and ``ANTHROPIC_AUTH_TOKEN`` set to Headway's key sends
both: ``x-api-key: <the exported key>`` and ``Authorization: Bearer <the local key>``. The gateway used to check
only ``x-api-key``, answered 401, and Claude Code retried silently for minutes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes import Behavior, FakeAnthropic
from tests.support.agents import require_agent, run_claude_code, run_pi
from tests.support.gateway import RunningGateway, start_gateway

pytestmark = [pytest.mark.agents, pytest.mark.timeout(150)]

REPLY = "Gateway reply 7e1d: served despite the exported key."
EXPORTED = "sk-ant-api03-" + "F" * 40 + "exportedByTheShell"


@pytest.fixture
def gw() -> Iterator[tuple[RunningGateway, FakeAnthropic]]:
    with FakeAnthropic(default=Behavior(text=REPLY), valid_keys=["sk-ant-main"]) as fake:
        gateway = start_gateway(anthropic_url=fake.url)
        try:
            gateway.add("anthropic", "claude", "sk-ant-main")
            yield gateway, fake
        finally:
            gateway.stop()


def test_claude_code_with_anthropic_api_key_exported_is_served(
    gw: tuple[RunningGateway, FakeAnthropic], tmp_path: Path
) -> None:
    require_agent("claude")
    gateway, fake = gw
    result = run_claude_code(
        base_url=gateway.url,
        api_key=EXPORTED,  # exported ANTHROPIC_API_KEY: the agent sends it as x-api-key
        env_extra={"ANTHROPIC_AUTH_TOKEN": gateway.key},  # the local key, as `headway configure` writes it
        prompt="Reply with one short greeting. Do not use any tools.",
        workdir=tmp_path,
        timeout=90,
    )
    assert result.returncode == 0 and not result.timed_out, result.describe()
    assert REPLY in result.output
    assert result.duration < 60, result.describe()  # the 401-retry loop took minutes
    messages = [r for r in fake.requests if r.path == "/v1/messages"]
    assert messages and all(r.headers["x-api-key"] == "sk-ant-main" for r in messages)
    for handler in logging.getLogger("headway").handlers:
        handler.flush()
    log = gateway.services.logs.log_file.read_text()
    assert "refused POST /v1/messages" not in log
    assert "exportedByTheShell" not in log


@pytest.mark.parametrize(
    "provider,model,exported,variable",
    [
        ("anthropic", "claude-sonnet-4-5", EXPORTED, "ANTHROPIC_API_KEY"),
        ("openai", "gpt-5", "sk-proj-" + "G" * 40 + "exportedByTheShell", "OPENAI_API_KEY"),
    ],
)
def test_pi_with_a_provider_key_exported_is_told_which_variable_to_unset(
    gw: tuple[RunningGateway, FakeAnthropic],
    tmp_path: Path,
    provider: str,
    model: str,
    exported: str,
    variable: str,
) -> None:
    # Pi's exported ANTHROPIC_API_KEY / OPENAI_API_KEY wins over the key in its models.json: the refusal names it.
    require_agent("pi")
    gateway, fake = gw
    result = run_pi(
        base_url=gateway.url,
        api_key=exported,
        provider=provider,
        model=model,
        prompt="Reply with one short greeting.",
        workdir=tmp_path,
        timeout=90,
    )
    assert result.returncode != 0 and not result.timed_out, result.describe()
    assert f"unset {variable}" in result.output, result.describe()
    assert fake.requests == []
