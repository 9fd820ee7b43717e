"""A real, running Headway (engine, store, keychain) with the settings page's Flask app on a test client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.support.gateway import RunningGateway, start_gateway
from web_ui.app import create_app
from web_ui.security import LoginTokens, Sessions

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@dataclass
class Web:
    app: Flask
    client: FlaskClient
    tokens: LoginTokens
    gateway: RunningGateway
    csrf: str = ""

    @property
    def services(self) -> Any:
        return self.gateway.services

    def sign_in(self) -> None:
        response = self.client.get(f"/login?token={self.tokens.mint()}")
        assert response.status_code == 303, response.data
        page = self.client.get("/")
        assert page.status_code == 200
        match = CSRF_META.search(page.get_data(as_text=True))
        assert match
        self.csrf = match.group(1)

    def post(self, url: str, body: Any = None, **headers: str) -> TestResponse:
        return self.client.post(
            url, json=body if body is not None else {}, headers={"X-CSRF-Token": self.csrf, **headers}
        )

    def get_json(self, url: str) -> Any:
        response = self.client.get(url)
        assert response.status_code == 200, response.data
        return response.get_json()


@pytest.fixture
def upstream() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


@pytest.fixture
def openai_upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def gateway(upstream: FakeAnthropic, openai_upstream: FakeOpenAI) -> Iterator[RunningGateway]:
    running = start_gateway(anthropic_url=upstream.url, openai_url=openai_upstream.url)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def web(gateway: RunningGateway) -> Web:
    web_server = gateway.services.web
    assert web_server is not None
    tokens = LoginTokens(gateway.services.paths.run_dir / "web-login-test")
    tokens.prepare()
    app = create_app(web_server.context, tokens=tokens, sessions=Sessions())
    app.testing = True
    return Web(app=app, client=app.test_client(), tokens=tokens, gateway=gateway)


@pytest.fixture
def signed_in(web: Web) -> Web:
    web.sign_in()
    return web
