"""`headway serve` behind a company's proxy that inspects TLS: the upstream is reached through ``HTTPS_PROXY`` (a
CONNECT tunnel), and its certificate is trusted only through ``SSL_CERT_FILE`` (the proxy's own root, as such
proxies require). A real gateway process, a real proxy and an HTTPS fake upstream on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import httpx

from proxy.config.paths import Paths
from tests.fakes import FakeAnthropic
from tests.support.gateway import add_account_with_cli, start_gateway_process
from tests.support.http_proxy import HttpProxy
from tests.support.tls import self_signed

MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def _ask(url: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/messages",
        json=MESSAGE,
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        timeout=30,
    )


def test_the_upstream_is_reached_through_the_proxy_with_the_companys_root(
    file_home: Paths, tmp_path: Path
) -> None:
    certificate = self_signed(tmp_path / "tls")
    with FakeAnthropic(tls=certificate.server_context()) as upstream, HttpProxy() as proxy:
        env = {"HEADWAY_ANTHROPIC_BASE_URL": upstream.url, "HTTPS_PROXY": proxy.url}
        add_account_with_cli("anthropic", "work", "sk-ant-api03-" + "w" * 40, env=env)

        trusted = start_gateway_process(env={**env, "SSL_CERT_FILE": str(certificate.cert_file)})
        try:
            answer = _ask(trusted.url, trusted.key)
        finally:
            assert trusted.stop() == 0
        assert answer.status_code == 200, answer.text
        assert answer.json()["content"][0]["text"] == "Hello from the fake"
        assert proxy.request_lines == [f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1"]
        assert upstream.requests[-1].headers["x-api-key"] == "sk-ant-api03-" + "w" * 40

        # Without the company's root the same setup fails closed, and the agent is told why in its own protocol.
        untrusted = start_gateway_process(env=env)
        try:
            refused = _ask(untrusted.url, untrusted.key)
        finally:
            assert untrusted.stop() == 0
        assert refused.status_code == 502 and refused.json()["type"] == "error"
        assert "CERTIFICATE_VERIFY_FAILED" in refused.json()["error"]["message"]
        assert len(upstream.requests) == 1  # nothing reached the upstream unverified


def test_a_proxy_password_from_the_environment_works_and_never_shows(
    file_home: Paths, tmp_path: Path
) -> None:
    """The proxy wants a user name and password, given in HTTPS_PROXY's URL: accepted, the upstream is reached;
    refused, the agent hears so in its own protocol. The password reaches neither the agent nor the log (aiohttp's
    proxy errors quote the proxy's URL with it)."""
    password = "Corp-Pa55:word"
    certificate = self_signed(tmp_path / "tls")
    trust = {"SSL_CERT_FILE": str(certificate.cert_file)}
    with (
        FakeAnthropic(tls=certificate.server_context()) as upstream,
        HttpProxy(credentials=("dev", password)) as proxy,
    ):
        env = {"HEADWAY_ANTHROPIC_BASE_URL": upstream.url, **trust}
        add_account_with_cli("anthropic", "work", "sk-ant-api03-" + "w" * 40, env=env)
        answers = []
        for given in (password, "Old-Pa55:word"):
            gateway = start_gateway_process(env={**env, "HTTPS_PROXY": proxy.url_with("dev", given)})
            try:
                answers.append(_ask(gateway.url, gateway.key))
            finally:
                assert gateway.stop() == 0
    accepted, refused = answers
    assert accepted.status_code == 200, accepted.text
    assert len(upstream.requests) == 1
    assert refused.status_code == 502 and refused.json()["type"] == "error"
    message = refused.json()["error"]["message"]
    assert (
        "407 Proxy Authentication Required" in message
        and "did not accept the user name and password" in message
    )
    log = (file_home.log_dir / "headway.log").read_text()
    assert "407 Proxy Authentication Required" in log
    for secret in ("Pa55", "Corp-", "Old-"):
        assert secret not in message and secret not in log
