"""The settings page's server: waitress on its own thread, web.json for other processes, bounded stop, and the
two ways to get a signed-in browser (the tray's `open_settings()` and `headway settings`)."""

from __future__ import annotations

import html
import json
import logging
import os
import re
import socket
import threading
import time
import urllib.parse
import webbrowser
from pathlib import Path

import httpx
import pytest

from proxy.config.settings import Settings
from tests.support.gateway import RunningGateway, run_cli, start_gateway_process
from web_ui.server import SettingsServer, cli_login_url, read_web_info, web_file


def test_the_page_is_served_on_loopback_by_waitress_in_its_own_thread(gateway: RunningGateway) -> None:
    web = gateway.services.web
    assert web is not None and web.running
    assert web.url.startswith("http://127.0.0.1:") and web.port != gateway.services.engine.port
    assert any(t.name == "headway-web" for t in threading.enumerate())
    response = httpx.get(web.url + "/", timeout=5)
    assert response.status_code == 401 and response.headers["Server"] == "Headway"
    info = json.loads(web_file(gateway.services.paths).read_text())
    assert info == {
        "pid": os.getpid(),
        "url": web.url,
        "started_at": info["started_at"],
        "wanted_port": info["wanted_port"],
    }
    if os.name == "posix":
        assert web_file(gateway.services.paths).stat().st_mode & 0o777 == 0o600
    assert "token" not in web_file(gateway.services.paths).read_text()


def _forwarded_to(opener_uri: str) -> str:
    """The address an opener page (web_ui/opener.py) sends the browser to."""
    page = Path(urllib.parse.unquote(urllib.parse.urlsplit(opener_uri).path))
    match = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', page.read_text())
    assert match is not None
    return html.unescape(match.group(1))


def test_open_settings_signs_a_browser_in(gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    assert gateway.services.open_settings() is True
    (argument,) = opened
    # What goes on the browser's command line (visible to every local user in `ps`) is a private file, not the token.
    assert argument.startswith("file://") and "token" not in argument
    page = Path(urllib.parse.unquote(urllib.parse.urlsplit(argument).path))
    assert page.parent == gateway.services.paths.run_dir / "web-open"
    if os.name == "posix":
        assert page.stat().st_mode & 0o777 == 0o600 and page.parent.stat().st_mode & 0o777 == 0o700
    url = _forwarded_to(argument)
    assert url.startswith(gateway.services.web.url + "/login?token=")  # type: ignore[union-attr]
    with httpx.Client(timeout=5) as browser:
        signed_in = browser.get(url, follow_redirects=True)
        assert signed_in.status_code == 200 and 'name="csrf-token"' in signed_in.text
        assert browser.get(gateway.services.web.url + "/api/state").status_code == 200  # type: ignore[union-attr]
    assert httpx.get(url, timeout=5).status_code == 401  # once only


def test_a_cli_minted_link_works_once(gateway: RunningGateway) -> None:
    paths = gateway.services.paths
    assert read_web_info(paths) is not None
    url = cli_login_url(paths)
    assert url is not None and url.startswith(gateway.services.web.url + "/login?token=")  # type: ignore[union-attr]
    with httpx.Client(timeout=5) as browser:
        assert browser.get(url).status_code == 303
        assert browser.get(gateway.services.web.url + "/api/state").status_code == 200  # type: ignore[union-attr]
    assert httpx.get(url, timeout=5).status_code == 401


def test_stop_is_bounded_with_open_connections_and_removes_web_json(gateway: RunningGateway) -> None:
    web = gateway.services.web
    assert web is not None
    client = httpx.Client(timeout=5)  # keeps its connection open
    client.get(web.url + "/")
    hanging = httpx.Client(timeout=5)
    hanging.get(web.url + "/static/app.css")
    started = time.monotonic()
    web.stop(timeout=3.0)
    assert time.monotonic() - started < 3.5
    assert not web.running
    assert not web_file(gateway.services.paths).exists()
    with pytest.raises(httpx.HTTPError):
        httpx.get(web.url + "/", timeout=1)
    client.close()
    hanging.close()
    web.stop()  # idempotent


def test_headway_settings_without_a_running_instance_says_so(headway_home: Path) -> None:
    result = run_cli("settings", "--print-url")
    assert result.returncode != 0
    assert "Headway is not running" in result.stderr


def test_headway_settings_prints_a_one_time_link_for_the_running_instance(headway_home: Path) -> None:
    from proxy.config.paths import Paths

    paths = Paths.from_env()
    paths.ensure()
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}}))
    process = start_gateway_process(env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    try:
        assert "Settings page: http://127.0.0.1:" in process.output()
        result = run_cli("settings", "--print-url")
        assert result.returncode == 0, result.stderr
        url = result.stdout.strip()
        assert "signs a browser in once" in result.stderr
        with httpx.Client(timeout=5) as browser:
            assert browser.get(url).status_code == 303
            assert browser.get(url.split("/login")[0] + "/api/state").status_code == 200
        assert httpx.get(url, timeout=5).status_code == 401
        assert run_cli("settings", "path").stdout.strip() == str(
            paths.settings_file
        )  # subcommands still work
    finally:
        assert process.stop() == 0
    assert not web_file(paths).exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_page_has_a_stable_default_port_apart_from_the_gateways() -> None:
    defaults = Settings()
    assert defaults.web.port == 7338 and defaults.web.port != defaults.gateway.port


def test_the_page_keeps_its_port_across_restarts(gateway: RunningGateway) -> None:
    services = gateway.services
    port = _free_port()
    services.store.update(lambda s: setattr(s.web, "port", port))
    services.web.stop()  # type: ignore[union-attr]
    for _ in range(2):
        web = SettingsServer(services.web.context)  # type: ignore[union-attr]
        web.start()
        try:
            assert web.url == f"http://127.0.0.1:{port}"
            assert json.loads(web_file(services.paths).read_text())["wanted_port"] == port
            assert httpx.get(web.url + "/", timeout=5).status_code == 401
            assert web.context.address is not None and not web.context.address.moved
        finally:
            web.stop()


def test_a_taken_port_falls_back_to_a_free_one_and_says_so(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    services = gateway.services
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = int(squatter.getsockname()[1])
        services.store.update(lambda s: setattr(s.web, "port", taken))
        services.web.stop()  # type: ignore[union-attr]
        web = SettingsServer(services.web.context)  # type: ignore[union-attr]
        caplog.set_level(logging.WARNING, logger="headway.web")
        web.start()
        try:
            assert web.port != taken and web.running
            assert (
                f"port {taken} is not available" in caplog.text
                and f"on port {web.port} this time" in caplog.text
            )
            info = json.loads(web_file(services.paths).read_text())
            assert info["url"] == web.url and info["wanted_port"] == taken
            with httpx.Client(timeout=5) as browser:
                assert browser.get(f"{web.url}/login?token={web.tokens.mint()}").status_code == 303
                page = browser.get(web.url + "/").text
            assert 'id="page-moved"' in page and f"on port {web.port} this time" in page
            assert f"http://127.0.0.1:{taken}</code>" in page
        finally:
            web.stop()
