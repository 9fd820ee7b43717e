"""The cache analyzer over Headway's request log and dumps, built with the real RequestLog and DumpWriter."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from proxy.analyzer import CacheReport, analyze_headway, format_report
from proxy.config.paths import Paths
from proxy.features.dumps import DumpEntry, DumpWriter
from proxy.features.request_log import RequestLog, RequestRecord
from proxy.wire.usage import Usage
from tests.support.gateway import run_cli

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
M = 1_000_000
# claude-sonnet-4-5 list prices, USD per token (genai-prices): input, read, 5m write, 1h write, output
IN, READ, W5, W1, OUT = 3 / M, 0.3 / M, 3.75 / M, 6 / M, 15 / M
CC = {"type": "ephemeral", "ttl": "1h"}


def conversation(n_messages: int, *, tool_description: str = "Run a shell command") -> dict[str, Any]:
    """An Anthropic body with ``n_messages`` messages and the breakpoint on the last one (as agents do)."""
    messages: list[dict[str, Any]] = [
        {
            "role": "user" if i % 2 == 0 else "assistant",
            "content": [{"type": "text", "text": f"message {i} " + "lorem ipsum " * 40}],
        }
        for i in range(n_messages)
    ]
    messages[-1]["content"][-1]["cache_control"] = CC
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [{"type": "text", "text": "You are a coding agent. " * 50, "cache_control": CC}],
        "messages": messages,
        "tools": [{"name": "bash", "description": tool_description, "input_schema": {"type": "object"}}],
        "stream": True,
    }


class Scenario:
    """Writes log rows (and dumps) the way the engine does: the log's ts is the end, the dump's time too."""

    def __init__(self, root: Path) -> None:
        self.log = RequestLog(root / "requests.sqlite3")
        self.log.start()
        self.dumps = DumpWriter(root / "dumps", max_bytes=10**9, include_sse=False)

    def turn(
        self,
        at: float,
        usage: Usage,
        *,
        body: dict[str, Any] | None = None,
        session: str | None = "ses_1",
        model: str = "claude-sonnet-4-5",
        account: str = "main",
        family: str = "anthropic",
        kind: str = "anthropic-api-key",
        route: str = "/v1/messages",
        latency_ms: float = 1000.0,
        cost: float | None = None,
    ) -> None:
        end = T0 + at + latency_ms / 1000
        if body is not None:
            self.dumps.write(
                DumpEntry(
                    body=json.dumps(body).encode(),
                    route=route,
                    session_id=session,
                    account_id=account,
                    model=model,
                    status=200,
                    usage=asdict(usage),
                    latency_ms=latency_ms,
                    time=end,
                )
            )
        self.log.record(
            RequestRecord(
                ts=end,
                route=route,
                family=family,
                account_id=account,
                account_label=account,
                account_kind=kind,
                model=model,
                status=200,
                latency_ms=latency_ms,
                usage=usage,
                cost_usd=cost,
                session_id=session,
            )
        )

    def report(self, **kwargs: Any) -> CacheReport:
        assert self.log.flush(5.0)
        return analyze_headway(self.log.path, self.dumps.folder, days=None, **kwargs)


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario(tmp_path)
    try:
        yield s
    finally:
        s.log.stop(5.0)


def w1h(n: int) -> dict[str, int]:
    return {"cache_write_tokens": n, "cache_write_1h_tokens": n}


def w5m(n: int) -> dict[str, int]:
    return {"cache_write_tokens": n, "cache_write_5m_tokens": n}


# -- counterfactuals ----------------------------------------------------------------------------------------------


def test_counterfactual_costs_match_a_hand_computed_session(scenario: Scenario) -> None:
    scenario.turn(0, Usage(input_tokens=100, output_tokens=500, **w1h(10_000)), cost=0.0678)
    scenario.turn(60, Usage(input_tokens=200, cache_read_tokens=10_000, output_tokens=500, **w1h(2_000)))
    scenario.turn(660, Usage(input_tokens=300, cache_read_tokens=12_000, output_tokens=500, **w1h(1_000)))
    report = scenario.report()
    (session,) = report.sessions
    t1, t2, t3 = session.turns

    assert [t.prompt for t in session.turns] == [10_100, 12_200, 13_300]
    assert t1.gap_s is None and t2.gap_s == pytest.approx(60) and t3.gap_s == pytest.approx(600)
    assert [t.idle for t in session.turns] == [None, None, "5m"]
    assert [t.shared_prefix for t in session.turns] == [0, 10_100, 12_200]  # previous prompt (no dumps)
    assert [t.prefix_source for t in session.turns] == ["none", "previous-turn", "previous-turn"]
    assert [t.event for t in session.turns] == [None, None, None]
    assert t2.hit_ratio == pytest.approx(10_000 / 12_200)

    out = 500 * OUT
    # no cache: every prompt token at the input price
    assert t1.costs.no_cache == pytest.approx(10_100 * IN + out)
    assert t3.costs.no_cache == pytest.approx(13_300 * IN + out)
    # 5 minutes: turn 2 reads turn 1's prompt; turn 3 comes 10 minutes later and writes everything again
    assert t1.costs.cache_5m == pytest.approx(10_100 * W5 + out)
    assert t2.costs.cache_5m == pytest.approx(10_100 * READ + 2_100 * W5 + out)
    assert t3.costs.cache_5m == pytest.approx(13_300 * W5 + out)
    # 1 hour: turn 3 is still within the window
    assert t1.costs.cache_1h == pytest.approx(10_100 * W1 + out)
    assert t2.costs.cache_1h == pytest.approx(10_100 * READ + 2_100 * W1 + out)
    assert t3.costs.cache_1h == pytest.approx(12_200 * READ + 1_100 * W1 + out)
    # actual: the recorded usage at current prices
    assert t1.costs.actual == pytest.approx(100 * IN + 10_000 * W1 + out)
    assert t3.costs.actual == pytest.approx(300 * IN + 12_000 * READ + 1_000 * W1 + out)
    assert t1.costs.recorded == 0.0678

    assert session.costs.no_cache == pytest.approx(0.1293)
    assert session.costs.cache_5m == pytest.approx(0.121155)
    assert session.costs.cache_1h == pytest.approx(0.10899)
    assert session.costs.actual == pytest.approx(0.1089)
    assert report.costs == session.costs
    assert session.totals.hit_ratio == pytest.approx(22_000 / 35_600)
    assert session.totals.cache_write_1h == 13_000 and session.totals.cache_write_5m == 0
    assert any("approximated by the previous turn" in note for note in session.notes)


def test_dumps_give_the_shared_prefix_by_proportion(scenario: Scenario) -> None:
    first, second = conversation(1), conversation(3)
    scenario.turn(0, Usage(input_tokens=10, output_tokens=5, **w1h(2_000)), body=first)
    scenario.turn(
        30, Usage(input_tokens=10, cache_read_tokens=2_000, output_tokens=5, **w1h(1_000)), body=second
    )
    (session,) = scenario.report().sessions
    turn = session.turns[1]
    assert turn.prefix_source == "dumps" and turn.dump is not None and turn.dump.endswith(".request.json")
    # the first body's prompt (tools, system, first message without its breakpoint) is a strict prefix
    assert 0 < turn.shared_prefix < 3_010
    assert turn.shared_prefix == pytest.approx(3_010 * 0.6, rel=0.25)
    assert turn.costs.cache_5m == pytest.approx(
        turn.shared_prefix * READ + (3_010 - turn.shared_prefix) * W5 + 5 * OUT
    )
    assert turn.event is None


# -- cache events -------------------------------------------------------------------------------------------------


def _three_turns(scenario: Scenario, *, with_dumps: bool) -> None:
    bodies = [
        conversation(1),
        conversation(3),
        conversation(5, tool_description="Run a shell command safely"),
    ]
    usages = [
        Usage(input_tokens=10, output_tokens=5, **w1h(3_000)),
        Usage(input_tokens=10, cache_read_tokens=3_000, output_tokens=5, **w1h(1_000)),
        Usage(input_tokens=10, cache_read_tokens=0, output_tokens=5, **w1h(5_000)),
    ]
    for at, usage, body in zip((0, 30, 60), usages, bodies, strict=True):
        scenario.turn(at, usage, body=body if with_dumps else None)


def test_a_break_with_dumps_names_the_part_and_the_byte(scenario: Scenario) -> None:
    _three_turns(scenario, with_dumps=True)
    report = scenario.report()
    (session,) = report.sessions
    event = session.turns[2].event
    assert event is not None
    assert event.kind == "break" and event.part == "tools" and event.path == "tools[0].description"
    assert event.expected == 4_000 and event.read == 0
    dump = session.turns[2].dump
    assert dump is not None and event.offset is not None
    raw = (scenario.dumps.folder / dump).read_bytes()
    assert raw[event.offset :].startswith(b' safely"')
    assert f"at byte {event.offset:,}" in event.detail
    assert session.totals.breaks == 1 and session.totals.expiries == 0
    assert report.dumps_used == 3
    # tools come first in the prompt: almost nothing is shared
    assert session.turns[2].shared_prefix < 100


def test_a_break_without_dumps_is_unknown(scenario: Scenario) -> None:
    _three_turns(scenario, with_dumps=False)
    (session,) = scenario.report().sessions
    event = session.turns[2].event
    assert event is not None
    assert event.kind == "break" and event.part is None and event.offset is None
    assert event.detail == "unknown (turn on dumps)"
    assert "BREAK unknown (turn on dumps)" in format_report(scenario.report())


def test_moved_breakpoints_and_appends_are_not_breaks_and_a_lost_read_is_a_miss(scenario: Scenario) -> None:
    scenario.turn(0, Usage(input_tokens=10, output_tokens=5, **w1h(3_000)), body=conversation(1))
    scenario.turn(30, Usage(input_tokens=10, cache_read_tokens=3_000, **w1h(900)), body=conversation(3))
    scenario.turn(60, Usage(input_tokens=10, cache_read_tokens=0, **w1h(5_000)), body=conversation(5))
    (session,) = scenario.report().sessions
    assert session.turns[1].event is None
    event = session.turns[2].event
    assert event is not None and event.kind == "miss"
    assert event.part == "messages[3]"  # the first appended message: everything before it is intact
    assert session.turns[2].shared_prefix > 3_000


def test_expiry_depends_on_the_ttl_the_previous_turn_wrote(scenario: Scenario) -> None:
    # 5-minute writes, 6 minutes idle: expired
    scenario.turn(0, Usage(input_tokens=10, **w5m(3_000)), session="five")
    scenario.turn(360, Usage(input_tokens=10, **w5m(3_100)), session="five")
    # 1-hour writes, 10 minutes idle: should have been read, so a break
    scenario.turn(0, Usage(input_tokens=10, **w1h(3_000)), session="hour")
    scenario.turn(600, Usage(input_tokens=10, **w1h(3_100)), session="hour")
    # 1-hour writes, 2 hours idle: expired
    scenario.turn(7800, Usage(input_tokens=10, **w1h(3_200)), session="hour")
    report = scenario.report()
    five, hour = sorted(report.sessions, key=lambda s: s.session_id or "")
    assert five.session_id == "five"
    expiry = five.turns[1].event
    assert expiry is not None and expiry.kind == "expiry" and "6m00s > 5 min TTL" in expiry.detail
    assert five.turns[1].idle == "5m"
    kinds = [t.event.kind if t.event else None for t in hour.turns]
    assert kinds == [None, "break", "expiry"]
    assert hour.turns[1].idle == "5m"
    assert hour.turns[2].idle == "1h" and hour.turns[2].gap_s == pytest.approx(7200)
    assert hour.turns[2].event is not None and "2h00m > 60 min TTL" in hour.turns[2].event.detail
    assert hour.totals.breaks == 1 and hour.totals.expiries == 1
    assert report.totals.expiries == 2


def test_an_account_switch_is_named(scenario: Scenario) -> None:
    scenario.turn(0, Usage(input_tokens=10, **w1h(3_000)), account="main")
    scenario.turn(20, Usage(input_tokens=10, **w1h(3_100)), account="backup")
    (session,) = scenario.report().sessions
    event = session.turns[1].event
    assert event is not None and event.kind == "account-switch" and "main → backup" in event.detail


def test_small_requests_and_healthy_reads_are_not_events(scenario: Scenario) -> None:
    scenario.turn(0, Usage(input_tokens=10, **w1h(900)))
    scenario.turn(10, Usage(input_tokens=10, **w1h(950)))  # below the 1,024-token minimum
    scenario.turn(20, Usage(input_tokens=10, **w1h(3_000)))
    scenario.turn(30, Usage(input_tokens=10, cache_read_tokens=1_600, **w1h(2_000)))  # ≥ half of 3,000
    (session,) = scenario.report().sessions
    assert [t.event for t in session.turns] == [None] * 4


def test_turns_compare_with_the_previous_turn_of_the_same_model(scenario: Scenario) -> None:
    scenario.turn(0, Usage(input_tokens=10, **w1h(5_000)))
    scenario.turn(5, Usage(input_tokens=300, output_tokens=20), model="claude-haiku-4-5")  # a title call
    scenario.turn(20, Usage(input_tokens=10, cache_read_tokens=5_000, **w1h(500)))
    (session,) = scenario.report().sessions
    _main, title, again = session.turns
    assert title.gap_s is None and title.shared_prefix == 0
    assert again.gap_s == pytest.approx(20) and again.shared_prefix == 5_010 and again.event is None


def test_claude_code_subagents_are_compared_with_themselves(scenario: Scenario) -> None:
    main, sub = conversation(1), conversation(1, tool_description="Explore the code")
    scenario.turn(0, Usage(input_tokens=10, **w1h(5_000)), body=main)
    scenario.dumps.write(
        DumpEntry(
            body=json.dumps(sub).encode(),
            route="/v1/messages",
            session_id="ses_1",
            model="claude-sonnet-4-5",
            request_headers={"x-claude-code-agent-id": "agent-7"},
            usage=asdict(Usage(input_tokens=10, **w1h(2_000))),
            time=T0 + 11,
        )
    )
    scenario.turn(10, Usage(input_tokens=10, **w1h(2_000)))  # matched to the subagent's dump above
    scenario.turn(20, Usage(input_tokens=10, cache_read_tokens=5_000, **w1h(600)), body=conversation(3))
    (session,) = scenario.report().sessions
    _first, subagent, again = session.turns
    assert subagent.agent_id == "agent-7" and subagent.gap_s is None and subagent.event is None
    assert again.agent_id is None and again.gap_s == pytest.approx(20) and again.event is None
    assert again.prefix_source == "dumps"
    assert "(subagent)" in format_report(scenario.report())


def test_dumps_match_only_their_own_request(scenario: Scenario) -> None:
    body = conversation(1)
    scenario.turn(0, Usage(input_tokens=10, **w1h(3_000)), body=body)
    # a dump of another session at the same moment, and one whose usage differs, are not matched
    scenario.dumps.write(
        DumpEntry(
            body=b"{}",
            route="/v1/messages",
            session_id="other",
            usage=asdict(Usage(input_tokens=10)),
            time=T0 + 30 + 1,
        )
    )
    scenario.dumps.write(
        DumpEntry(
            body=b"{}",
            route="/v1/messages",
            session_id="ses_1",
            usage=asdict(Usage(input_tokens=99)),
            time=T0 + 31,
        )
    )
    scenario.turn(30, Usage(input_tokens=10, cache_read_tokens=3_000, **w1h(10)))
    (session,) = scenario.report().sessions
    assert session.turns[0].dump is not None and session.turns[1].dump is None
    assert session.turns[1].prefix_source == "previous-turn"


def test_requests_without_a_session_are_not_compared(scenario: Scenario) -> None:
    scenario.turn(0, Usage(input_tokens=10, **w1h(3_000)), session=None)
    scenario.turn(10, Usage(input_tokens=10, **w1h(3_000)), session=None)
    (session,) = scenario.report().sessions
    assert session.session_id is None
    assert all(t.gap_s is None and t.event is None for t in session.turns)
    assert any("without a session id" in note for note in session.notes)


def test_count_tokens_and_usage_less_rows_are_skipped(scenario: Scenario) -> None:
    scenario.turn(0, Usage(input_tokens=10, **w1h(3_000)))
    scenario.turn(1, Usage(input_tokens=3_000), route="/v1/messages/count_tokens")
    scenario.log.record(
        RequestRecord(
            ts=T0 + 5, route="/v1/messages", family="anthropic", status=529, latency_ms=5, session_id="ses_1"
        )
    )
    (session,) = scenario.report().sessions
    assert session.totals.turns == 1


def test_filters_by_session_and_days(scenario: Scenario) -> None:
    scenario.turn(0, Usage(input_tokens=10), session="a")
    scenario.turn(86400 * 3, Usage(input_tokens=10), session="b")
    assert scenario.log.flush(5.0)
    only_b = analyze_headway(scenario.log.path, None, days=None, session_id="b")
    assert [s.session_id for s in only_b.sessions] == ["b"] and only_b.session_filter == "b"
    recent = analyze_headway(scenario.log.path, None, days=1, now=T0 + 86400 * 3 + 10)
    assert [s.session_id for s in recent.sessions] == ["b"]


# -- ChatGPT / OpenAI -----------------------------------------------------------------------------------------------


def responses_body(n_inputs: int, *, stabilizer: bool) -> dict[str, Any]:
    tools: list[dict[str, Any]] = [{"type": "function", "name": "shell", "parameters": {"type": "object"}}]
    if stabilizer:
        tools.append({"type": "web_search", "external_web_access": False})
    return {
        "model": "gpt-5-codex",
        "instructions": "You are Codex. " * 40,
        "input": [{"role": "user", "content": f"turn {i} " + "words " * 50} for i in range(n_inputs)],
        "tools": tools,
        "store": False,
        "stream": True,
    }


def _chatgpt(scenario: Scenario, session: str, *, stabilizer: bool, reads: list[int]) -> None:
    for i, read in enumerate(reads):
        scenario.turn(
            i * 20,
            Usage(input_tokens=4_000 + 100 * i - read, cache_read_tokens=read, output_tokens=50),
            body=responses_body(i + 1, stabilizer=stabilizer),
            session=session,
            model="gpt-5-codex",
            family="openai",
            kind="chatgpt",
            account="personal",
            route="/v1/responses",
        )


def test_chatgpt_hit_ratio_and_the_stabilizer_effect(scenario: Scenario) -> None:
    _chatgpt(scenario, "with", stabilizer=True, reads=[0, 3_968, 4_096])
    _chatgpt(scenario, "without", stabilizer=False, reads=[0, 1_024, 0])
    report = scenario.report()
    by_id = {s.session_id: s for s in report.sessions}
    with_, without = by_id["with"], by_id["without"]
    assert [t.stabilizer for t in with_.turns] == [True, True, True]
    assert [t.stabilizer for t in without.turns] == [False, False, False]
    assert with_.turns[1].hit_ratio == pytest.approx(3_968 / 4_100)
    # OpenAI caches automatically: a turn is expected to read the previous turn's whole prompt
    event = without.turns[1].event
    assert event is not None and event.expected == 4_000 and event.kind == "miss"
    # subscription accounts are not billed per token
    assert with_.costs.actual is None and with_.costs.no_cache is None
    assert any("subscription" in note for note in with_.notes)
    effect = report.stabilizer
    assert effect is not None and effect.measurable
    assert effect.with_turns == 2 and effect.without_turns == 2
    assert effect.with_hit_ratio == pytest.approx((3_968 + 4_096) / (4_100 + 4_200))
    assert effect.without_hit_ratio == pytest.approx(1_024 / (4_100 + 4_200))
    assert "ChatGPT cache stabilizer: hit 97% with it (2 turns) vs 12% without (2 turns)" in format_report(
        report
    )


def test_the_stabilizer_effect_needs_both_kinds(scenario: Scenario) -> None:
    _chatgpt(scenario, "with", stabilizer=True, reads=[0, 3_968])
    effect = scenario.report().stabilizer
    assert effect is not None and not effect.measurable
    assert "cannot be measured from this data" in effect.note


def test_openai_api_key_rows_are_priced(scenario: Scenario) -> None:
    scenario.turn(
        0, Usage(input_tokens=4_000, output_tokens=10), family="openai", kind="openai-api-key", model="gpt-5"
    )
    scenario.turn(
        30,
        Usage(input_tokens=200, cache_read_tokens=3_968, output_tokens=10),
        family="openai",
        kind="openai-api-key",
        model="gpt-5",
    )
    report = scenario.report()
    turn = report.sessions[0].turns[1]
    # gpt-5: 1.25 in, 0.125 cached, writes not billed (priced as input), 10 out
    assert turn.costs.actual == pytest.approx((200 * 1.25 + 3_968 * 0.125 + 10 * 10) / M)
    assert turn.costs.no_cache == pytest.approx((4_168 * 1.25 + 10 * 10) / M)
    assert turn.costs.cache_5m == pytest.approx((4_000 * 0.125 + 168 * 1.25 + 10 * 10) / M)
    assert report.stabilizer is None


# -- output -------------------------------------------------------------------------------------------------------


def test_json_shape(scenario: Scenario) -> None:
    _three_turns(scenario, with_dumps=True)
    data = json.loads(scenario.report().to_json())
    assert set(data) >= {
        "source",
        "generated_at",
        "since",
        "session_filter",
        "sessions",
        "totals",
        "costs",
        "stabilizer",
        "prices",
        "assumptions",
        "dumps_used",
    }
    assert data["source"] == "headway" and data["since"] is None
    session = data["sessions"][0]
    assert set(session) == {"session_id", "parent_session_id", "title", "turns", "totals", "costs", "notes"}
    turn = session["turns"][2]
    assert set(turn) >= {
        "index",
        "time",
        "start",
        "gap_s",
        "model",
        "uncached",
        "cache_read",
        "cache_write",
        "cache_write_5m",
        "cache_write_1h",
        "output",
        "prompt",
        "hit_ratio",
        "shared_prefix",
        "prefix_source",
        "idle",
        "event",
        "costs",
        "dump",
    }
    assert turn["time"].endswith("Z") and turn["index"] == 3
    assert turn["event"]["kind"] == "break" and turn["event"]["part"] == "tools"
    assert set(turn["costs"]) == {"actual", "no_cache", "cache_5m", "cache_1h", "recorded"}
    assert set(session["totals"]) >= {"turns", "hit_ratio", "breaks", "expiries"}
    assert data["prices"][0]["model"] == "claude-sonnet-4-5"


def test_text_report(scenario: Scenario) -> None:
    _three_turns(scenario, with_dumps=True)
    text = format_report(scenario.report())
    assert "Session ses_1" in text
    for heading in ("uncached", "cache read", "cache write", "hit %"):
        assert heading in text
    assert "3,000 (1h)" in text and "BREAK prefix broke in tools[0].description at byte" in text
    assert "cost at current prices: actual $" in text and "5-min cache $" in text and "1-hour cache $" in text
    assert "Model:" in text and "no cache: every prompt token" in text


def test_cli_over_the_headway_home() -> None:
    paths = Paths.from_env()
    s = Scenario(paths.data_dir)
    s.dumps = DumpWriter(paths.dumps_dir, max_bytes=10**9, include_sse=False)
    try:
        _three_turns(s, with_dumps=True)
        assert s.log.flush(5.0)
    finally:
        s.log.stop(5.0)
    result = run_cli("analyze", "cache", "--json", "--days", "3650")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dumps_used"] == 3
    assert [t["cache_read"] for t in data["sessions"][0]["turns"]] == [0, 3_000, 0]
    text = run_cli("analyze", "cache", "--days", "3650", "--session", "nope")
    assert text.returncode == 0 and "No requests with usage" in text.stdout
    missing = run_cli("analyze", "cache", "--opencode-db", str(paths.data_dir / "missing.db"))
    assert missing.returncode != 0 and "no OpenCode database" in missing.stderr


def test_a_second_copy_of_the_body_is_not_needed_for_the_meta_diff(scenario: Scenario) -> None:
    """When the previous request file was pruned, the current dump's own diff still gives a (raw) prefix."""
    scenario.turn(0, Usage(input_tokens=10, **w1h(3_000)), body=conversation(1))
    scenario.turn(30, Usage(input_tokens=10, **w1h(3_500)), body=copy.deepcopy(conversation(3)))
    first = sorted(scenario.dumps.folder.glob("*.request.json"))[0]
    first.unlink()
    (session,) = scenario.report().sessions
    turn = session.turns[1]
    assert turn.prefix_source == "dump-meta"
    assert turn.event is not None and turn.event.kind == "break" and turn.event.offset is not None
