"""The settings page's security layer, in the order it runs: Host, fetch metadata, session, CSRF, headers."""

from __future__ import annotations

import os
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.web_ui.conftest import Web
from web_ui.security import LoginTokens, Sessions, digest, fetch_metadata_problem, host_name, mint_token_file

FOREIGN = {"Host": "evil.example:8080"}


# --------------------------------------------------------------------------- Host allowlist (first)


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:1234", "127.0.0.1.evil.example", "localhost.evil", "10.0.0.5:80"]
)
def test_a_foreign_host_is_refused_before_anything_else(web: Web, host: str) -> None:
    web.sign_in()
    for method, url in (
        ("GET", "/"),
        ("GET", "/api/state"),
        ("GET", "/static/app.js"),
        ("POST", "/api/settings"),
        ("GET", f"/login?token={web.tokens.mint()}"),
    ):
        response = web.client.open(
            url, method=method, headers={"Host": host, "X-CSRF-Token": web.csrf}, json={}
        )
        assert response.status_code == 403, (method, url, response.status_code)
        assert b"only answers to 127.0.0.1" in response.data
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "set-cookie" not in {k.lower() for k in response.headers.keys()}


@pytest.mark.parametrize("host", ["127.0.0.1:5555", "localhost:5555", "LOCALHOST", "[::1]:5555"])
def test_loopback_hosts_are_accepted(web: Web, host: str) -> None:
    response = web.client.get("/api/state", headers={"Host": host})
    assert response.status_code == 401  # past the Host check; the session is the next gate
    assert "not signed in" in response.get_json()["error"]


def test_host_name_parsing() -> None:
    assert host_name("[::1]:8080") == "[::1]"
    assert host_name("Localhost:1") == "localhost"
    assert host_name("127.0.0.1") == "127.0.0.1"
    assert host_name("evil.com:80") == "evil.com"


# --------------------------------------------------------------------------- session


def test_without_a_session_the_page_explains_how_to_sign_in(web: Web) -> None:
    response = web.client.get("/")
    assert response.status_code == 401
    assert b"headway settings" in response.data
    assert b"csrf-token" not in response.data
    api = web.client.get("/api/state")
    assert api.status_code == 401
    assert "not signed in" in api.get_json()["error"]


def test_an_invalid_cookie_is_not_a_session(web: Web) -> None:
    web.client.set_cookie("headway_session", "made-up-value", domain="localhost")
    assert web.client.get("/api/state").status_code == 401
    assert web.client.post("/api/settings", json={"changes": {"dumps.enabled": True}}).status_code == 401


def test_a_one_time_token_signs_in_once(web: Web) -> None:
    token = web.tokens.mint()
    first = web.client.get(f"/login?token={token}")
    assert first.status_code == 303 and first.headers["Location"] == "/"
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert web.client.get("/api/state").status_code == 200

    other = web.app.test_client()
    again = other.get(f"/login?token={token}")
    assert again.status_code == 401
    assert b"expired" in again.data
    assert other.get("/api/state").status_code == 401


def test_wrong_and_expired_tokens_are_refused(tmp_path: Path) -> None:
    clock = [1000.0]
    tokens = LoginTokens(tmp_path / "login", clock=lambda: clock[0])
    token = tokens.mint()
    assert not tokens.redeem(token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not tokens.redeem("")
    clock[0] += 61
    assert not tokens.redeem(token)


def test_signing_out_ends_the_session(signed_in: Web) -> None:
    response = signed_in.client.post("/logout", data={"csrf_token": signed_in.csrf})
    assert response.status_code == 303
    assert signed_in.client.get("/api/state").status_code == 401


# --------------------------------------------------------------------------- CLI-minted tokens (files)


def test_a_token_file_from_the_cli_signs_in_once(web: Web) -> None:
    token = mint_token_file(web.tokens.folder)  # type: ignore[arg-type]
    files = list(web.tokens.folder.glob("*.token"))  # type: ignore[union-attr]
    assert len(files) == 1
    assert files[0].read_text() == digest(token)  # only the digest is on disk
    assert files[0].stat().st_mode & 0o777 == 0o600
    assert web.tokens.folder.stat().st_mode & 0o777 == 0o700  # type: ignore[union-attr]
    assert web.client.get(f"/login?token={token}").status_code == 303
    assert not list(web.tokens.folder.glob("*.token"))  # type: ignore[union-attr]
    assert web.app.test_client().get(f"/login?token={token}").status_code == 401


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_token_files_readable_by_others_or_too_old_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "login"
    tokens = LoginTokens(folder)
    tokens.prepare()
    loose = mint_token_file(folder)
    (path,) = folder.glob("*.token")
    path.chmod(0o644)
    assert not tokens.redeem(loose)
    assert not path.exists()  # a suspicious file is removed

    old = mint_token_file(folder)
    (path,) = folder.glob("*.token")
    past = time.time() - 120
    os.utime(path, (past, past))
    assert not tokens.redeem(old)

    fresh = mint_token_file(folder)
    assert tokens.redeem(fresh)


# --------------------------------------------------------------------------- CSRF and fetch metadata


def test_state_changes_need_the_csrf_token(signed_in: Web) -> None:
    body = {"changes": {"dumps.enabled": True}}
    missing = signed_in.client.post("/api/settings", json=body)
    assert missing.status_code == 403
    assert "CSRF" in missing.get_json()["error"]
    wrong = signed_in.client.post(
        "/api/settings", json=body, headers={"X-CSRF-Token": signed_in.csrf[:-2] + "xx"}
    )
    assert wrong.status_code == 403
    assert signed_in.services.store.current.dumps.enabled is False
    assert signed_in.post("/api/settings", body).status_code == 200
    # every state-changing route is covered, not only settings
    for url in (
        "/api/accounts",
        "/api/account-order",
        "/api/access-key",
        "/api/agents/codex/write",
        "/logout",
    ):
        assert signed_in.client.post(url, json={}).status_code == 403, url


def test_cross_site_requests_are_refused(signed_in: Web) -> None:
    body = {"changes": {"dumps.enabled": True}}
    cross = signed_in.post("/api/settings", body, **{"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert "other sites" in cross.get_json()["error"]
    assert signed_in.client.get("/api/state", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert (
        signed_in.client.get(
            "/", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
        ).status_code
        == 403
    )
    same_site = signed_in.post("/api/settings", body, **{"Sec-Fetch-Site": "same-site"})
    assert same_site.status_code == 403
    wrong_origin = signed_in.post(
        "/api/settings", body, Origin="http://localhost:9999", **{"Sec-Fetch-Site": "same-origin"}
    )
    assert wrong_origin.status_code == 403
    assert signed_in.services.store.current.dumps.enabled is False
    ok = signed_in.post("/api/settings", body, Origin="http://localhost", **{"Sec-Fetch-Site": "same-origin"})
    assert ok.status_code == 200


def test_the_sign_in_exchange_takes_a_navigation_from_a_local_file(web: Web) -> None:
    """The opener page (a file:) makes the browser call /login cross-site: only that navigation gets through, and the
    answer hops to "/" from the page itself (a redirect would keep the chain cross-site: no Strict cookie)."""
    navigation = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    bogus = web.client.get("/login?token=nope", headers=navigation)
    assert bogus.status_code == 401 and "expired" in bogus.get_data(as_text=True)
    response = web.client.get(f"/login?token={web.tokens.mint()}", headers=navigation)
    assert response.status_code == 200 and response.mimetype == "text/html"
    body = response.get_data(as_text=True)
    assert '<meta http-equiv="refresh" content="0;url=/">' in body and "token" not in body
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert web.client.get("/").status_code == 200
    # Nothing else is let through cross-site: not a fetch of /login, not the page, not a post.
    fetch = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"}
    assert web.client.get(f"/login?token={web.tokens.mint()}", headers=fetch).status_code == 403
    assert web.client.get("/", headers=navigation).status_code == 403
    assert web.client.post("/login", headers=navigation).status_code == 403


def test_fetch_metadata_rules() -> None:
    check = fetch_metadata_problem
    assert (
        check(method="GET", sec_fetch_site="none", sec_fetch_mode="navigate", origin=None, host="127.0.0.1:1")
        is None
    )
    assert (
        check(method="GET", sec_fetch_site="same-site", sec_fetch_mode="navigate", origin=None, host="h")
        is None
    )
    assert check(method="GET", sec_fetch_site="same-site", sec_fetch_mode="cors", origin=None, host="h")
    assert check(method="POST", sec_fetch_site="none", sec_fetch_mode=None, origin=None, host="h")
    assert check(method="POST", sec_fetch_site=None, sec_fetch_mode=None, origin="null", host="h")
    assert (
        check(method="POST", sec_fetch_site="same-origin", sec_fetch_mode="cors", origin="http://h", host="h")
        is None
    )
    navigate = {"sec_fetch_site": "cross-site", "sec_fetch_mode": "navigate", "origin": None, "host": "h"}
    assert check(method="GET", **navigate)
    assert check(method="GET", **navigate, sign_in=True) is None
    assert check(method="POST", **navigate, sign_in=True)
    assert check(
        method="GET",
        sec_fetch_site="cross-site",
        sec_fetch_mode="no-cors",
        origin=None,
        host="h",
        sign_in=True,
    )


# --------------------------------------------------------------------------- headers, CORS, markup


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("inline <style>")
        if "style" in names:
            self.problems.append(f"style attribute on <{tag}>")
        self.problems += [f"{n} handler on <{tag}>" for n in names if n.startswith("on")]
        for name, value in attrs:
            if name in ("src", "href") and value and value.startswith(("http:", "https:", "//")):
                self.problems.append(f"external {name} {value}")


def test_every_response_carries_the_security_headers(signed_in: Web) -> None:
    responses = [
        signed_in.client.get("/"),
        signed_in.client.get("/api/state"),
        signed_in.client.get("/static/app.css"),
        signed_in.client.get("/nope"),
        signed_in.app.test_client().get("/"),  # 401
        signed_in.client.get("/", headers={"Host": "evil.example"}),  # HostGuard
        signed_in.post("/api/settings", {"changes": {"nope.nope": 1}}),  # 400
    ]
    for response in responses:
        csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert not any(k.lower().startswith("access-control-") for k in response.headers.keys())
        response.close()
    assert responses[1].headers["Cache-Control"] == "no-store"


def test_no_cors(signed_in: Web) -> None:
    preflight = signed_in.client.options(
        "/api/settings", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code in (403, 405)
    assert not any(k.lower().startswith("access-control-") for k in preflight.headers.keys())
    got = signed_in.client.get("/api/state", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in got.headers


def test_the_page_has_no_inline_script_style_or_external_assets(signed_in: Web) -> None:
    for url in ("/", "/signed-out"):
        parser = _Markup()
        parser.feed(signed_in.client.get(url).get_data(as_text=True))
        assert parser.problems == [], url


# --------------------------------------------------------------------------- secrets


def _all_get_bodies(web: Web) -> str:
    urls = [
        "/",
        "/api/state",
        "/api/usage?days=7",
        "/api/usage?metric=tokens",
        "/api/agents",
        "/static/app.js",
    ]
    bodies = []
    for url in urls:
        response = web.client.get(url)
        assert response.status_code == 200, url
        bodies.append(response.get_data(as_text=True))
        response.close()
    return "\n".join(bodies)


def test_api_keys_are_never_in_any_response(signed_in: Web) -> None:
    anthropic_key = "sk-ant-api03-" + "S3cretKeyMaterial" * 3 + "Zq9w"
    openai_key = "sk-proj-" + "AnotherSecret" * 3 + "Lm4k"
    added = signed_in.post(
        "/api/accounts", {"provider": "anthropic", "label": "work", "api_key": anthropic_key}
    )
    assert added.status_code == 200
    assert anthropic_key not in added.get_data(as_text=True)
    signed_in.post(
        "/api/accounts", {"provider": "openai", "label": "oa", "api_key": "sk-proj-first-key-0000000000000"}
    )
    replaced = signed_in.post("/api/accounts/oa/key", {"api_key": openai_key})
    assert replaced.status_code == 200
    assert openai_key not in replaced.get_data(as_text=True)

    text = _all_get_bodies(signed_in)
    for secret in (anthropic_key, openai_key, anthropic_key[13:30], openai_key[8:30]):
        assert secret not in text
    state = signed_in.get_json("/api/state")
    hints = {a["id"]: a["key_hint"] for a in state["accounts"]}
    assert hints == {"work": "sk-ant-api03-…Zq9w", "oa": "sk-proj-…Lm4k"}


def test_the_access_key_only_comes_from_a_csrf_protected_post(signed_in: Web) -> None:
    key = signed_in.gateway.key
    assert key not in _all_get_bodies(signed_in)
    assert signed_in.client.post("/api/access-key").status_code == 403
    response = signed_in.post("/api/access-key")
    assert response.get_json() == {"key": key}
    assert response.headers["Cache-Control"] == "no-store"
    assert key in signed_in.post("/api/agents/codex/snippet").get_json()["snippet"]


def test_sessions_expire_and_are_bounded() -> None:
    clock = [0.0]
    sessions = Sessions(clock=lambda: clock[0])
    value, session = sessions.create()
    assert sessions.find(value) is session
    assert Sessions.csrf_ok(session, session.csrf)
    assert not Sessions.csrf_ok(session, "")
    assert not Sessions.csrf_ok(session, None)
    clock[0] += 13 * 3600
    assert sessions.find(value) is None
    values = [sessions.create()[0] for _ in range(40)]
    assert sessions.find(values[0]) is None and sessions.find(values[-1]) is not None


def test_sessions_outlive_a_restart_through_a_private_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    file = tmp_path / "run" / "web-sessions.json"
    file.parent.mkdir(mode=0o700)
    first = Sessions(file=file)
    value, session = first.create()
    other, _ = first.create()
    text = file.read_text()
    assert value not in text and other not in text and digest(value) in text  # digests only, never a cookie
    if os.name == "posix":
        assert file.stat().st_mode & 0o777 == 0o600

    restarted = Sessions(file=file)
    found = restarted.find(value)
    assert found is not None and found.csrf == session.csrf and Sessions.csrf_ok(found, session.csrf)
    restarted.end(value)
    again = Sessions(file=file)
    assert again.find(value) is None and again.find(other) is not None

    clock = [time.time() + 13 * 3600]  # idle too long by the next start
    assert Sessions(file=file, clock=lambda: clock[0]).find(other) is None

    if os.name == "posix":
        file.chmod(0o644)
        assert Sessions(file=file).find(other) is None
        assert "not restored" in caplog.text
    file.write_text("{not json")
    file.chmod(0o600)
    assert Sessions(file=file).find(other) is None
