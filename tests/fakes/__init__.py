"""Fake upstreams for tests and benchmarks: real HTTP/1.1 servers on 127.0.0.1, each in its own thread.

    with FakeAnthropic() as upstream:
        upstream.enqueue(Behavior(status=429, retry_after=3), Behavior(chunks=4, delay=0.05))
        ...  # point the gateway at upstream.url
        assert upstream.requests[0].headers["x-api-key"] == "sk-ant-test"

Run one standalone: `python -m tests.fakes anthropic|openai --port N [--events N --delay-ms D]`.
"""

from __future__ import annotations

from tests.fakes.anthropic import (
    ANTHROPIC_MODELS,
    FakeAnthropic,
    anthropic_ratelimit_headers,
    estimate_tokens,
)
from tests.fakes.openai import OPENAI_MODELS, FakeOpenAI, openai_duration, openai_ratelimit_headers
from tests.fakes.openai_auth import (
    AUTH_CLAIMS,
    CODEX_CLIENT_ID,
    FakeAccount,
    FakeOpenAIAuth,
    RefreshFailure,
    fake_jwt,
    s256,
)
from tests.fakes.server import Behavior, FakeServer, RecordedRequest, ToolCall

__all__ = [
    "ANTHROPIC_MODELS",
    "AUTH_CLAIMS",
    "CODEX_CLIENT_ID",
    "OPENAI_MODELS",
    "Behavior",
    "FakeAccount",
    "FakeAnthropic",
    "FakeOpenAI",
    "FakeOpenAIAuth",
    "FakeServer",
    "RecordedRequest",
    "RefreshFailure",
    "ToolCall",
    "anthropic_ratelimit_headers",
    "estimate_tokens",
    "fake_jwt",
    "openai_duration",
    "openai_ratelimit_headers",
    "s256",
]
