"""Budgets, model aliases and model routes through a real gateway and fake upstreams on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from proxy.config.accounts import set_budget
from proxy.config.settings import ModelRoute, Settings
from tests.fakes import Behavior, FakeAnthropic, FakeOpenAI
from tests.support.gateway import RunningGateway, start_gateway, wait_until
from tray.cli.status import format_status

MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
# claude-sonnet-4-5 output is $15 per million tokens: 100k output tokens cost $1.50.
COSTLY = Behavior(usage={"output_tokens": 100_000})


def _quick(settings: Settings) -> None:
    settings.routing.retry_base_delay_seconds = 0.01


@pytest.fixture
def gw(anthropic: FakeAnthropic, openai: FakeOpenAI) -> Iterator[RunningGateway]:
    with start_gateway(anthropic_url=anthropic.url, openai_url=openai.url, settings=_quick) as gateway:
        yield gateway


def post(gw: RunningGateway, body: dict[str, object] = MESSAGE) -> httpx.Response:
    return httpx.post(f"{gw.url}/v1/messages", json=body, headers=gw.headers(), timeout=15)


def keys_seen(fake: FakeAnthropic | FakeOpenAI) -> list[str]:
    return [fake.api_key(r) or "" for r in fake.requests]


# -- budgets -------------------------------------------------------------------------------------------------------


def test_a_budget_stops_spending_at_the_cap_falls_back_and_then_answers_429(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    main = gw.add("anthropic", "main", "sk-ant-main")
    spare = gw.add("anthropic", "spare", "sk-ant-spare")
    set_budget(gw.store, "main", 2.0, None)
    set_budget(gw.store, "spare", 1.0, 20.0)
    wait_until(lambda: all(a.budget for a in gw.services.engine.settings.accounts))
    anthropic.default = COSTLY

    assert post(gw).status_code == 200  # main: $1.50 of $2
    assert post(gw).status_code == 200  # main: $3.00, over
    assert post(gw).status_code == 200  # spare: $1.50, over
    assert keys_seen(anthropic) == ["sk-ant-main", "sk-ant-main", "sk-ant-spare"]

    refused = post(gw)
    assert refused.status_code == 429, refused.text
    assert len(anthropic.requests) == 3  # nothing more was spent
    error = refused.json()
    assert error["type"] == "error" and error["error"]["type"] == "rate_limit_error"
    message = error["error"]["message"]
    assert "main (over budget, resets in" in message and "daily budget $2 reached ($3.00 today)" in message
    assert "spare (over budget" in message and "daily budget $1 reached" in message
    assert "local midnight" in message
    retry_after = float(refused.headers["retry-after"])
    midnight = time.mktime((*time.localtime(time.time())[:3], 24, 0, 0, 0, 0, -1))
    assert 0 < retry_after <= midnight - time.time() + 5

    chat = httpx.post(
        f"{gw.url}/v1/chat/completions", json={"model": "gpt-5", "messages": []}, headers=gw.headers("openai")
    )
    assert chat.status_code in (503, 404, 400)  # no OpenAI account: not a budget matter

    status = gw.account_status(main.id)
    assert status["health"] == "over_budget" and "daily budget $2 reached" in status["detail"]
    assert status["budget"]["state"] == "over_budget" and status["budget"][
        "spent_today_usd"
    ] == pytest.approx(3.0, abs=0.01)
    assert gw.account_status(spare.id)["budget"]["used_percent"] == pytest.approx(150.0, abs=0.5)
    text = format_status({**gw.status(), "running": True})
    assert text.startswith("■ All blocked · 0/2 ready")  # the summary counts both as blocked
    assert "○ main (anthropic-api-key): over its budget, resets in " in text
    assert "budget: $3.00 of $2 today (150% used, over budget)" in text


def test_spend_survives_a_restart(anthropic: FakeAnthropic, openai: FakeOpenAI) -> None:
    gw = start_gateway(anthropic_url=anthropic.url, openai_url=openai.url, settings=_quick)
    try:
        gw.add("anthropic", "main", "sk-ant-main")
        set_budget(gw.store, "main", 2.0, None)
        anthropic.default = COSTLY
        assert post(gw).status_code == 200
        assert post(gw).status_code == 200
        assert post(gw).status_code == 429
    finally:
        gw.stop()
    again = start_gateway(anthropic_url=anthropic.url, openai_url=openai.url, settings=_quick)
    try:
        assert wait_until(lambda: again.account_status("main")["budget"]["seeded"])
        assert again.account_status("main")["health"] == "over_budget"
        response = post(again)
        assert response.status_code == 429 and "daily budget $2 reached ($3.00 today)" in response.text
        assert len(anthropic.requests) == 2
        set_budget(again.store, "main", None, None)  # --clear: live
        assert wait_until(lambda: again.services.engine.settings.accounts[0].budget is None)
        assert post(again).status_code == 200
    finally:
        again.stop()


def test_80_percent_of_a_budget_is_a_warning_in_the_status(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    set_budget(gw.store, "main", 1.8, None)
    anthropic.default = COSTLY
    assert gw.account_status("main")["budget"]["state"] == "ok"
    assert post(gw).status_code == 200
    assert wait_until(lambda: gw.account_status("main")["budget"]["state"] == "warning")
    assert gw.account_status("main")["health"] == "healthy"


# -- aliases -------------------------------------------------------------------------------------------------------


def test_an_alias_reaches_the_upstream_as_the_real_model_and_the_log_keeps_both(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.edit(lambda s: setattr(s.models, "aliases", {"fast": "claude-haiku-4-5"}))
    raw = b'{"model" :  "fast", "max_tokens": 64,\n "messages": [{"role": "user", "content": "h\\u00e9"}]}'
    response = httpx.post(
        f"{gw.url}/v1/messages",
        content=raw,
        headers={**gw.headers(), "content-type": "application/json"},
        timeout=15,
    )
    assert response.status_code == 200, response.text
    sent = anthropic.last_request.body
    assert sent == raw.replace(b'"fast"', b'"claude-haiku-4-5"')  # only the model's bytes changed
    gw.flush_log()
    row = gw.services.engine.request_log.query()[0]
    assert (row.requested_model, row.model) == ("fast", "claude-haiku-4-5")

    plain = post(gw)
    assert plain.status_code == 200 and anthropic.last_request.json["model"] == "claude-sonnet-4-5"
    gw.flush_log()
    assert gw.services.engine.request_log.query()[0].requested_model is None


def test_models_lists_the_aliases_in_each_protocol(
    gw: RunningGateway, anthropic: FakeAnthropic, openai: FakeOpenAI
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("openai", "oa", "sk-proj-main")
    gw.edit(lambda s: setattr(s.models, "aliases", {"fast": "claude-haiku-4-5", "cheap": "gpt-5-mini"}))
    listed = httpx.get(f"{gw.url}/v1/models", headers=gw.headers(), timeout=15).json()
    ids = [m["id"] for m in listed["data"]]
    assert "claude-sonnet-4-5" in ids and "fast" in ids and "cheap" not in ids
    openai_ids = [
        m["id"]
        for m in httpx.get(f"{gw.url}/v1/models", headers=gw.headers("openai"), timeout=15).json()["data"]
    ]
    assert "cheap" in openai_ids and "fast" not in openai_ids


# -- routes --------------------------------------------------------------------------------------------------------


def test_a_route_limits_a_model_to_its_accounts_in_its_order(
    gw: RunningGateway, anthropic: FakeAnthropic
) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "team", "sk-ant-team")
    gw.add("anthropic", "lab", "sk-ant-lab")
    gw.edit(
        lambda s: setattr(s.models, "routes", [ModelRoute(match="claude-opus-*", accounts=["lab", "team"])])
    )
    opus = {**MESSAGE, "model": "claude-opus-4-1"}
    assert post(gw, opus).status_code == 200
    assert post(gw).status_code == 200  # no route: the normal pool, main first
    assert keys_seen(anthropic) == ["sk-ant-lab", "sk-ant-main"]

    anthropic.reset()
    anthropic.enqueue(Behavior(status=429, retry_after=60, error_type="rate_limit_error"))
    assert post(gw, opus).status_code == 200  # fallback within the route
    assert keys_seen(anthropic) == ["sk-ant-lab", "sk-ant-team"]

    anthropic.reset()
    anthropic.enqueue(Behavior(status=429, retry_after=60, error_type="rate_limit_error"))
    refused = post(gw, opus)  # lab cools down, team is rate-limited now: main is not in the route
    assert refused.status_code == 429
    assert keys_seen(anthropic) == ["sk-ant-team"]
    assert "main" not in json.loads(refused.text)["error"]["message"]


def test_a_route_matches_the_alias_target(gw: RunningGateway, anthropic: FakeAnthropic) -> None:
    gw.add("anthropic", "main", "sk-ant-main")
    gw.add("anthropic", "cheap", "sk-ant-cheap")

    def edit(s: Settings) -> None:
        s.models.aliases = {"fast": "claude-haiku-4-5"}
        s.models.routes = [ModelRoute(match="claude-haiku-*", accounts=["cheap"])]

    gw.edit(edit)
    assert post(gw, {**MESSAGE, "model": "fast"}).status_code == 200
    assert keys_seen(anthropic) == ["sk-ant-cheap"]
