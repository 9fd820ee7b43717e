"""The gateway most of these tests need: in-process, against the fake Anthropic and OpenAI APIs, with one API-key
account on each (modules that need another set-up define their own ``gw``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes import FakeAnthropic, FakeOpenAI
from tests.support.gateway import RunningGateway, start_gateway


@pytest.fixture
def gw(anthropic: FakeAnthropic, openai: FakeOpenAI) -> Iterator[RunningGateway]:
    with start_gateway(anthropic_url=anthropic.url, openai_url=openai.url) as gateway:
        gateway.add("anthropic", "main", "sk-ant-main")
        gateway.add("openai", "gpt", "sk-main")
        yield gateway
