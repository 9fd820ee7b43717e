"""The status ``summary``: the pool's health judged once (proxy/routing/summary.py), and the engine publishing it."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config.settings import Settings
from proxy.routing.health import HealthBook
from proxy.routing.quota import Window
from proxy.routing.state import RuntimeState
from proxy.routing.summary import STATES, health_summary
from proxy.status import status_snapshot

NOW = 1_800_000_000.0


def window(
    name: str, left: float, resets_in: float | None = None, minutes: int | None = None, **kw: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "remaining_percent": left,
        "resets_in_seconds": resets_in,
        "resets_at": None if resets_in is None else NOW + resets_in,
        "window_minutes": minutes,
        "current": True,
        **kw,
    }


def account(
    account_id: str,
    *windows: dict[str, Any],
    family: str = "openai",
    health: str = "healthy",
    last_ok: float | None = NOW - 60,
    blocked_for: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "id": account_id,
        "label": account_id,
        "family": family,
        "enabled": health != "disabled",
        "health": health,
        "blocked_until": None if blocked_for is None else NOW + blocked_for,
        "blocked_for_seconds": blocked_for,
        "last_ok_at": last_ok,
        "last_used_at": last_ok,
        "quota": {"updated_at": NOW - 30, "windows": list(windows)} if windows else None,
        **extra,
    }


def codex(account_id: str = "work", five_h: float = 38.0, week: float = 71.0, **kw: Any) -> dict[str, Any]:
    return account(
        account_id, window("5h", five_h, 4320, 300), window("weekly", week, 3 * 86400, 10080), **kw
    )


def test_api_keys_whose_short_windows_expired_are_healthy_not_unknown() -> None:
    expired = account("api", window("requests", 95, current=False), window("tokens", 90, current=False))
    summary = health_summary([expired], NOW)
    assert (summary["state"], summary["ready"], summary["total"], summary["percent"]) == (
        "healthy",
        1,
        1,
        None,
    )
    # Minutes later, with the windows gone from the snapshot altogether, it is still healthy.
    assert health_summary([account("api")], NOW)["state"] == "healthy"


def test_unknown_only_when_nothing_is_known() -> None:
    fresh = account("new", last_ok=None)
    summary = health_summary([fresh], NOW)
    assert (summary["state"], summary["ready"], summary["total"]) == ("unknown", 1, 1)
    assert "until the first request" in summary["headline"]
    assert health_summary([], NOW)["headline"] == "No accounts yet — add one in settings"
    assert health_summary([account("off", health="disabled")], NOW)["headline"] == "All accounts are disabled"
    # One account known is enough.
    assert health_summary([fresh, codex()], NOW)["state"] == "healthy"


def test_every_account_blocked_is_exhausted_with_the_next_reset() -> None:
    accounts = [
        codex("a", health="exhausted", blocked_for=3600.0),
        account("b", family="anthropic", health="cooling_down", blocked_for=300.0),
    ]
    summary = health_summary(accounts, NOW)
    assert (summary["state"], summary["ready"], summary["total"]) == ("exhausted", 0, 2)
    assert summary["next_reset"] == NOW + 300
    assert summary["headline"] == "All blocked · 0/2 ready · next back in 5m"
    # An empty current window counts as blocked until that window resets.
    empty = health_summary([codex("a", five_h=0)], NOW)
    assert (empty["state"], empty["next_reset"]) == ("exhausted", NOW + 4320)


def test_an_account_over_its_budget_is_blocked_until_its_reset() -> None:
    spent = account("b", family="anthropic", health="over_budget", blocked_for=5 * 3600.0)
    summary = health_summary([spent], NOW)
    assert (summary["state"], summary["ready"], summary["next_reset"]) == ("exhausted", 0, NOW + 5 * 3600)
    assert summary["accounts"][0]["line"] == "b · over its budget, resets in 5h"


def test_some_blocked_is_pool_health_not_the_worst_account() -> None:
    accounts = [
        codex("a", five_h=60),
        codex("b", health="cooling_down", blocked_for=120.0),
        codex("c", five_h=80),
        codex("d", five_h=90),
        codex("e", five_h=70),
    ]
    summary = health_summary(accounts, NOW)
    assert (summary["state"], summary["ready"], summary["total"]) == ("healthy", 4, 5)
    assert summary["headline"].startswith("Healthy · 4/5 ready")
    assert summary["next_reset"] == NOW + 120
    assert summary["attention"] is None


def test_the_pool_shows_the_best_account_of_the_tightest_family() -> None:
    low_main = codex("main", five_h=3, last_ok=NOW - 5)
    fine_backup = codex("backup", five_h=64, last_ok=None)
    assert health_summary([low_main, fine_backup], NOW)["percent"] == 64
    claude = account("claude", window("tokens", 12), family="anthropic")
    summary = health_summary([codex(five_h=60), claude], NOW)
    assert (summary["state"], summary["percent"]) == ("low", 12)


def test_levels_thresholds_and_pace() -> None:
    assert health_summary([codex(five_h=21, week=90)], NOW)["state"] == "healthy"
    assert health_summary([codex(five_h=20, week=90)], NOW)["state"] == "low"
    assert health_summary([codex(five_h=5, week=90)], NOW)["state"] == "critical"
    # 4 h of the 5 h window left but 70 % used: at this pace it is empty in ~26 min, well before the reset.
    hot = health_summary([account("work", window("5h", 30, 4 * 3600, 300))], NOW)
    assert hot["state"] == "low" and hot["runs_out_in"] == pytest.approx(1542.9, abs=1)
    assert "runs out in ~26m at this rate" in hot["accounts"][0]["line"]
    assert "runs out in ~26m" in hot["headline"]
    # The same share used with 20 minutes to go lasts until the reset: no pace warning.
    calm = health_summary([account("work", window("5h", 30, 20 * 60, 300))], NOW)
    assert calm["state"] == "healthy" and calm["runs_out_in"] is None
    # Too little of the window gone by to judge: no pace.
    early = health_summary([account("work", window("5h", 90, 290 * 60, 300))], NOW)
    assert early["accounts"][0]["windows"][0]["runs_out_in_seconds"] is None


def test_login_states_and_the_badge() -> None:
    assert health_summary([codex(health="needs_login")], NOW)["state"] == "needs_login"
    assert health_summary([account("k", health="auth_failed")], NOW)["state"] == "needs_login"
    mixed = health_summary([codex(five_h=60), account("api", family="anthropic", health="needs_login")], NOW)
    assert (mixed["state"], mixed["attention"], mixed["ready"]) == ("healthy", "needs_login", 1)
    assert "api · needs login" in mixed["lines"]
    family_down = health_summary(
        [codex(five_h=60), account("claude", family="anthropic", health="cooling_down", blocked_for=60.0)],
        NOW,
    )
    assert family_down["attention"] == "blocked"
    assert "Anthropic: no account ready, next back in 1m" in family_down["lines"]
    # Claude Code's requests all fail: the headline says so first, not "Healthy"; the share left is OpenAI's
    assert family_down["state"] == "healthy" and family_down["blocked_families"] == ["Anthropic"]
    assert family_down["headline"] == "Anthropic blocked · 1/2 ready · 60% left · next back in 1m"
    # the next-back time is the blocked family's, not that of another family's account cooling down
    both_cooling = health_summary(
        [
            codex(five_h=60),
            codex("spare", health="cooling_down", blocked_for=30.0),
            account("claude", family="anthropic", health="cooling_down", blocked_for=600.0),
        ],
        NOW,
    )
    assert both_cooling["headline"] == "Anthropic blocked · 1/3 ready · 60% left · next back in 10m"
    # a family that needs a login is blocked too (attention says login first)
    login = health_summary([codex(five_h=60), account("api", family="anthropic", health="auth_failed")], NOW)
    assert login["attention"] == "needs_login"
    assert login["headline"] == "Anthropic blocked · 1/2 ready · 60% left"
    # within one family, some blocked is not a blocked family
    assert health_summary([codex(five_h=60), codex("b", health="needs_login")], NOW)["blocked_families"] == []


def test_paused_keeps_the_counts() -> None:
    summary = health_summary([codex()], NOW, paused=True)
    assert (summary["state"], summary["ready"], summary["total"]) == ("paused", 1, 1)
    assert summary["headline"].startswith("Gateway paused")


def test_the_account_in_use_per_family() -> None:
    main = codex("main", five_h=0, last_ok=NOW - 600)
    backup = codex("backup", five_h=64, last_ok=NOW - 5)
    serving = {a["id"]: a["serving"] for a in health_summary([main, backup], NOW)["accounts"]}
    assert serving == {"main": False, "backup": True}
    first, second = codex("first", last_ok=None), codex("second", last_ok=None)
    assert [a["serving"] for a in health_summary([first, second], NOW)["accounts"]] == [True, False]
    flipped = health_summary([first, second], NOW, routing="fallback-first")
    assert [a["serving"] for a in flipped["accounts"]] == [False, True]


def test_every_state_is_reachable_and_the_tooltip_is_the_headline_and_lines() -> None:
    cases = {
        "healthy": [codex()],
        "low": [codex(five_h=15)],
        "critical": [codex(five_h=2)],
        "exhausted": [codex(health="exhausted", blocked_for=60.0)],
        "needs_login": [codex(health="needs_login")],
        "unknown": [account("x", last_ok=None)],
    }
    for state, accounts in cases.items():
        summary = health_summary(accounts, NOW)
        assert summary["state"] == state
        assert summary["tooltip"] == "\n".join([f"Headway — {summary['headline']}", *summary["lines"]])
    assert set(cases) | {"paused"} == set(STATES)


def test_the_engine_inputs_give_the_same_summary() -> None:
    """What the engine publishes: health_summary over the status snapshot of the live state."""
    settings = Settings.model_validate(
        {
            "accounts": [
                {"id": "work", "kind": "openai-api-key", "label": "work"},
                {"id": "api", "kind": "anthropic-api-key", "label": "api"},
            ]
        }
    )
    state = RuntimeState(health=HealthBook())
    state.health.cool_down("api", NOW + 90, "429", exhausted=False)
    state.health.ok("work", NOW - 10)
    state.quota.update("work", [Window("requests", 100, 90, resets_at=NOW + 20)], NOW - 10)
    published = health_summary(status_snapshot(settings, state, NOW, {}), NOW, routing="main-first")
    assert (published["state"], published["ready"], published["total"]) == ("healthy", 1, 2)
    assert published["next_reset"] == NOW + 90
    # 30 s later the per-minute window has expired: still healthy, never unknown.
    later = health_summary(status_snapshot(settings, state, NOW + 30, {}), NOW + 30, routing="main-first")
    assert later["state"] == "healthy" and later["percent"] is None
