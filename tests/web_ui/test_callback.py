"""web_ui.callback: the OAuth callback app (Flask test client) and its server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from flask.testing import FlaskClient

from proxy.auth import callback as auth_callback
from proxy.auth.callback import (
    CallbackClosed,
    CallbackPage,
    CallbackRefused,
    CallbackServerFactory,
    CallbackTimeout,
    PortBusy,
    redirect_uri_for,
)
from web_ui.callback import CallbackServer, create_callback_app

STATE = "s" * 43
PORT = 1455


class Recorder:
    def __init__(self, page: CallbackPage | None = None) -> None:
        self.codes: list[str] = []
        self.refusals: list[str] = []
        self.page = page or CallbackPage(True, "Headway signed in as user@example.com (plan plus).")

    def on_code(self, code: str) -> CallbackPage:
        self.codes.append(code)
        return self.page

    def on_refused(self, reason: str) -> None:
        self.refusals.append(reason)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def client(recorder: Recorder) -> FlaskClient:
    app = create_callback_app(
        state=STATE, port=PORT, on_code=recorder.on_code, on_refused=recorder.on_refused
    )
    return app.test_client()


def _get(client: FlaskClient, query: str, host: str = f"localhost:{PORT}") -> tuple[int, str, dict[str, str]]:
    response = client.get(f"/auth/callback?{query}", headers={"Host": host})
    return response.status_code, response.get_data(as_text=True), dict(response.headers)


def test_redirect_uri_spells_localhost() -> None:
    assert redirect_uri_for(1455) == "http://localhost:1455/auth/callback"


def test_good_callback_hands_over_the_code_and_shows_its_page(
    client: FlaskClient, recorder: Recorder
) -> None:
    status, body, headers = _get(client, f"code=ac_123&state={STATE}")
    assert status == 200
    assert recorder.codes == ["ac_123"] and recorder.refusals == []
    assert "Signed in to ChatGPT" in body
    assert "Headway signed in as user@example.com (plan plus)." in body
    assert "close this tab" in body
    # Self-contained: no scripts, no external stylesheets, images or links; the one inline style is hashed.
    for needle in ("<script", "<link", "<img", "src=", "href=", "http://", "https://"):
        assert needle not in body
    csp = headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "style-src 'sha256-" in csp and "frame-ancestors 'none'" in csp
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Content-Type"].startswith("text/html")


def test_inline_style_hash_matches_the_style_served(client: FlaskClient) -> None:
    import base64
    import hashlib
    import re

    _, body, headers = _get(client, f"code=ac_1&state={STATE}")
    style = re.search(r"<style>(.*?)</style>", body, re.S)
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"'sha256-{digest}'" in headers["Content-Security-Policy"]


@pytest.mark.parametrize("host", [f"localhost:{PORT}", f"127.0.0.1:{PORT}", f"LOCALHOST:{PORT}"])
def test_loopback_hosts_on_the_port_are_accepted(client: FlaskClient, recorder: Recorder, host: str) -> None:
    status, _, _ = _get(client, f"code=ac_1&state={STATE}", host=host)
    assert status == 200
    assert recorder.codes == ["ac_1"]


@pytest.mark.parametrize(
    "host",
    ["evil.example", f"evil.example:{PORT}", "localhost", "localhost:9999", "127.0.0.1", f"[::1]:{PORT}"],
)
def test_other_hosts_are_refused_before_anything_happens(
    client: FlaskClient, recorder: Recorder, host: str
) -> None:
    status, body, _ = _get(client, f"code=ac_1&state={STATE}", host=host)
    assert status == 400
    assert "Host" in body
    assert recorder.codes == [] and recorder.refusals == []


def test_state_mismatch_is_a_failure_page_and_ends_the_login(client: FlaskClient, recorder: Recorder) -> None:
    status, body, _ = _get(client, "code=ac_1&state=not-the-state")
    assert status == 400
    assert "Sign-in failed" in body and "state mismatch" in body
    assert recorder.codes == []
    assert len(recorder.refusals) == 1 and "state mismatch" in recorder.refusals[0]


def test_missing_state_is_a_mismatch(client: FlaskClient, recorder: Recorder) -> None:
    status, _, _ = _get(client, "code=ac_1")
    assert status == 400
    assert recorder.codes == [] and "state mismatch" in recorder.refusals[0]


def test_non_ascii_state_is_a_mismatch_not_a_crash(client: FlaskClient, recorder: Recorder) -> None:
    status, _, _ = _get(client, "code=ac_1&state=%C3%A9t%C3%A9")
    assert status == 400
    assert "state mismatch" in recorder.refusals[0]


def test_issuer_error_is_a_failure_page(client: FlaskClient, recorder: Recorder) -> None:
    status, body, _ = _get(client, f"error=access_denied&error_description=The+user+said+no&state={STATE}")
    assert status == 400
    assert "Sign-in failed" in body and "access_denied" in body and "The user said no" in body
    assert recorder.codes == []
    assert recorder.refusals == ["the sign-in was refused (access_denied: The user said no)"]


def test_callback_without_code_is_a_failure(client: FlaskClient, recorder: Recorder) -> None:
    status, _, _ = _get(client, f"state={STATE}")
    assert status == 400
    assert recorder.refusals == ["the sign-in response carried no authorization code"]


def test_failure_page_from_the_login_is_shown_and_escaped() -> None:
    recorder = Recorder(CallbackPage(False, "Headway could not finish the sign-in: <script>x</script>"))
    app = create_callback_app(
        state=STATE, port=PORT, on_code=recorder.on_code, on_refused=recorder.on_refused
    )
    status, body, _ = _get(app.test_client(), f"code=ac_1&state={STATE}")
    assert status == 400
    assert "Sign-in failed" in body
    assert "<script>" not in body and "&lt;script&gt;x&lt;/script&gt;" in body


@pytest.mark.parametrize(
    "path", ["/", "/auth", "/auth/callback/", "/static/app.js", "/favicon.ico", "/settings"]
)
def test_everything_else_is_404(client: FlaskClient, path: str) -> None:
    response = client.get(path, headers={"Host": f"localhost:{PORT}"})
    assert response.status_code == 404


def test_post_to_the_callback_is_not_allowed(client: FlaskClient, recorder: Recorder) -> None:
    response = client.post(f"/auth/callback?code=ac_1&state={STATE}", headers={"Host": f"localhost:{PORT}"})
    assert response.status_code == 405
    assert recorder.codes == []


# -- the server ----------------------------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[CallbackServer]:
    srv = CallbackServer(STATE, port=0, reply_timeout=5.0)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _callback_url(server: CallbackServer, query: str) -> str:
    return f"http://127.0.0.1:{server.port}/auth/callback?{query}"


def test_server_runs_in_a_named_thread_and_names_its_redirect_uri(server: CallbackServer) -> None:
    assert "headway-oauth-callback" in [t.name for t in threading.enumerate()]
    assert server.redirect_uri == f"http://localhost:{server.port}/auth/callback"


def test_wait_returns_the_code_and_the_tab_shows_the_finish_page(server: CallbackServer) -> None:
    with ThreadPoolExecutor(1) as pool:
        browser = pool.submit(httpx.get, _callback_url(server, f"code=ac_42&state={STATE}"), timeout=10)
        assert server.wait(5) == "ac_42"
        time.sleep(0.1)
        assert not browser.done()  # held until the login says how it went
        server.finish(CallbackPage(True, "Headway signed in as a@example.com (plan pro)."))
        response = browser.result(5)
    assert response.status_code == 200
    assert "Headway signed in as a@example.com (plan pro)." in response.text
    assert response.headers["connection"] == "close"


def test_the_tab_gets_a_neutral_page_when_the_login_never_finishes() -> None:
    with CallbackServer(STATE, port=0, reply_timeout=0.2) as srv:
        response = httpx.get(_callback_url(srv, f"code=ac_1&state={STATE}"), timeout=5)
        assert srv.wait(1) == "ac_1"
    assert response.status_code == 200
    assert "return to Headway to see whether it completed" in response.text


def test_a_refusal_arriving_over_http_ends_wait(server: CallbackServer) -> None:
    response = httpx.get(_callback_url(server, "code=ac_1&state=wrong"), timeout=5)
    assert response.status_code == 400
    with pytest.raises(CallbackRefused, match="state mismatch"):
        server.wait(1)


def test_wait_is_bounded(server: CallbackServer) -> None:
    started = time.monotonic()
    with pytest.raises(CallbackTimeout, match="not finished within"):
        server.wait(0.2)
    assert time.monotonic() - started < 1.0


def test_stop_wakes_a_waiter_and_frees_the_port() -> None:
    srv = CallbackServer(STATE, port=0)
    srv.start()
    port = srv.port
    with ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(srv.wait, 30)
        time.sleep(0.1)
        started = time.monotonic()
        srv.stop(timeout=2)
        assert time.monotonic() - started < 1.0
        with pytest.raises(CallbackClosed):
            waiter.result(2)
    srv.stop()  # idempotent
    assert "headway-oauth-callback" not in [t.name for t in threading.enumerate()]
    again = CallbackServer(STATE, port=port)  # the port can be taken again at once
    again.start()
    again.stop()


def test_stop_releases_a_tab_waiting_for_the_outcome(server: CallbackServer) -> None:
    with ThreadPoolExecutor(1) as pool:
        browser = pool.submit(httpx.get, _callback_url(server, f"code=ac_1&state={STATE}"), timeout=10)
        server.wait(5)
        server.stop(timeout=2)
        response = browser.result(2)
    assert "Headway stopped waiting for this sign-in" in response.text


def test_busy_port_raises_port_busy() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        srv = CallbackServer(STATE, port=port)
        with pytest.raises(PortBusy) as caught:
            srv.start()
    assert str(caught.value) == (
        f"port {port} is in use — another login may be in progress (a Codex CLI or OpenCode login?); "
        "finish or cancel it and try again"
    )
    srv.stop()  # nothing started: a no-op


def test_the_code_is_never_logged(
    server: CallbackServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_code = "ac_do_not_log_me"
    with ThreadPoolExecutor(1) as pool:
        browser = pool.submit(
            httpx.get, _callback_url(server, f"code={secret_code}&state={STATE}"), timeout=10
        )
        server.wait(5)
        server.finish(CallbackPage(True, "ok"))
        browser.result(5)
    httpx.get(f"http://127.0.0.1:{server.port}/nope?code={secret_code}", timeout=5)
    server.stop()
    out, err = capfd.readouterr()
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("headway", "werkzeug", "web_ui"))]
    assert ours  # the server does log requests (paths only)
    assert not [line for line in ours if secret_code in line or STATE in line]
    assert secret_code not in out + err


def test_the_flask_server_is_the_login_flows_callback_server() -> None:
    """web_ui.callback.CallbackServer is what the composition root hands proxy.auth's BrowserLogin."""
    factory: CallbackServerFactory = CallbackServer  # mypy checks the protocol; this checks the behaviour
    server: auth_callback.CallbackServer = factory(STATE, port=0)
    server.start()
    try:
        assert server.redirect_uri.startswith("http://localhost:") and server.redirect_uri.endswith(
            "/auth/callback"
        )
    finally:
        server.stop()
