"""How a replica takes in what others tell it: the merge rules, one by one (no Redis needed)."""

from __future__ import annotations

from proxy.routing.health import HealthBook
from proxy.routing.quota import QuotaBook, Window
from proxy.routing.router import PIN_RETELL_SECONDS, Router
from proxy.routing.spend import SpendBook
from proxy.shared.records import (
    apply_health,
    apply_pin,
    apply_quota,
    apply_spend,
    encode_message,
    health_record,
    parse_message,
)


def test_cooldowns_take_the_later_end_auth_takes_the_newer_change() -> None:
    mine, theirs = HealthBook(), HealthBook()
    seen: dict[str, float] = {}
    mine.cool_down("a", 200.0, "mine")
    theirs.cool_down("a", 100.0, "theirs")
    assert not apply_health(mine, "a", health_record(theirs.of("a"), at=10.0), seen)
    assert mine.of("a").cooldown_until == 200.0
    theirs.cool_down("a", 300.0, "theirs, longer")
    theirs.fail_auth("a", "401", "fp")
    assert apply_health(mine, "a", health_record(theirs.of("a"), at=20.0), seen)
    assert mine.of("a").cooldown_until == 300.0 and mine.of("a").auth_failed == "401"
    theirs.ok("a", 0.0)
    assert not apply_health(
        mine, "a", health_record(theirs.of("a"), at=15.0), seen
    )  # older than what we hold
    assert apply_health(mine, "a", health_record(theirs.of("a"), at=30.0), seen)
    assert mine.of("a").auth_failed is None
    assert not apply_health(mine, "a", "garbage", seen)


def test_quota_takes_the_later_snapshot() -> None:
    mine, theirs = QuotaBook(), QuotaBook()
    mine.update("a", [Window("tokens", limit=10, remaining=9)], now=5.0)
    theirs.update("a", [Window("tokens", limit=10, remaining=1)], now=4.0)
    assert not apply_quota(mine, theirs.get("a").to_json())  # type: ignore[union-attr]
    theirs.update("a", [Window("tokens", limit=10, remaining=2)], now=6.0)
    assert apply_quota(mine, theirs.get("a").to_json())  # type: ignore[union-attr]
    assert mine.get("a").windows[0].remaining == 2  # type: ignore[union-attr]
    assert not apply_quota(mine, {"nonsense": True})


def test_listeners_are_told_of_changes_and_pins_are_retold_sparingly() -> None:
    told: list[tuple[str, ...]] = []
    health, quota, router = HealthBook(), QuotaBook(), Router()
    health.listener = lambda account, h: told.append(("health", account))
    quota.listener = lambda snapshot: told.append(("quota", snapshot.account_id))
    router.listener = lambda session, account, at: told.append(("pin", session, account))
    health.cool_down("a", 100.0, "429")
    health.cool_down("a", 50.0, "shorter: not a change")
    health.ok("a", 1.0)  # nothing to clear: not told
    quota.update("a", [Window("tokens", limit=1, remaining=1)], 1.0)
    router.pin("s", "a", 1.0)
    router.pin("s", "a", 2.0)  # same account, soon after: not retold
    router.pin("s", "b", 3.0)
    router.pin("s", "b", 3.0 + PIN_RETELL_SECONDS)
    assert told == [("health", "a"), ("quota", "a"), ("pin", "s", "a"), ("pin", "s", "b"), ("pin", "s", "b")]
    # Taking a pin from elsewhere never tells the listener (nothing is told back).
    assert apply_pin(router, "t", ["a", 10.0]) and len(told) == 5
    assert router.pinned("t", 11.0, 60) == "a"
    assert not apply_pin(router, "t", "garbage")


def test_spend_takes_the_larger_total_of_today() -> None:
    book = SpendBook(clock=lambda: 0.0)
    book.add("bob", 1.0)
    assert apply_spend(book, "1970-01-01|bob", 3.0) and book.today("bob") == 3.0
    assert not apply_spend(book, "1970-01-01|bob", 2.0) and book.today("bob") == 3.0
    assert not apply_spend(book, "1969-12-31|bob", 9.0)


def test_messages_round_trip_and_foreign_ones_are_ignored() -> None:
    message = parse_message(encode_message("r1", "health", "a", {"x": 1}))
    assert message is not None and (message.replica, message.kind, message.key, message.value) == (
        "r1",
        "health",
        "a",
        {"x": 1},
    )
    for foreign in (b"not json", b"[1]", b'{"r": 1}', b"\xff"):
        assert parse_message(foreign) is None
