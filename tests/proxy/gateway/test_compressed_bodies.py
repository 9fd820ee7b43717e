"""Compressed request bodies through a real gateway: Codex and pi send /responses bodies as zstd, others gzip.

The upstream (a fake on 127.0.0.1) must get the agent's JSON, uncompressed and without ``content-encoding``; a body
that does not decode, inflates past the cap, or uses a coding the gateway does not decode is refused in the route's
protocol shape before any account is used.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import pytest

from proxy.wire.content_coding import zstd_module
from tests.fakes import FakeAnthropic, FakeOpenAI, FakeOpenAIAuth
from tests.fakes.codex import FakeCodex
from tests.support.chatgpt_gateway import add_chatgpt, chatgpt_gateway
from tests.support.gateway import RunningGateway

RESPONSES = {"model": "gpt-5.1-codex", "input": "hello " * 500, "stream": False, "store": False}
MESSAGES = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "hi " * 500}],
}
CODERS = {"zstd": lambda b: zstd.compress(b, 3), "gzip": gzip.compress}

zstd = zstd_module()  # compression.zstd on Python 3.14, its backport before


def post(gw: RunningGateway, path: str, body: bytes, coding: str, protocol: str) -> httpx.Response:
    headers = {**gw.headers(protocol), "content-type": "application/json", "content-encoding": coding}
    return httpx.post(f"{gw.url}{path}", content=body, headers=headers, timeout=30)


@pytest.mark.parametrize("coding", sorted(CODERS))
def test_openai_and_anthropic_upstreams_get_the_json_uncompressed(
    gw: RunningGateway, openai: FakeOpenAI, anthropic: FakeAnthropic, coding: str
) -> None:
    for path, protocol, request, fake in (
        ("/v1/responses", "openai", RESPONSES, openai),
        ("/v1/messages", "anthropic", MESSAGES, anthropic),
    ):
        plain = json.dumps(request).encode()
        answer = post(gw, path, CODERS[coding](plain), coding, protocol)
        assert answer.status_code == 200, answer.text
        sent = fake.requests[-1]
        assert sent.path == path
        assert "content-encoding" not in sent.headers
        assert sent.body == plain  # the agent's bytes, decoded: no transform applies here
        assert int(sent.headers["content-length"]) == len(plain)


def test_a_zstd_body_on_a_chatgpt_account_is_reshaped_like_any_other(
    auth: FakeOpenAIAuth, codex: FakeCodex
) -> None:
    # What Codex signed in to ChatGPT and pi's Codex transport send: zstd level 3 on /responses.
    with chatgpt_gateway(auth, codex) as gw:
        add_chatgpt(gw, auth, "acct-1", "work")
        request = {**RESPONSES, "stream": True, "instructions": "be brief"}
        answer = post(gw, "/v1/responses", zstd.compress(json.dumps(request).encode(), 3), "zstd", "openai")
        assert answer.status_code == 200, answer.text
        assert "response.completed" in answer.text
        sent = codex.requests[-1]
        assert sent.path == "/backend-api/codex/responses"
        assert "content-encoding" not in sent.headers
        assert sent.json["input"][0]["content"][0]["text"] == request["input"]


def _error(answer: httpx.Response, status: int, path: str) -> str:
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    if path == "/v1/messages":
        assert body["type"] == "error"
    else:
        assert set(body["error"]) == {"message", "type", "param", "code"}
    return str(body["error"]["message"])


@pytest.mark.parametrize("path,protocol", [("/v1/messages", "anthropic"), ("/v1/responses", "openai")])
def test_bad_compressed_bodies_are_refused_in_the_routes_shape_before_any_account_is_used(
    gw: RunningGateway, openai: FakeOpenAI, anthropic: FakeAnthropic, path: str, protocol: str
) -> None:
    plain = json.dumps(MESSAGES if protocol == "anthropic" else RESPONSES).encode()
    before = len(openai.requests) + len(anthropic.requests)

    message = _error(post(gw, path, plain, "zstd", protocol), 400, path)
    assert "not valid zstd data (Content-Encoding: zstd)" in message

    message = _error(post(gw, path, gzip.compress(plain)[:-20], "gzip", protocol), 400, path)
    assert "gzip data is cut short" in message

    bomb = zstd.compress(b" " * (2 * 1024 * 1024))  # 2 MB of spaces over a 1 MB cap, in a few hundred bytes
    gw.edit(lambda s: setattr(s.gateway, "max_body_mb", 1))
    message = _error(post(gw, path, bomb, "zstd", protocol), 413, path)
    assert "limit of 1 MB once decompressed" in message

    refused = post(gw, path, plain, "br", protocol)
    message = _error(refused, 415, path)
    assert "'br'" in message and "zstd, gzip, deflate" in message
    assert refused.headers["accept-encoding"] == "zstd, gzip, deflate"

    assert len(openai.requests) + len(anthropic.requests) == before
