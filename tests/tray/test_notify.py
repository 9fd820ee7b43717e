"""Notifications derived from successive status snapshots, and their throttle."""

from __future__ import annotations

from typing import Any

from tray.notify import Notice, Throttle, derive, wanted

NOW = 1_800_000_000.0


def acct(
    account_id: str,
    *,
    five_h: float | None = 60.0,
    health: str = "healthy",
    last_ok: float | None = None,
    family: str = "openai",
    minutes: int | None = 300,
    **extra: Any,
) -> dict[str, Any]:
    windows = (
        []
        if five_h is None
        else [
            {
                "name": "5h",
                "remaining_percent": five_h,
                "resets_in_seconds": 4320.0,
                "window_minutes": minutes,
                "current": True,
            }
        ]
    )
    return {
        "id": account_id,
        "label": account_id,
        "family": family,
        "health": health,
        "blocked_for_seconds": extra.pop("blocked_for_seconds", None),
        "last_ok_at": last_ok,
        "quota": {"updated_at": NOW, "windows": windows} if windows else None,
        **extra,
    }


def snap(*accounts: dict[str, Any]) -> dict[str, Any]:
    return {"accounts": list(accounts)}


def keys(notices: list[Notice]) -> list[tuple[str, ...]]:
    return [n.key for n in notices]


def test_nothing_on_the_first_snapshot_or_without_changes() -> None:
    current = snap(acct("work", five_h=3, health="needs_login"))
    assert derive(None, current) == []
    assert derive(current, current) == []


def test_crossing_80_and_95_percent_used() -> None:
    notices = derive(snap(acct("work", five_h=25)), snap(acct("work", five_h=19)))
    assert keys(notices) == [("threshold", "work", "5h", "80")]
    assert notices[0].title == "work: 80% of the 5h quota used"
    assert notices[0].message == "work · 5h: 19% left, resets in 1h 12m."
    assert keys(derive(snap(acct("work", five_h=19)), snap(acct("work", five_h=4.5)))) == [
        ("threshold", "work", "5h", "95")
    ]
    # Both at once: only the stronger one.
    assert keys(derive(snap(acct("work", five_h=50)), snap(acct("work", five_h=2)))) == [
        ("threshold", "work", "5h", "95")
    ]
    # Going back up (a reset) is not a crossing.
    assert derive(snap(acct("work", five_h=4)), snap(acct("work", five_h=100))) == []


def test_per_minute_api_windows_do_not_cross_thresholds() -> None:
    assert derive(snap(acct("api", five_h=50, minutes=None)), snap(acct("api", five_h=3, minutes=None))) == []


def test_exhausted_with_its_reset_time() -> None:
    notices = derive(snap(acct("work", five_h=2)), snap(acct("work", five_h=0)))
    assert keys(notices) == [("exhausted", "work")]
    assert notices[0].message == "work is out of 5h quota; resets in 1h 12m."
    limited = derive(snap(acct("api")), snap(acct("api", health="cooling_down", blocked_for_seconds=90.0)))
    assert limited[0].message == "api is rate-limited; back in 2m."
    out = derive(snap(acct("work")), snap(acct("work", health="exhausted", blocked_for_seconds=3600.0)))
    assert [(n.key, n.message) for n in out] == [
        (("exhausted", "work"), "work is out of quota; resets in 1h.")
    ]


def test_login_needed_or_key_rejected() -> None:
    login = derive(snap(acct("work")), snap(acct("work", health="needs_login")))
    assert [(n.key, n.title) for n in login] == [(("needs_login", "work"), "work needs login")]
    rejected = derive(snap(acct("api")), snap(acct("api", health="auth_failed")))
    assert rejected[0].title == "api key was rejected"


def test_fell_back_to_another_account() -> None:
    before = snap(acct("main", last_ok=NOW - 10), acct("backup", last_ok=None))
    after = snap(acct("main", five_h=0, last_ok=NOW - 10), acct("backup", last_ok=NOW))
    notices = derive(before, after)
    assert ("fallback", "openai", "backup") in keys(notices)
    fallback = next(n for n in notices if n.key[0] == "fallback")
    assert fallback.message == "main is out of 5h quota; requests now go to backup."
    marked = snap(
        acct("main", health="exhausted", blocked_for_seconds=600.0, last_ok=NOW - 10),
        acct("backup", last_ok=NOW),
    )
    reason = next(n for n in derive(before, marked) if n.key[0] == "fallback")
    assert reason.message == "main is out of quota, resets in 10m; requests now go to backup."


def test_a_healthy_account_losing_the_lead_is_not_a_fallback() -> None:
    # Sticky routing spreads sessions over healthy accounts: that is not news.
    before = snap(acct("a", last_ok=NOW - 10), acct("b", last_ok=NOW - 20))
    after = snap(acct("a", last_ok=NOW - 10), acct("b", last_ok=NOW))
    assert derive(before, after) == []


def test_the_throttle_limits_repeats_and_bursts() -> None:
    clock = [0.0]
    throttle = Throttle(per_key=600, burst=2, burst_window=60, clock=lambda: clock[0])
    a, b, c = (Notice((k,), k, k) for k in "abc")
    assert throttle.allow(a) and not throttle.allow(a)
    assert throttle.allow(b) and not throttle.allow(c)  # burst of two used up
    clock[0] = 61.0
    assert throttle.allow(c) and not throttle.allow(a)
    clock[0] = 700.0
    assert throttle.allow(a)


# --------------------------------------------------------------------------- pool states, switches, storms


def with_summary(*accounts: dict[str, Any]) -> dict[str, Any]:
    from proxy.routing.summary import health_summary

    data = snap(*accounts)
    data["summary"] = health_summary(data["accounts"], NOW)
    return data


def blocked(account_id: str, seconds: float = 600.0) -> dict[str, Any]:
    return acct(
        account_id,
        health="exhausted",
        blocked_for_seconds=seconds,
        blocked_until=NOW + seconds,
        last_ok=NOW - 60,
    )


def test_the_pool_running_out_is_one_notice_with_its_reset_time() -> None:
    before = with_summary(acct("a", last_ok=NOW - 60), blocked("b", 900.0))
    after = with_summary(blocked("a", 300.0), blocked("b", 900.0))
    notices = derive(before, after)
    assert keys(notices) == [("pool_exhausted",)]  # not also "a is out of quota" or a fallback
    assert notices[0].title == "No account can take requests"
    assert "(in 5m)" in notices[0].message and "The first one is back at" in notices[0].message


def test_recovery_of_an_account_and_of_the_pool() -> None:
    out = with_summary(blocked("a"), blocked("b"))
    one_back = with_summary(acct("a", last_ok=NOW - 60), blocked("b"))
    assert keys(derive(out, one_back)) == [("pool_recovered",)]
    both_back = with_summary(acct("a", last_ok=NOW - 60), acct("b", last_ok=NOW - 60))
    back = derive(one_back, both_back)
    assert [(n.key, n.title) for n in back] == [(("recovered", "b"), "b is back")]


def test_each_kind_has_its_switch() -> None:
    from proxy.config.settings import NotificationSettings

    pool = Notice(("pool_exhausted",), "t", "m")
    login = Notice(("needs_login", "a"), "t", "m")
    back = Notice(("recovered", "a"), "t", "m")
    port = Notice(("listen_error", "x"), "t", "m")
    everything = NotificationSettings()
    assert all(wanted(n, everything) for n in (pool, login, back, port))
    quiet = NotificationSettings(exhausted=False, needs_login=False, recovered=False, low_quota=False)
    assert [wanted(n, quiet) for n in (pool, login, back, port)] == [False, False, False, True]


def test_no_storm_when_many_accounts_change_or_one_flaps() -> None:
    """Forty accounts needing login at once make one notice; an account flapping every tick makes one a state."""
    healthy = with_summary(*(acct(f"k{i}", last_ok=NOW - 60) for i in range(40)))
    locked = with_summary(*(acct(f"k{i}", health="needs_login") for i in range(40)))
    notices = derive(healthy, locked)
    assert len(notices) == 1
    assert notices[0].title == "40 accounts need login"
    assert notices[0].message.startswith("k0, k1, k2 and 37 more.")

    clock = [0.0]
    throttle = Throttle(clock=lambda: clock[0])
    up = with_summary(acct("a", last_ok=NOW - 60), acct("b", last_ok=NOW - 60))
    down = with_summary(blocked("a", 30.0), acct("b", last_ok=NOW - 60))
    shown: list[Notice] = []
    previous = up
    for tick in range(200):  # flapping every half second for 100 s
        clock[0] = tick * 0.5
        current = down if tick % 2 else up
        shown += [n for n in derive(previous, current) if throttle.allow(n)]
        previous = current
    assert [n.key for n in shown] == [("exhausted", "a"), ("recovered", "a")]  # once each, not 200 times


def test_a_budget_warns_at_80_percent_and_says_when_it_is_reached(tmp_path: Any) -> None:
    """Snapshots built the way the engine builds them: the budgets feature's state inside status_snapshot."""
    from proxy.config.settings import Settings
    from proxy.features.base import Completed
    from proxy.features.budgets import Budgets
    from proxy.features.request_log import RequestLog
    from proxy.providers.base import Incoming
    from proxy.routing.state import RuntimeState
    from proxy.status import status_snapshot
    from proxy.wire.usage import Usage

    settings = Settings.model_validate(
        {
            "accounts": [
                {"id": "work", "kind": "anthropic-api-key", "label": "Work", "budget": {"daily_usd": 1.8}}
            ]
        }
    )
    budgets = Budgets(RequestLog(tmp_path / "r.sqlite3"), clock=lambda: NOW)
    budgets.configure(settings)
    request = Incoming("POST", "/v1/messages", "", {}, b"{}", {}, "anthropic", "anthropic")

    def snapshot() -> dict[str, Any]:
        accounts = status_snapshot(settings, RuntimeState(), NOW, {}, budgets=budgets.snapshot(NOW))
        return {"accounts": accounts}

    def spend() -> None:  # $1.50 on claude-sonnet-4-5
        budgets.on_complete(
            Completed(
                request,
                settings.accounts[0],
                200,
                Usage(output_tokens=100_000),
                "claude-sonnet-4-5",
                NOW,
                1,
                1,
                billing="metered",
            )
        )

    first = snapshot()
    spend()
    warned = snapshot()
    assert [(n.key, n.title) for n in derive(first, warned)] == [
        (("budget_warning", "work"), "Work: 83.3% of its budget used")
    ]
    assert derive(warned, snapshot()) == []
    spend()
    over = snapshot()
    notices = derive(warned, over)
    assert [n.key for n in notices] == [("over_budget", "work")]
    assert notices[0].title == "Work is over budget"
    assert "daily budget $1.8 reached ($3.00 today); resets at local midnight (in " in notices[0].message
    assert over["accounts"][0]["health"] == "over_budget"  # one notice: not also "out of quota"
