"""Per-account health: cooldowns and exhaustion expire, auth failures last until the secret changes."""

from __future__ import annotations

import json

from proxy.routing.health import AccountHealth, Block, HealthBook

NOW = 1_750_000_000.0


def test_an_unknown_account_is_healthy() -> None:
    assert HealthBook().block("a", NOW) is None


def test_cooldown_blocks_until_it_expires_then_clears() -> None:
    book = HealthBook()
    book.cool_down("a", NOW + 60, "429 rate_limit_error")
    assert book.block("a", NOW) == Block("cooling_down", "429 rate_limit_error", NOW + 60)
    assert book.block("a", NOW + 59.9) is not None
    assert book.block("a", NOW + 60) is None
    assert book.tidy(NOW + 60, {}) is True  # the owner (the engine loop) clears it
    health = book.of("a")
    assert (health.cooldown_until, health.cooldown_reason) == (None, None)
    assert health.last_error == "429 rate_limit_error"  # kept for the status display
    assert book.tidy(NOW + 61, {}) is False


def test_block_is_a_pure_read() -> None:
    """Status readers call block() from other threads' points of view: it must never write (issue 10, defect 2)."""
    book = HealthBook()
    book.cool_down("a", NOW + 60, "429 rate_limit_error")
    book.fail_auth("b", "401 invalid x-api-key", fingerprint="fp-old")
    before = json.dumps(book.to_json(), sort_keys=True)
    assert book.block("a", NOW + 3600) is None  # expired
    assert book.block("b", NOW, "fp-new") is None  # replaced key
    assert json.dumps(book.to_json(), sort_keys=True) == before


def test_a_shorter_cooldown_never_shortens_a_longer_one() -> None:
    book = HealthBook()
    book.cool_down("a", NOW + 600, "retry-after 600")
    book.cool_down("a", NOW + 5, "retry-after 5")
    assert book.block("a", NOW + 10) == Block("cooling_down", "retry-after 600", NOW + 600)
    book.cool_down("a", NOW + 900, "retry-after 900")
    assert book.block("a", NOW + 10).until == NOW + 900  # type: ignore[union-attr]
    assert book.of("a").last_error == "retry-after 900"


def test_exhaustion_is_reported_as_such_and_expires() -> None:
    book = HealthBook()
    book.cool_down("a", NOW + 3600, "usage limit reached", exhausted=True)
    assert book.block("a", NOW) == Block("exhausted", "usage limit reached", NOW + 3600)
    assert book.block("a", NOW + 3600) is None
    book.cool_down("a", NOW + 3700, "429")
    assert book.block("a", NOW + 3601).state == "cooling_down"  # type: ignore[union-attr]


def test_auth_failure_lasts_until_the_key_changes() -> None:
    book = HealthBook()
    book.fail_auth("a", "401 invalid x-api-key", fingerprint="fp-old")
    assert book.block("a", NOW + 10**6, "fp-old") == Block("auth_failed", "401 invalid x-api-key")
    assert book.block("a", NOW + 10**6) == Block(
        "auth_failed", "401 invalid x-api-key"
    )  # no fingerprint known
    assert book.block("a", NOW, "fp-new") is None  # the user replaced the key
    assert book.tidy(NOW, {"a": "fp-new"}) is True
    assert book.block("a", NOW, "fp-old") is None  # ...and once tidied the failure is gone for good
    assert book.block("a", NOW) is None


def test_auth_failure_without_a_fingerprint_needs_a_success_to_clear() -> None:
    book = HealthBook()
    book.fail_auth("a", "403", fingerprint=None)
    assert book.block("a", NOW, "any") == Block("auth_failed", "403")
    book.ok("a", NOW + 1)
    assert book.block("a", NOW + 1, "any") is None
    assert book.of("a").last_ok_at == NOW + 1


def test_needs_login_comes_before_everything_and_clears_with_a_new_login() -> None:
    book = HealthBook()
    book.cool_down("c", NOW + 60, "429")
    book.fail_auth("c", "refresh token revoked", fingerprint="tok-1", needs_login=True)
    assert book.block("c", NOW, "tok-1") == Block("needs_login", "refresh token revoked")
    assert book.block("c", NOW, "tok-2") == Block("cooling_down", "429", NOW + 60)
    assert book.block("c", NOW + 60, "tok-2") is None


def test_ok_clears_auth_state_but_not_a_cooldown() -> None:
    book = HealthBook()
    book.fail_auth("a", "401", "fp")
    book.cool_down("a", NOW + 60, "429")
    book.ok("a", NOW)
    assert book.block("a", NOW, "fp") == Block("cooling_down", "429", NOW + 60)


def test_forget_drops_removed_accounts() -> None:
    book = HealthBook()
    book.cool_down("a", NOW + 60, "x")
    book.cool_down("b", NOW + 60, "y")
    book.forget({"b"})
    assert set(book.accounts) == {"b"}


def test_round_trip_through_json() -> None:
    book = HealthBook()
    book.cool_down("a", NOW + 60, "429", exhausted=True)
    book.fail_auth("b", "401", "fp")
    book.ok("c", NOW)
    again = HealthBook.from_json(json.loads(json.dumps(book.to_json())))
    assert again.accounts == book.accounts
    assert again.block("a", NOW) == Block("exhausted", "429", NOW + 60)
    assert again.block("b", NOW, "fp") == Block("auth_failed", "401")


def test_from_json_skips_what_it_does_not_understand() -> None:
    data = {"a": {"cooldown_until": NOW + 5}, "b": {"from_the_future": 1}, "c": None, "d": [1]}
    book = HealthBook.from_json(data)
    assert set(book.accounts) == {"a"}
    assert book.accounts["a"] == AccountHealth(cooldown_until=NOW + 5)
    assert HealthBook.from_json([1, 2]).accounts == {}
