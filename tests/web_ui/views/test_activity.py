"""One account's history (web_ui/views/activity.py): requests and tokens per hour for 24 h and per day for 30 days,
drawn server-side with the failed share in the error colour; labels escaped; bad parameters named."""

from __future__ import annotations

import time
from datetime import datetime

from proxy.features.request_log import RequestRecord
from proxy.wire.usage import Usage
from tests.web_ui.conftest import Web

KEY = "sk-ant-api03-" + "w" * 40


def _row(ts: float, status: int = 200, account: str = "work") -> RequestRecord:
    return RequestRecord(
        ts=ts,
        route="/v1/messages",
        family="anthropic",
        account_id=account,
        account_label="Work",
        status=status,
        latency_ms=10,
        usage=Usage(input_tokens=100, output_tokens=20, cache_read_tokens=1000),
    )


def test_hours_and_days_of_one_account(signed_in: Web) -> None:
    signed_in.gateway.add("anthropic", "Work", KEY)
    log = signed_in.services.engine.request_log
    now = time.time()
    hour_start = datetime.fromtimestamp(now).replace(minute=0, second=0, microsecond=0).timestamp()
    recent = max(hour_start, now - 5)  # in this hour, whenever the test runs
    for row in (_row(recent), _row(recent, status=529), _row(now - 5 * 86400), _row(recent, account="home")):
        log.record(row)
    assert log.flush(5)

    hours = signed_in.get_json("/api/accounts/work/activity?unit=hour&metric=requests&width=600")
    assert len(hours["buckets"]) == 24
    assert hours["buckets"][-1]["requests"] == 2 and hours["buckets"][-1]["errors"] == 1
    assert hours["totals"] == {"requests": 2, "errors": 1, "tokens": 2 * 1120}
    assert hours["svg"].count('class="chart-bar series-0"') == 1
    assert hours["svg"].count('class="chart-bar bar-error"') == 1
    assert "2 requests (1 failed)" in hours["svg"]

    days = signed_in.get_json("/api/accounts/work/activity?unit=day&metric=tokens")
    assert len(days["buckets"]) == 30 and days["totals"]["requests"] == 3
    assert "bar-error" not in days["svg"]  # tokens: no failed share
    assert days["svg"].count('class="chart-bar series-0"') == 2


def test_an_account_without_requests_and_bad_parameters(signed_in: Web) -> None:
    signed_in.gateway.add("anthropic", "<b>Work</b>", KEY)
    empty = signed_in.get_json("/api/accounts/b-work-b/activity")
    assert empty["totals"]["requests"] == 0 and "No requests in the last 24 hours" in empty["svg"]
    assert signed_in.client.get("/api/accounts/nobody/activity").status_code == 404
    for query in ("unit=week", "metric=cost", "width=wide"):
        assert signed_in.client.get(f"/api/accounts/b-work-b/activity?{query}").status_code == 400
