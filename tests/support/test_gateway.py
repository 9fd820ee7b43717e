"""The test gateways never touch the real default ports: a developer's running Headway owns 7337 and 7338.

The suite sets HEADWAY_WEB_PORT=0 (tests/conftest.py), which every settings page honours — in-process gateways and
`headway serve` subprocesses alike — so each takes a free port and parallel runs never race for 7338.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from proxy.config.paths import Paths
from proxy.config.settings import Settings
from tests.support.gateway import start_gateway, start_gateway_process
from web_ui.server import web_file

DEFAULT_WEB_PORT = Settings().web.port
DEFAULT_GATEWAY_PORT = Settings().gateway.port


def test_the_suite_runs_every_settings_page_on_a_free_port() -> None:
    assert os.environ.get("HEADWAY_WEB_PORT") == "0"


def test_an_in_process_gateway_never_asks_for_the_default_ports() -> None:
    gw = start_gateway()
    try:
        web = gw.services.web
        assert web is not None and web.running
        assert web.context.address is not None and web.context.address.wanted == 0
        assert web.port != DEFAULT_WEB_PORT and gw.services.engine.port != DEFAULT_GATEWAY_PORT
        assert json.loads(web_file(gw.services.paths).read_text())["wanted_port"] == 0
    finally:
        gw.stop()


@pytest.mark.timeout(60)
def test_a_serve_subprocess_never_asks_for_the_default_ports(headway_home: Path) -> None:
    paths = Paths.from_env()
    paths.ensure()
    paths.settings_file.write_text(json.dumps({"secrets": {"backend": "file"}}))
    process = start_gateway_process(env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"})
    try:
        info = json.loads(web_file(paths).read_text())
        assert info["wanted_port"] == 0 and not info["url"].endswith(f":{DEFAULT_WEB_PORT}")
        assert not process.url.endswith(f":{DEFAULT_GATEWAY_PORT}")
    finally:
        assert process.stop() == 0


def test_the_page_honours_web_port_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        chosen = int(probe.getsockname()[1])
    monkeypatch.setenv("HEADWAY_WEB_PORT", str(chosen))
    gw = start_gateway()
    try:
        assert gw.services.web is not None and gw.services.web.port == chosen
    finally:
        gw.stop()


@pytest.mark.parametrize("value", ["abc", "-1", "70000"])
def test_a_bad_web_port_in_the_environment_is_named_and_the_setting_used(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, value: str
) -> None:
    from tray.app import web_port_override

    assert web_port_override({"HEADWAY_WEB_PORT": value}) is None
    assert f"HEADWAY_WEB_PORT={value!r} is not a port" in caplog.text
    assert web_port_override({"HEADWAY_WEB_PORT": " 0 "}) == 0
    assert web_port_override({}) is None
