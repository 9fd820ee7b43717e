"""Usage per day and account (web_ui/views/usage.py): the report, the server-drawn chart, the endpoint."""

from __future__ import annotations

import time

import pytest

from proxy.features.request_log import RequestRecord
from proxy.wire.usage import Usage
from tests.web_ui.conftest import Web
from web_ui.views.usage import Metric, daily_usage, format_value, render_chart


def _record(
    ts: float, account: str, label: str, cost: float, chain: list[str] | None = None
) -> RequestRecord:
    return RequestRecord(
        ts=ts,
        route="/v1/messages",
        family="anthropic",
        account_id=account,
        account_label=label,
        model="claude-sonnet-4-5",
        status=200,
        latency_ms=10,
        usage=Usage(input_tokens=100, output_tokens=20),
        cost_usd=cost,
        fallback_chain=chain or [f"{account}:200"],
    )


def test_usage_per_day_and_account_with_labels_escaped(signed_in: Web) -> None:
    log = signed_in.services.engine.request_log
    now = time.time()
    log.record(_record(now - 60, "work", "<script>alert(1)</script>", 0.25, ["home:429", "work:200"]))
    log.record(_record(now - 86400 * 2, "work", "<script>alert(1)</script>", 0.5))
    log.record(_record(now - 30, "home", "Home", 0.1))
    assert log.flush(5)
    report = daily_usage(log, 7, now)
    assert [a.key for a in report.accounts] == ["work", "home"]
    assert report.accounts[0].requests == 2 and report.accounts[0].fallbacks == 1
    assert report.accounts[0].tokens == 240
    svg = render_chart(report, "cost")
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<rect") == 3

    data = signed_in.get_json("/api/usage?days=7&metric=requests")
    assert data["metric"] == "requests" and len(data["days"]) == 7
    assert {a["key"]: a["requests"] for a in data["accounts"]} == {"work": 2, "home": 1}
    assert "<script>alert" not in data["svg"]
    recent = signed_in.get_json("/api/state")["recent"]
    assert recent["requests_24h"] == 2 and recent["fallbacks_24h"] == 1
    assert recent["fallbacks"][0]["chain"] == ["home:429", "work:200"]


def test_an_empty_log_draws_an_empty_chart(signed_in: Web) -> None:
    data = signed_in.get_json("/api/usage")
    assert data["accounts"] == [] and "No requests in this period" in data["svg"]


@pytest.mark.parametrize(
    ("metric", "value", "shown"),
    [
        ("cost", 0, "$0"),
        ("cost", 0.0004, "$0.0004"),  # a small request: never "$0"
        ("cost", 0.00025, "$0.00025"),
        ("cost", 0.0123, "$0.012"),
        ("cost", 0.05, "$0.05"),
        ("cost", 12.345, "$12.35"),
        ("cost", 1234.5, "$1,234.50"),
        ("tokens", 999, "999"),
        ("tokens", 1000, "1k"),
        ("tokens", 1500, "1.5k"),
        ("tokens", 999_950, "1M"),
        ("tokens", 2_345_678, "2.3M"),
        ("requests", 7, "7"),
    ],
)
def test_values_are_shown_short_and_never_round_to_nothing(metric: Metric, value: float, shown: str) -> None:
    assert format_value(metric, value) == shown


def test_a_day_of_tiny_costs_is_not_summed_up_as_zero(signed_in: Web) -> None:
    log = signed_in.services.engine.request_log
    now = time.time()
    log.record(_record(now - 10, "work", "Work", 0.0002))
    log.record(_record(now - 5, "work", "Work", 0.0002))
    assert log.flush(5)
    svg = render_chart(daily_usage(log, 1, now), "cost")
    assert "$0.0004 in total" in svg and "Work — " in svg


def test_the_endpoint_bounds_its_parameters(signed_in: Web) -> None:
    assert len(signed_in.get_json("/api/usage?days=0")["days"]) == 1
    assert len(signed_in.get_json("/api/usage?days=100000")["days"]) == 90
    assert len(signed_in.get_json("/api/usage?days=seven")["days"]) == 7
    odd = signed_in.get_json("/api/usage?metric=<b>&width=99999999")
    assert odd["metric"] == "cost" and 'viewBox="0 0 1600 240"' in odd["svg"]
    narrow = signed_in.get_json("/api/usage?width=-5")
    assert 'viewBox="0 0 300 200"' in narrow["svg"]
    assert 'viewBox="0 0 720 240"' in signed_in.get_json("/api/usage?width=wide")["svg"]
