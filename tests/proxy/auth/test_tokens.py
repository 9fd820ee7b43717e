"""proxy.auth.tokens: TokenManager against FakeOpenAIAuth and a keychain stand-in."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from proxy.auth.errors import (
    PermanentAuthError,
    TransientAuthError,
)
from proxy.auth.issuer import (
    OAuthConfig,
    refresh,
)
from proxy.auth.token_set import TokenSet
from proxy.auth.tokens import TokenManager
from tests.fakes.openai_auth import FakeOpenAIAuth
from tests.fakes.server import Behavior

ACCOUNT = "acct-fake-0001"


class Store:
    """The keychain stand-in: one JSON TokenSet per account id, with a log of saves."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.saves: list[tuple[str, str]] = []
        self.fail_saves = 0
        self.on_save: Callable[[str, str], None] | None = None

    def load(self, account_id: str) -> str | None:
        return self.data.get(account_id)

    def save(self, account_id: str, text: str) -> None:
        if self.on_save is not None:
            self.on_save(account_id, text)
        if self.fail_saves:
            self.fail_saves -= 1
            raise OSError("keychain is locked")
        self.data[account_id] = text
        self.saves.append((account_id, text))

    def tokens(self, account_id: str = ACCOUNT) -> TokenSet:
        return TokenSet.from_json(self.data[account_id])


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def manager(store: Store, client: httpx.AsyncClient, cfg: OAuthConfig, clock: Clock) -> TokenManager:
    return TokenManager(store.load, store.save, client, cfg, refresh_margin=300, clock=clock)


def seed(auth: FakeOpenAIAuth, store: Store, *, expires_in: float, account_id: str = ACCOUNT) -> TokenSet:
    """A live login in the store whose access token expires in `expires_in` seconds."""
    tokens = TokenSet.from_token_response(auth.issue_tokens(), now=time.time())
    tokens = dataclasses.replace(tokens, expires_at=time.time() + expires_in)
    store.data[account_id] = tokens.to_json()
    return tokens


# -- TokenManager ------------------------------------------------------------------------------------------


async def test_rotated_tokens_are_saved_before_the_access_token_is_returned(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    old = seed(auth, store, expires_in=60)
    returned = False
    seen_at_save: list[tuple[bool, str, str]] = []

    def check(account_id: str, text: str) -> None:
        saved = TokenSet.from_json(text)
        seen_at_save.append(
            (
                returned,
                auth.refresh_token_state(saved.refresh_token),
                auth.refresh_token_state(old.refresh_token),
            )
        )

    store.on_save = check
    access = await manager.access_token(ACCOUNT)
    returned = True
    assert seen_at_save == [(False, "active", "used")]
    saved = store.tokens()
    assert saved.access_token == access != old.access_token
    assert saved.refresh_token != old.refresh_token
    assert manager.status(ACCOUNT).state == "ok"


async def test_concurrent_callers_share_one_refresh(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    old = seed(auth, store, expires_in=60)
    auth.enqueue(Behavior(first_byte_delay=0.1))  # keep the refresh in flight while the others pile up
    results = await asyncio.gather(*(manager.access_token(ACCOUNT) for _ in range(20)))
    assert auth.refresh_calls == 1
    assert len(set(results)) == 1
    assert results[0] != old.access_token
    assert results[0] == store.tokens().access_token
    assert len(store.saves) == 1


async def test_fresh_token_needs_no_refresh_and_is_cached(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    tokens = seed(auth, store, expires_in=3000)
    assert await manager.access_token(ACCOUNT) == tokens.access_token
    del store.data[ACCOUNT]  # served from memory now
    assert await manager.access_token(ACCOUNT) == tokens.access_token
    assert (await manager.token_set(ACCOUNT)).account_id == ACCOUNT
    assert auth.refresh_calls == 0


async def test_store_is_re_read_before_refreshing(
    auth: FakeOpenAIAuth,
    store: Store,
    manager: TokenManager,
    clock: Clock,
    client: httpx.AsyncClient,
    cfg: OAuthConfig,
) -> None:
    old = seed(auth, store, expires_in=400)
    assert await manager.access_token(ACCOUNT) == old.access_token  # cached, not yet due
    rotated = await refresh(client, cfg, old.refresh_token, previous=old)  # another process refreshes
    store.data[ACCOUNT] = rotated.to_json()
    clock.offset = 200  # our cached copy is now inside the margin; the stored one is not
    assert await manager.access_token(ACCOUNT) == rotated.access_token
    assert auth.refresh_calls == 1  # only the other process's
    assert store.saves == []


@pytest.mark.parametrize(
    ("kind", "code"), [("invalid_grant", "invalid_grant"), ("token_expired", "refresh_token_expired")]
)
async def test_refused_refresh_marks_needs_login_and_keeps_the_store(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager, kind: Any, code: str
) -> None:
    seed(auth, store, expires_in=60)
    before = dict(store.data)
    auth.fail_next_refreshes(1, kind)
    with pytest.raises(PermanentAuthError, match=code):
        await manager.access_token(ACCOUNT)
    status = manager.status(ACCOUNT)
    assert status.state == "needs_login" and status.last_error is not None and code in status.last_error
    with pytest.raises(PermanentAuthError):
        await manager.access_token(ACCOUNT)
    assert auth.refresh_calls == 1  # no retry against a dead grant
    assert store.data == before and store.saves == []

    new_login = TokenSet.from_token_response(auth.issue_tokens(), now=time.time())
    store.data[ACCOUNT] = new_login.to_json()  # a new sign-in lands in the store: the manager picks it up
    assert await manager.access_token(ACCOUNT) == new_login.access_token
    assert manager.status(ACCOUNT).state == "ok"


async def test_reused_refresh_token_needs_login_until_the_rotated_one_lands(
    auth: FakeOpenAIAuth,
    store: Store,
    manager: TokenManager,
    client: httpx.AsyncClient,
    cfg: OAuthConfig,
) -> None:
    old = seed(auth, store, expires_in=60)
    rotated = await refresh(client, cfg, old.refresh_token, previous=old)  # another process, not yet saved
    with pytest.raises(PermanentAuthError, match="refresh_token_reused"):
        await manager.access_token(ACCOUNT)
    assert manager.status(ACCOUNT).state == "needs_login"
    assert store.tokens().refresh_token == old.refresh_token and store.saves == []

    store.data[ACCOUNT] = rotated.to_json()  # the other process's save lands: a different refresh token
    assert await manager.access_token(ACCOUNT) == rotated.access_token
    assert manager.status(ACCOUNT).state == "ok"
    assert auth.refresh_calls == 2


async def test_transient_failure_backs_off_serves_the_valid_token_then_recovers(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager, clock: Clock
) -> None:
    old = seed(auth, store, expires_in=120)
    auth.fail_next_refreshes(1, "server_error")
    assert await manager.access_token(ACCOUNT) == old.access_token
    status = manager.status(ACCOUNT)
    assert status.state == "refresh_failing"
    assert status.last_error is not None and "HTTP 500" in status.last_error
    assert status.retry_at is not None and 4 <= status.retry_at - clock() <= 5
    assert await manager.access_token(ACCOUNT) == old.access_token  # still backing off: no new request
    assert auth.refresh_calls == 1
    assert store.tokens() == old and store.saves == []

    clock.offset = 6
    new = await manager.access_token(ACCOUNT)
    assert new != old.access_token and new == store.tokens().access_token
    assert auth.refresh_calls == 2
    assert manager.status(ACCOUNT).state == "ok"


async def test_backoff_honours_retry_after(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager, clock: Clock
) -> None:
    old = seed(auth, store, expires_in=200)
    auth.fail_next_refreshes(1, "rate_limited", retry_after=60)
    assert await manager.access_token(ACCOUNT) == old.access_token
    clock.offset = 30
    assert await manager.access_token(ACCOUNT) == old.access_token
    assert auth.refresh_calls == 1
    clock.offset = 61
    assert await manager.access_token(ACCOUNT) != old.access_token
    assert auth.refresh_calls == 2


async def test_exponential_backoff_grows_and_is_capped(
    auth: FakeOpenAIAuth, store: Store, client: httpx.AsyncClient, cfg: OAuthConfig, clock: Clock
) -> None:
    manager = TokenManager(store.load, store.save, client, cfg, clock=clock, backoff_base=10, backoff_cap=25)
    seed(auth, store, expires_in=1000)
    auth.fail_next_refreshes(3, "server_error")
    delays = []
    for _ in range(3):
        await manager.refresh_due([ACCOUNT], margin=2000)
        retry_at = manager.status(ACCOUNT).retry_at
        assert retry_at is not None
        delays.append(round(retry_at - clock()))
        clock.offset += delays[-1] + 1
    assert delays == [10, 20, 25]
    assert auth.refresh_calls == 3


async def test_expired_token_with_a_transient_failure_raises_with_retry_after(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    seed(auth, store, expires_in=-10)
    before = dict(store.data)
    auth.fail_next_refreshes(1, "rate_limited", retry_after=30)
    with pytest.raises(TransientAuthError) as caught:
        await manager.access_token(ACCOUNT)
    assert caught.value.retry_after is not None and 29 <= caught.value.retry_after <= 30
    with pytest.raises(TransientAuthError):  # backing off: answered from memory
        await manager.access_token(ACCOUNT)
    assert auth.refresh_calls == 1
    assert store.data == before


async def test_failed_save_keeps_the_rotated_tokens_and_retries_the_save(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager, clock: Clock
) -> None:
    old = seed(auth, store, expires_in=100)
    store.fail_saves = 1
    assert await manager.access_token(ACCOUNT) == old.access_token  # not the unsaved new one
    status = manager.status(ACCOUNT)
    assert status.state == "refresh_failing"
    assert status.last_error is not None and "could not store" in status.last_error
    assert store.tokens() == old

    clock.offset = 10
    new = await manager.access_token(ACCOUNT)
    assert new != old.access_token
    assert auth.refresh_calls == 1  # the rotated set was kept, not refreshed again
    saved = store.tokens()
    assert saved.access_token == new and auth.refresh_token_state(saved.refresh_token) == "active"


async def test_a_cancelled_caller_does_not_abort_the_refresh(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    old = seed(auth, store, expires_in=60)
    auth.enqueue(Behavior(first_byte_delay=0.3))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(manager.access_token(ACCOUNT), 0.05)
    await manager.aclose(5.0)
    saved = store.tokens()
    assert saved.refresh_token != old.refresh_token
    assert auth.refresh_token_state(saved.refresh_token) == "active"
    assert await manager.access_token(ACCOUNT) == saved.access_token
    assert auth.refresh_calls == 1


async def test_missing_or_unreadable_store_needs_login(store: Store, manager: TokenManager) -> None:
    with pytest.raises(PermanentAuthError, match="no stored login"):
        await manager.access_token("acct-missing")
    store.data["acct-garbled"] = "{not json"
    with pytest.raises(PermanentAuthError, match="unreadable"):
        await manager.access_token("acct-garbled")
    assert manager.status("acct-garbled").state == "needs_login"
    assert store.data["acct-garbled"] == "{not json"
    assert manager.status("acct-never-seen").state == "ok"


async def test_refresh_due_refreshes_only_what_is_due(
    auth: FakeOpenAIAuth, store: Store, manager: TokenManager
) -> None:
    due = seed(auth, store, expires_in=100, account_id="acct-due")
    fresh = seed(auth, store, expires_in=3000, account_id="acct-fresh")
    results = await manager.refresh_due(["acct-due", "acct-fresh", "acct-gone"])
    assert {key: value.state for key, value in results.items()} == {
        "acct-due": "ok",
        "acct-fresh": "ok",
        "acct-gone": "needs_login",
    }
    assert auth.refresh_calls == 1
    assert store.tokens("acct-due").refresh_token != due.refresh_token
    assert store.tokens("acct-fresh") == fresh
