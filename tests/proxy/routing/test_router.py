"""Candidate order per routing mode; disabled, blocked and killswitched accounts skipped with reasons; low-quota
accounts moved to the end; sticky pins that expire."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxy.config.settings import ModelRoute, Settings, parse_settings
from proxy.routing.health import HealthBook
from proxy.routing.quota import QuotaBook, Window
from proxy.routing.router import Candidates, Router

NOW = 1_750_000_000.0


def _settings(
    mode: str = "main-first", accounts: list[dict[str, Any]] | None = None, **routing: Any
) -> Settings:
    if accounts is None:
        accounts = [
            {"id": "a1", "kind": "anthropic-api-key", "label": "A1"},
            {"id": "o1", "kind": "openai-api-key", "label": "O1"},
            {"id": "a2", "kind": "anthropic-api-key", "label": "A2"},
            {"id": "c1", "kind": "chatgpt", "label": "C1"},
            {"id": "a3", "kind": "anthropic-api-key", "label": "A3"},
        ]
    return parse_settings(json.dumps({"routing": {"mode": mode, **routing}, "accounts": accounts}))


def _route(
    settings: Settings,
    family: str = "anthropic",
    *,
    router: Router | None = None,
    session: str | None = None,
    now: float = NOW,
    health: HealthBook | None = None,
    quota: QuotaBook | None = None,
    fingerprints: dict[str, str] | None = None,
) -> Candidates:
    return (router or Router()).candidates(
        settings,
        family,  # type: ignore[arg-type]
        session_id=session,
        now=now,
        health=health or HealthBook(),
        quota=quota or QuotaBook(),
        fingerprints=fingerprints,
    )


def _ids(c: Candidates) -> list[str]:
    return [a.id for a in c.usable]


def _skipped(c: Candidates) -> dict[str, tuple[str, str]]:
    return {s.account.id: (s.block.state, s.block.reason) for s in c.skipped}


def _low(account_id: str, fraction: float, resets_in: float = 3600) -> QuotaBook:
    book = QuotaBook()
    book.update(
        account_id, [Window("tokens", limit=100, remaining=100 * fraction, resets_at=NOW + resets_in)], NOW
    )
    return book


# --------------------------------------------------------------------------- modes


def test_main_first_keeps_settings_order_within_the_family() -> None:
    assert _ids(_route(_settings())) == ["a1", "a2", "a3"]
    assert _ids(_route(_settings(), "openai")) == ["o1", "c1"]  # API keys and ChatGPT share the openai family


def test_fallback_first_keeps_the_main_account_in_reserve() -> None:
    assert _ids(_route(_settings("fallback-first"))) == ["a2", "a3", "a1"]
    assert _ids(_route(_settings("fallback-first"), "openai")) == ["c1", "o1"]


def test_fallback_first_with_the_main_account_unusable_keeps_the_rest_in_order() -> None:
    health = HealthBook()
    health.cool_down("a1", NOW + 60, "429")
    assert _ids(_route(_settings("fallback-first"), health=health)) == ["a2", "a3"]


def test_fallback_first_with_one_account_uses_it() -> None:
    s = _settings("fallback-first", [{"id": "solo", "kind": "anthropic-api-key", "label": "Solo"}])
    assert _ids(_route(s)) == ["solo"]


def test_sticky_keeps_a_session_on_its_account() -> None:
    s = _settings("sticky")
    router = Router()
    assert _ids(_route(s, router=router, session="s1")) == ["a1", "a2", "a3"]  # new session: main first
    router.pin("s1", "a3", NOW)
    assert _ids(_route(s, router=router, session="s1", now=NOW + 10)) == ["a3", "a1", "a2"]
    assert _ids(_route(s, router=router, session="s2", now=NOW + 10)) == ["a1", "a2", "a3"]
    assert _ids(_route(s, router=router, session=None, now=NOW + 10)) == ["a1", "a2", "a3"]


def test_pins_only_matter_in_sticky_mode() -> None:
    router = Router()
    router.pin("s1", "a3", NOW)
    assert _ids(_route(_settings("main-first"), router=router, session="s1")) == ["a1", "a2", "a3"]


def test_sticky_pins_expire_after_the_idle_time() -> None:
    s = _settings("sticky", sticky_idle_minutes=10)
    router = Router()
    router.pin("s1", "a2", NOW)
    assert (
        _ids(_route(s, router=router, session="s1", now=NOW + 600))[0] == "a2"
    )  # exactly the limit: still pinned
    router.pin("s1", "a2", NOW + 600)  # used again: the idle clock restarts
    assert _ids(_route(s, router=router, session="s1", now=NOW + 1199))[0] == "a2"
    assert _ids(_route(s, router=router, session="s1", now=NOW + 1201))[0] == "a1"
    assert router.pinned("s1", NOW + 1201, 600) is None
    assert "s1" not in router.to_json(), "an expired pin is dropped, not kept forever"


def test_sticky_leaves_a_pinned_account_that_became_unusable() -> None:
    s = _settings("sticky")
    router = Router()
    router.pin("s1", "a2", NOW)
    health = HealthBook()
    health.cool_down("a2", NOW + 60, "429")
    assert _ids(_route(s, router=router, session="s1", health=health)) == ["a1", "a3"]
    # back to its account once the cooldown is over
    assert _ids(_route(s, router=router, session="s1", now=NOW + 61, health=health))[0] == "a2"


def test_sticky_pin_to_an_account_of_another_family_is_ignored() -> None:
    router = Router()
    router.pin("s1", "o1", NOW)
    assert _ids(_route(_settings("sticky"), router=router, session="s1")) == ["a1", "a2", "a3"]


def test_pins_are_bounded_least_recently_used_first() -> None:
    router = Router(max_pins=2)
    router.pin("s1", "a1", NOW)
    router.pin("s2", "a2", NOW)
    router.pin("s1", "a3", NOW + 1)  # s1 used again
    router.pin("s3", "a1", NOW + 2)
    assert set(router.to_json()) == {"s1", "s3"}
    router.pin(None, "a1", NOW)  # no session: nothing to pin
    assert len(router.to_json()) == 2


def test_pins_round_trip_through_json() -> None:
    router = Router()
    router.pin("s1", "a2", NOW)
    again = Router()
    again.load_json(json.loads(json.dumps(router.to_json())))
    assert again.pinned("s1", NOW + 1, 60) == "a2"
    again.load_json({"bad": "x", "worse": [1]})
    assert again.pinned("bad", NOW, 60) is None


# --------------------------------------------------------------------------- skipped accounts


def test_disabled_and_blocked_accounts_are_skipped_with_reasons() -> None:
    s = _settings()
    s.accounts[0].enabled = False  # a1
    health = HealthBook()
    health.cool_down("a2", NOW + 60, "429 rate_limit_error")
    health.fail_auth("a3", "401 invalid x-api-key", "fp-a3")
    c = _route(s, health=health, fingerprints={"a3": "fp-a3"})
    assert _ids(c) == []
    assert _skipped(c) == {
        "a1": ("disabled", "disabled in settings"),
        "a2": ("cooling_down", "429 rate_limit_error"),
        "a3": ("auth_failed", "401 invalid x-api-key"),
    }
    cooling = next(x for x in c.skipped if x.account.id == "a2")
    assert cooling.block.until == NOW + 60


def test_a_replaced_key_makes_an_auth_failed_account_usable_again() -> None:
    health = HealthBook()
    health.fail_auth("a1", "401", "fp-old")
    assert _ids(_route(_settings(), health=health, fingerprints={"a1": "fp-new"})) == ["a1", "a2", "a3"]


def test_killswitch_blocks_until_the_window_resets() -> None:
    s = _settings(
        accounts=[
            {"id": "a1", "kind": "anthropic-api-key", "label": "A1", "killswitch": {"tokens": 10}},
            {"id": "a2", "kind": "anthropic-api-key", "label": "A2"},
        ]
    )
    quota = _low("a1", 0.05, resets_in=120)
    c = _route(s, quota=quota)
    assert _ids(c) == ["a2"]
    (skipped,) = c.skipped
    assert skipped.block.state == "killswitch" and skipped.block.until == NOW + 120
    assert "tokens" in skipped.block.reason and "10%" in skipped.block.reason
    assert _ids(_route(s, quota=quota, now=NOW + 121)) == ["a1", "a2"]


# --------------------------------------------------------------------------- low quota


def test_low_quota_accounts_go_to_the_end_not_away() -> None:
    s = _settings(min_remaining_percent=20)
    c = _route(s, quota=_low("a1", 0.1))
    assert _ids(c) == ["a2", "a3", "a1"]
    assert c.skipped == []


def test_low_quota_is_forgotten_once_the_window_resets() -> None:
    s = _settings(min_remaining_percent=20)
    assert _ids(_route(s, quota=_low("a1", 0.1, resets_in=60), now=NOW + 61)) == ["a1", "a2", "a3"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (None, ["a2", "a3", "a1"]),  # the global 20% applies: 10% is low
        (5, ["a1", "a2", "a3"]),  # this account tolerates down to 5%
        (0, ["a1", "a2", "a3"]),  # 0 turns the check off for this account
    ],
)
def test_per_account_minimum_overrides_the_global_one(override: float | None, expected: list[str]) -> None:
    s = _settings(min_remaining_percent=20)
    if override is not None:
        s.accounts[0].min_remaining_percent = override
    assert _ids(_route(s, quota=_low("a1", 0.1))) == expected


def test_per_account_minimum_applies_without_a_global_one() -> None:
    s = _settings()
    s.accounts[2].min_remaining_percent = 50  # a2
    assert _ids(_route(s, quota=_low("a2", 0.4))) == ["a1", "a3", "a2"]


def test_sticky_prefers_the_pinned_account_over_others_but_not_over_low_quota_order() -> None:
    s = _settings("sticky", min_remaining_percent=20)
    router = Router()
    router.pin("s1", "a1", NOW)
    assert _ids(_route(s, router=router, session="s1", quota=_low("a1", 0.1))) == ["a2", "a3", "a1"]


# --------------------------------------------------------------------------- model routes


def _routed(
    routes: list[dict[str, Any]], model: str | None, requested: str | None = None, **kw: Any
) -> Candidates:
    settings = _settings(**kw)
    settings.models.routes = [ModelRoute.model_validate(r) for r in routes]
    return Router().candidates(
        settings,
        "anthropic",
        session_id=None,
        now=NOW,
        health=kw.pop("health", HealthBook()),
        quota=QuotaBook(),
        model=model,
        requested_model=requested,
    )


def test_the_first_matching_route_picks_the_accounts_in_its_order() -> None:
    routes = [{"match": "claude-opus-*", "accounts": ["A3", "a1"]}, {"match": "claude-*", "accounts": ["A2"]}]
    assert _ids(_routed(routes, "claude-opus-4-1")) == ["a3", "a1"]
    assert _ids(_routed(routes, "claude-sonnet-4-5")) == ["a2"]
    assert _ids(_routed(routes, "gpt-5")) == ["a1", "a2", "a3"]  # no match: the family's pool
    assert _ids(_routed(routes, None)) == ["a1", "a2", "a3"]


def test_a_route_matches_the_name_the_agent_sent_too_and_keeps_only_its_family() -> None:
    routes = [{"match": "fast", "accounts": ["O1", "A2"]}]
    assert _ids(_routed(routes, "claude-haiku-4-5", "fast")) == ["a2"]


def test_the_mode_arranges_the_routes_pool() -> None:
    routes = [{"match": "claude-*", "accounts": ["A3", "A2"]}]
    assert _ids(_routed(routes, "claude-x", mode="fallback-first")) == ["a2", "a3"]
