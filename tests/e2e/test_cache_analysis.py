"""`headway analyze cache` over REAL agent sessions: OpenCode and Claude Code → `headway serve` (hybrid cache mode,
dumps on) → a fake Anthropic that reports growing cache reads, two turns each (the second continues the session).

The analysis must report exactly the usage the fake sent, per turn, from Headway's log (with the dumps matched) and
from OpenCode's own database; the counterfactual costs must follow from those numbers and the model's list prices.
"""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.config.paths import Paths
from proxy.config.settings import Settings
from proxy.config.store import SettingsStore
from tests.fakes import Behavior, FakeAnthropic
from tests.support.agents import AgentResult, require_agent, run_claude_code, run_opencode
from tests.support.gateway import GatewayProcess, e2e_keychain, run_cli, start_gateway_process, wait_until

pytestmark = [pytest.mark.keychain, pytest.mark.agents]

KEY = "sk-ant-e2e-cache-000444"
REPLY = "Cache reply 7d1e: served through Headway."
PROMPT = "Reply with one short greeting. Do not use any tools."
MODEL = "claude-sonnet-4-5"
M = 1_000_000
IN, READ, W5, W1, OUT = 3 / M, 0.3 / M, 3.75 / M, 6 / M, 15 / M  # claude-sonnet-4-5 list prices per token


def anthropic_usage(uncached: int, read: int, write_1h: int, output: int) -> dict[str, Any]:
    return {
        "input_tokens": uncached,
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": write_1h,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": write_1h},
        "output_tokens": output,
    }


# (uncached, cache read, 1h cache write, output) per turn: the second turn reads what the first wrote
OPENCODE_TURNS = [(12, 0, 6_000, 5), (15, 6_000, 700, 6)]
CLAUDE_TURNS = [(20, 0, 9_000, 7), (25, 9_000, 400, 8)]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(default=Behavior(text=REPLY), valid_keys=[KEY]) as upstream:
        yield upstream


def _hybrid_with_dumps(settings: Settings) -> None:
    settings.cache.anthropic_mode = "hybrid"
    settings.dumps.enabled = True


@pytest.fixture
def gateway(fake: FakeAnthropic) -> Iterator[GatewayProcess]:
    paths = Paths.from_env()
    e2e_keychain(paths)
    added = run_cli("accounts", "add", "anthropic", "--label", "main", "--api-key-stdin", input=KEY + "\n")
    assert added.returncode == 0, added.stderr
    SettingsStore(paths.settings_file).update(_hybrid_with_dumps)
    process = start_gateway_process(env={"HEADWAY_ANTHROPIC_BASE_URL": fake.url})
    try:
        yield process
    finally:
        assert process.stop() == 0, process.output()


def _messages(fake: FakeAnthropic) -> list[Any]:
    return [r for r in fake.requests if r.path == "/v1/messages"]


def _one_turn(fake: FakeAnthropic, turn: tuple[int, int, int, int], run: Any) -> AgentResult:
    """Script the fake's answer for exactly one model request, run the agent, check it made exactly that one."""
    before = len(_messages(fake))
    fake.enqueue(Behavior(text=REPLY, usage=anthropic_usage(*turn)))
    result: AgentResult = run()
    assert result.returncode == 0, result.describe()
    assert REPLY in result.output
    assert len(_messages(fake)) == before + 1, [r.json for r in _messages(fake)[before:]]
    return result


def _analyze(*args: str) -> dict[str, Any]:
    result = run_cli("analyze", "cache", "--json", *args)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _check_turns(
    turns: list[dict[str, Any]], expected: list[tuple[int, int, int, int]], *, ttl_split: bool
) -> None:
    assert len(turns) == len(expected)
    for turn, (uncached, read, write, output) in zip(turns, expected, strict=True):
        assert (turn["uncached"], turn["cache_read"], turn["cache_write"], turn["output"]) == (
            uncached,
            read,
            write,
            output,
        )
        assert turn["prompt"] == uncached + read + write
        assert turn["hit_ratio"] == pytest.approx(read / (uncached + read + write))
        assert turn["model"] == MODEL
        assert turn["event"] is None
        if ttl_split:
            assert (turn["cache_write_1h"], turn["cache_write_5m"]) == (write, 0)
    first, second = turns
    assert first["gap_s"] is None and second["gap_s"] > 0
    # counterfactuals: no cache and actual are exact; the cached scenarios read the estimated shared prefix
    for turn, (uncached, read, write, output) in zip(turns, expected, strict=True):
        prompt, shared, out = uncached + read + write, turn["shared_prefix"], output * OUT
        write_price = W1 if ttl_split else W5  # OpenCode records no TTL split: writes at the 5-minute price
        costs = turn["costs"]
        assert costs["actual"] == pytest.approx(uncached * IN + read * READ + write * write_price + out)
        assert costs["no_cache"] == pytest.approx(prompt * IN + out)
        assert costs["cache_5m"] == pytest.approx(shared * READ + (prompt - shared) * W5 + out)
        assert costs["cache_1h"] == pytest.approx(shared * READ + (prompt - shared) * W1 + out)
    prev_prompt = sum(expected[0][:3])
    assert first["shared_prefix"] == 0 and 0 < second["shared_prefix"] <= prev_prompt


def test_opencode_and_claude_code_sessions_are_analysed(
    gateway: GatewayProcess, fake: FakeAnthropic, tmp_path: Path
) -> None:
    require_agent("opencode")
    require_agent("claude")

    # OpenCode: a session, then `--continue` in the same data folder
    oc_dir = tmp_path / "oc"
    oc_dir.mkdir()
    first_oc = _one_turn(
        fake,
        OPENCODE_TURNS[0],
        lambda: run_opencode(
            base_url=gateway.url,
            api_key=gateway.key,
            model=f"anthropic/{MODEL}",
            prompt=PROMPT,
            workdir=oc_dir,
        ),
    )
    assert first_oc.db_path is not None and first_oc.state_dir is not None
    oc_data = first_oc.state_dir / "data"
    _one_turn(
        fake,
        OPENCODE_TURNS[1],
        lambda: run_opencode(
            base_url=gateway.url,
            api_key=gateway.key,
            model=f"anthropic/{MODEL}",
            prompt="And one more greeting.",
            workdir=oc_dir,
            extra_args=["--continue"],
            env_extra={"XDG_DATA_HOME": str(oc_data)},
        ),
    )
    with sqlite3.connect(first_oc.db_path) as conn:
        (oc_session,) = [row[0] for row in conn.execute("SELECT id FROM session")]

    # Claude Code: a session, then `--continue` with the same config folder
    cc_dir = tmp_path / "cc"
    cc_dir.mkdir()
    first_cc = _one_turn(
        fake,
        CLAUDE_TURNS[0],
        lambda: run_claude_code(
            base_url=gateway.url, api_key=gateway.key, prompt=PROMPT, workdir=cc_dir, model=MODEL
        ),
    )
    assert first_cc.state_dir is not None
    state = first_cc.state_dir
    _one_turn(
        fake,
        CLAUDE_TURNS[1],
        lambda: run_claude_code(
            base_url=gateway.url,
            api_key=gateway.key,
            prompt="And one more greeting.",
            workdir=cc_dir,
            model=MODEL,
            extra_args=["--continue"],
            env_extra={"HOME": str(state / "home"), "CLAUDE_CONFIG_DIR": str(state / "config" / "claude")},
        ),
    )
    cc_sessions = {r.headers.get("x-claude-code-session-id") for r in _messages(fake)[-2:]}
    assert len(cc_sessions) == 1
    (cc_session,) = cc_sessions
    # hybrid mode sent 1h breakpoints upstream
    assert '"ttl":"1h"' in _messages(fake)[-1].body.decode()

    # Headway's log and dumps (written off the request path: wait for all four of each)
    def complete() -> bool:
        data = _analyze()
        return bool(data["totals"]["turns"] == 4 and data["dumps_used"] == 4)

    assert wait_until(complete, timeout=15, interval=0.3), _analyze()
    chart = tmp_path / "cache.svg"
    data = _analyze("--chart", str(chart))
    sessions = {s["session_id"]: s for s in data["sessions"]}
    assert set(sessions) == {oc_session, cc_session}
    for session_id, expected in ((oc_session, OPENCODE_TURNS), (cc_session, CLAUDE_TURNS)):
        turns = sessions[session_id]["turns"]
        _check_turns(turns, expected, ttl_split=True)
        assert all(t["dump"] for t in turns)
        assert turns[1]["prefix_source"] == "dumps"
        # the agent appended to its conversation: most of the second prompt is the first one
        assert turns[1]["shared_prefix"] >= 0.5 * sum(expected[0][:3])
        totals = sessions[session_id]["totals"]
        assert totals["breaks"] == 0 and totals["expiries"] == 0
        assert totals["cache_read"] == expected[1][1]
    svg = ET.fromstring(chart.read_text())
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}g[@class='turn']")) == 4

    per_session = _analyze("--session", cc_session)
    assert [s["session_id"] for s in per_session["sessions"]] == [cc_session]
    text = run_cli("analyze", "cache", "--session", oc_session)
    assert text.returncode == 0, text.stderr
    assert f"Session {oc_session}" in text.stdout and "6,000 (1h)" in text.stdout

    # the same analysis over OpenCode's REAL database
    oc = _analyze("--opencode-db", str(first_oc.db_path))
    assert oc["source"] == "opencode"
    (oc_report,) = oc["sessions"]
    assert oc_report["session_id"] == oc_session and oc_report["title"] == "headway test"
    _check_turns(oc_report["turns"], OPENCODE_TURNS, ttl_split=False)
    assert oc_report["turns"][1]["prefix_source"] == "previous-turn"
    assert oc_report["turns"][1]["shared_prefix"] == sum(OPENCODE_TURNS[0][:3])
    for turn in oc_report["turns"]:
        assert turn["costs"]["recorded"] == pytest.approx(turn["costs"]["actual"])  # OpenCode's own cost
