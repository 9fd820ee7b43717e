"""The app factory (web_ui/app.py): how refusals and errors are answered, its template filters, its per-page helpers."""

from __future__ import annotations

import logging
import threading

import pytest
from flask import render_template_string

from tests.web_ui.conftest import Web
from web_ui.app import PageAddress


def test_an_unexpected_error_is_a_short_500_and_the_details_go_to_the_log(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    def boom() -> str:
        raise RuntimeError("secret detail sk-ant-api03-abcdefghijklmnop")

    web.app.add_url_rule("/api/boom", "boom", boom)
    web.app.add_url_rule("/boom", "boom_page", boom)
    web.sign_in()
    caplog.set_level(logging.ERROR, logger="headway.web")

    api = web.client.get("/api/boom")
    assert api.status_code == 500
    assert api.get_json() == {"error": "something went wrong; the log has the details"}
    page = web.client.get("/boom")
    assert page.status_code == 500 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "Something went wrong" in html and "secret detail" not in html and "Traceback" not in html
    logged = [r for r in caplog.records if r.name == "headway.web"]
    assert len(logged) == 2 and all(r.exc_info and r.exc_info[0] is RuntimeError for r in logged)
    assert "GET /api/boom" in logged[0].getMessage()
    # the error answer still carries the security headers
    assert api.headers["Cache-Control"] == "no-store" and "Content-Security-Policy" in api.headers


def test_http_errors_are_json_for_the_api_and_calls_and_html_for_page_loads(signed_in: Web) -> None:
    missing = signed_in.client.get("/api/no-such-thing")
    assert missing.status_code == 404 and "error" in missing.get_json()
    page = signed_in.client.get("/no-such-page")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "Not found" in page.get_data(as_text=True)
    # a script's POST to a page path is answered in JSON (the script reads it); a form navigation in HTML
    wrong_method = signed_in.post("/")
    assert wrong_method.status_code == 405 and "error" in wrong_method.get_json()
    navigated = signed_in.post("/", **{"Sec-Fetch-Mode": "navigate"})
    assert navigated.status_code == 405 and navigated.mimetype == "text/html"


def test_a_body_over_the_limit_is_refused_with_413(signed_in: Web) -> None:
    response = signed_in.client.post(
        "/api/settings",
        data=b"{" + b" " * (1024 * 1024 + 10) + b"}",
        headers={"X-CSRF-Token": signed_in.csrf, "Content-Type": "application/json"},
    )
    assert response.status_code == 413 and "error" in response.get_json()


def test_preflight_requests_are_refused(signed_in: Web) -> None:
    response = signed_in.client.open(
        "/api/settings", method="OPTIONS", headers={"Origin": "http://127.0.0.1:9"}
    )
    assert response.status_code == 405
    assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")]


def test_the_template_filters(web: Web) -> None:
    with web.app.test_request_context():
        assert render_template_string("{{ 60.0|num }} {{ 0.5|num }} {{ 3|num }}") == "60 0.5 3"
        ticks = render_template_string("{{ text|ticks }}", text="run `headway doctor` <b>now</b> `<i>`")
    # escaped first, so a backticked part can hold no markup of its own
    assert ticks == "run <code>headway doctor</code> &lt;b&gt;now&lt;/b&gt; <code>&lt;i&gt;</code>"


def test_a_helper_is_made_once_per_page_even_when_asked_at_once(web: Web) -> None:
    context = web.app.extensions["headway"]
    made: list[object] = []
    barrier = threading.Barrier(8)

    class Thing:
        def __init__(self) -> None:
            made.append(self)

    got: list[Thing] = []

    def ask() -> None:
        barrier.wait(10)
        got.append(context.helper("test-thing", Thing))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(got) == 8 and all(thing is got[0] for thing in got)  # extra ones built in a race are dropped
    assert context.helper("test-thing", Thing) is got[0]


@pytest.mark.parametrize(
    ("port", "wanted", "moved"), [(8765, 8765, False), (40123, 0, False), (40123, 8765, True)]
)
def test_the_page_says_it_moved_only_when_it_did_not_get_the_port_it_wanted(
    port: int, wanted: int, moved: bool
) -> None:
    assert PageAddress(f"http://127.0.0.1:{port}/", port, wanted).moved is moved
