"""Notifications derived from successive status snapshots, and their throttle."""

from __future__ import annotations

from typing import Any

from tray.notify import Notice, Throttle, derive

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
