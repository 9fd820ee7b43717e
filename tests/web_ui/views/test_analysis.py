"""The Cache analysis section: the analyzer's report per session and turn, and its chart served as a checked image."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import httpx
import pytest

from proxy.features.request_log import RequestRecord
from proxy.wire.usage import Usage
from tests.support.gateway import RunningGateway
from tests.web_ui.conftest import Web
from web_ui.views.analysis import Analyses, UnsafeSvg, checked_svg

MODEL = "claude-sonnet-4-5"


def _turn(ts: float, session: str | None, uncached: int, read: int, write: int) -> RequestRecord:
    return RequestRecord(
        ts=ts,
        route="/v1/messages",
        family="anthropic",
        account_id="main",
        account_label="Main",
        account_kind="anthropic-api-key",
        model=MODEL,
        status=200,
        latency_ms=800,
        usage=Usage(
            input_tokens=uncached, output_tokens=50, cache_read_tokens=read, cache_write_tokens=write
        ),
        session_id=session,
    )


@pytest.fixture
def history(signed_in: Web) -> Web:
    log = signed_in.services.engine.request_log
    now = time.time()
    log.record(_turn(now - 3600, "ses_old", 20, 0, 5_000))
    log.record(_turn(now - 3500, "ses_old", 25, 5_000, 300))
    log.record(_turn(now - 120, "ses_<b>new</b>", 10, 0, 8_000))
    log.record(_turn(now - 60, "ses_<b>new</b>", 12, 8_000, 400))
    log.record(_turn(now - 30, "ses_<b>new</b>", 14, 8_400, 200))
    assert log.flush(5)
    return signed_in


def test_sessions_latest_first_with_totals_and_the_four_costs(history: Web) -> None:
    data = history.get_json("/api/analysis/cache?days=7")
    assert data["days"] == 7
    assert [s["session_id"] for s in data["sessions"]] == ["ses_<b>new</b>", "ses_old"]
    new = data["sessions"][0]
    assert new["key"] == "ses_<b>new</b>" and new["models"] == [MODEL]
    totals = new["totals"]
    assert (totals["turns"], totals["cache_read"], totals["cache_write"], totals["uncached"]) == (
        3,
        16_400,
        8_600,
        36,
    )
    assert totals["hit_ratio"] == pytest.approx(16_400 / (36 + 16_400 + 8_600))
    assert {"breaks", "expiries"} <= set(totals)
    costs = new["costs"]
    assert set(costs) >= {"actual", "no_cache", "cache_5m", "cache_1h"}
    assert costs["no_cache"] > costs["actual"] > 0
    assert data["totals"]["turns"] == 5 and data["assumptions"]
    assert "turns" not in new  # the list stays small; turns come per session


def test_one_session_with_its_turns(history: Web) -> None:
    data = history.client.get(
        "/api/analysis/cache/session", query_string={"days": "7", "session": "ses_<b>new</b>"}
    )
    assert data.status_code == 200
    session: dict[str, Any] = data.get_json()["session"]
    assert [t["index"] for t in session["turns"]] == [1, 2, 3]
    assert [t["cache_read"] for t in session["turns"]] == [0, 8_000, 8_400]
    assert session["turns"][0]["gap_s"] is None and session["turns"][1]["gap_s"] > 0
    assert {"actual", "no_cache", "cache_5m", "cache_1h"} <= set(session["turns"][1]["costs"])
    missing = history.client.get("/api/analysis/cache/session", query_string={"session": "nope"})
    assert missing.status_code == 404


def test_the_chart_is_a_checked_svg_image_with_its_own_policy(history: Web) -> None:
    response = history.client.get(
        "/api/analysis/cache.svg", query_string={"days": "7", "session": "ses_<b>new</b>"}
    )
    assert response.status_code == 200
    assert response.mimetype == "image/svg+xml"
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    svg = response.get_data(as_text=True)
    assert (
        svg.lstrip().startswith("<svg") and "<script" not in svg.lower() and " on" not in svg.split(">", 1)[0]
    )
    assert "style=" not in svg and "href" not in svg
    assert "ses_&lt;b&gt;new&lt;/b&gt;" in svg and "<b>" not in svg
    assert svg.count('class="turn"') == 3
    assert history.client.get("/api/analysis/cache.svg", query_string={"session": "nope"}).status_code == 404


def test_the_allowlist_refuses_anything_active() -> None:
    ok = '<svg xmlns="http://www.w3.org/2000/svg"><rect x="1" y="1" width="2" height="2" fill="#fff"/></svg>'
    assert checked_svg(ok) == ok
    for bad in (
        '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><rect onclick="alert(1)"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill:red"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink"><a x:href="javascript:1"/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><foreignObject/></svg>',
        '<svg xmlns="http://www.w3.org/2000/svg"><rect fill="url(https://x.test/a)"/></svg>',
        "<svg><rect/>",
    ):
        with pytest.raises(UnsafeSvg):
            checked_svg(bad)


def test_an_empty_log_and_the_section_on_the_page(signed_in: Web) -> None:
    data = signed_in.get_json("/api/analysis/cache?days=1")
    assert data["sessions"] == [] and data["days"] == 1
    html = signed_in.client.get("/").get_data(as_text=True)
    assert 'id="analysis"' in html and 'for="analysis-days"' in html and 'id="analysis-chart"' in html
    assert signed_in.client.get("/api/analysis/cache?days=bogus").get_json()["days"] == 7


def test_reports_are_reused_briefly(history: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    from web_ui.views import analysis

    calls: list[float] = []
    real = analysis.analyze_headway

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["days"])
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis, "analyze_headway", counting)
    for _ in range(3):
        history.get_json("/api/analysis/cache?days=14")
    history.client.get("/api/analysis/cache/session", query_string={"days": "14", "session": "ses_old"})
    assert calls == [14.0]


class _Inline(Executor):
    """Runs the analysis before ``submit`` returns: the future is already done, as when a fast analysis wins the race."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def _answers_within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()`` on another thread; fails (instead of hanging the run) when it does not return in time."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "the request hung (a lock held while a done-callback ran)"
    return result[0]


@pytest.mark.timeout(30)
def test_a_report_that_finished_before_its_callback_was_added_does_not_hang(signed_in: Web) -> None:
    signed_in.services.web.context.caches["analyses"] = Analyses(pool=_Inline())
    for _ in range(3):
        response = _answers_within(10, lambda: signed_in.client.get("/api/analysis/cache?days=7"))
        assert response.status_code == 200 and response.get_json()["sessions"] == []
    assert _answers_within(10, lambda: signed_in.client.get("/api/analysis/cache?days=1")).status_code == 200


@pytest.mark.timeout(60)
def test_many_page_opens_on_a_fresh_install_all_answer(gateway: RunningGateway) -> None:
    """More opens than waitress has worker threads, against the real server with an empty request log."""
    web = gateway.services.web
    assert web is not None
    with httpx.Client(timeout=15) as browser:
        assert browser.get(f"{web.url}/login?token={web.tokens.mint()}").status_code == 303
        for days in (1, 7, 14, 30, 1, 7, 14, 30, 2, 3):
            response = browser.get(f"{web.url}/api/analysis/cache", params={"days": days})
            assert response.status_code == 200, response.text
        assert browser.get(f"{web.url}/api/state").status_code == 200
