"""Keeping ChatGPT access tokens valid: `TokenManager` refreshes ahead of expiry, one refresh per account at a time,
and records each account's sign-in health (`AuthStatus`)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import httpx

from proxy.auth.errors import OAuthError, PermanentAuthError, TransientAuthError
from proxy.auth.issuer import OAuthConfig, refresh
from proxy.auth.token_set import TokenSet
from proxy.tasks import TaskGroup

__all__ = ["AuthState", "AuthStatus", "TokenManager"]

log = logging.getLogger("headway.oauth")

AuthState = Literal["ok", "needs_login", "refresh_failing"]


@dataclass(frozen=True, slots=True)
class AuthStatus:
    """One account's sign-in health. `retry_at` (epoch s) is when a failing refresh is tried next."""

    state: AuthState = "ok"
    last_error: str | None = None
    retry_at: float | None = None


@dataclass(slots=True, eq=False)
class _Account:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    state: AuthState = "ok"
    last_error: str | None = None
    failures: int = 0
    retry_at: float | None = None
    rejected: str | None = None  # sha256 of the refresh token the issuer refused
    cached: TokenSet | None = None
    unsaved: TokenSet | None = None  # rotated by us, not yet in the store (whose refresh token is now dead)
    inflight: asyncio.Task[TokenSet | OAuthError] | None = None


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenManager:
    """Valid access tokens for many ChatGPT accounts, refreshed ahead of expiry, one refresh per account at a time.

    `load(account_id)` and `save(account_id, token_set_json)` read and write the stored TokenSet (the keychain);
    they are synchronous, may block, and run in a worker thread. The manager never deletes a stored login and only
    ever saves a token set the issuer has just returned, before handing out its access token.

    A refresh runs in its own named task that callers await through `asyncio.shield`: a caller that gives up
    (a cancelled request) does not abort it, because the issuer may already have rotated the refresh token and
    the answer must still reach the store. Use one manager from one event loop.
    """

    def __init__(
        self,
        load: Callable[[str], str | None],
        save: Callable[[str, str], None],
        client: httpx.AsyncClient,
        cfg: OAuthConfig,
        *,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
        backoff_base: float = 5.0,
        backoff_cap: float = 600.0,
    ) -> None:
        self._load = load
        self._save = save
        self._client = client
        self._cfg = cfg
        self._margin = refresh_margin
        self._clock = clock
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._accounts: dict[str, _Account] = {}
        self._tasks = TaskGroup()

    async def access_token(self, account_id: str) -> str:
        """A valid access token; raises PermanentAuthError (needs login) or TransientAuthError (try later)."""
        return (await self.token_set(account_id)).access_token

    async def token_set(self, account_id: str) -> TokenSet:
        """Like `access_token`, with the account id and plan that go with it."""
        return await self._valid(account_id, self._margin)

    def status(self, account_id: str) -> AuthStatus:
        account = self._accounts.get(account_id)
        if account is None:
            return AuthStatus()
        return AuthStatus(account.state, account.last_error, account.retry_at)

    async def refresh_due(
        self, account_ids: Iterable[str], *, margin: float | None = None
    ) -> dict[str, AuthStatus]:
        """Refresh, one after another, the accounts whose token expires within `margin` (default: the refresh
        margin). For a background loop: failures are recorded in `status()` and returned, not raised."""
        results: dict[str, AuthStatus] = {}
        for account_id in account_ids:
            try:
                await self._valid(account_id, self._margin if margin is None else margin)
            except OAuthError as exc:
                log.debug("account %s: background refresh: %s", account_id, exc)
            results[account_id] = self.status(account_id)
        return results

    def forget(self, account_id: str) -> None:
        """Drop what is held in memory for an account (it was removed). The store is the caller's business."""
        self._accounts.pop(account_id, None)

    async def aclose(self, grace: float = 10.0) -> None:
        """Let in-flight refreshes finish (bounded by `grace`, then cancelled) so a rotated token is not lost."""
        inflight = [account.inflight for account in self._accounts.values() if account.inflight is not None]
        if inflight:
            await asyncio.wait(inflight, timeout=grace)
        await self._tasks.close(1.0)

    # -- internals ----------------------------------------------------------------------------------------------

    def _account(self, account_id: str) -> _Account:
        account = self._accounts.get(account_id)
        if account is None:
            account = self._accounts[account_id] = _Account()
        return account

    async def _valid(self, account_id: str, margin: float) -> TokenSet:
        account = self._account(account_id)
        ready = self._ready(account, margin)
        if ready is not None:
            return ready
        async with account.lock:
            ready = self._ready(account, margin)
            if ready is not None:
                return ready
            task = account.inflight
            if task is None:
                task = self._tasks.spawn(
                    self._cycle(account_id, account, margin), name=f"headway-token-refresh:{account_id}"
                )
                account.inflight = task
                task.add_done_callback(lambda done: self._settled(account, done))
            result = await asyncio.shield(task)
        if isinstance(result, OAuthError):
            raise result
        return result

    @staticmethod
    def _settled(account: _Account, task: asyncio.Task[TokenSet | OAuthError]) -> None:
        if account.inflight is task:
            account.inflight = None

    def _ready(self, account: _Account, margin: float) -> TokenSet | None:
        """The cached token when neither a store read nor a refresh is needed; raises while backing off with no
        valid token to offer."""
        if account.state == "needs_login":
            return None  # the store may hold a new login: the cycle re-reads it
        now = self._clock()
        cached = account.cached
        if cached is not None and not cached.expires_within(margin, now):
            return cached
        if account.retry_at is not None and now < account.retry_at:
            if cached is not None and cached.expires_at > now:
                return cached
            raise TransientAuthError(
                account.last_error or "token refresh is backing off", retry_after=account.retry_at - now
            )
        return None

    async def _cycle(self, account_id: str, account: _Account, margin: float) -> TokenSet | OAuthError:
        # Returned, not raised: every waiter re-raises it, and the task group does not log it as a crash.
        try:
            return await self._refresh_if_due(account_id, account, margin)
        except OAuthError as exc:
            return exc

    async def _refresh_if_due(self, account_id: str, account: _Account, margin: float) -> TokenSet:
        try:
            stored = await self._read(account_id)
        except TransientAuthError as exc:
            if account.cached is None or account.state == "needs_login":
                self._failed(account_id, account, exc)
                raise
            return self._fall_back(account_id, account, account.cached, exc)
        except PermanentAuthError as exc:
            raise self._needs_login(account_id, account, None, str(exc)) from exc

        if account.state == "needs_login":
            if stored is None or _fingerprint(stored.refresh_token) == account.rejected:
                raise PermanentAuthError(account.last_error or "this account needs a new login")
            log.info("account %s: a new login was stored; using it", account_id)
            self._recovered(account)

        if account.unsaved is not None:
            unsaved = account.unsaved
            try:
                await self._write(account_id, unsaved)
            except TransientAuthError as exc:
                if stored is None:
                    self._failed(account_id, account, exc)
                    raise
                return self._fall_back(account_id, account, stored, exc)
            account.unsaved = None
            stored = unsaved

        if stored is None:
            raise self._needs_login(account_id, account, None, "no stored login for this account")

        now = self._clock()
        if not stored.expires_within(margin, now):
            account.cached = stored  # fresh already: someone (another process) refreshed it
            self._recovered(account)
            return stored

        try:
            fresh = await refresh(self._client, self._cfg, stored.refresh_token, previous=stored, now=now)
        except PermanentAuthError as exc:
            raise self._needs_login(account_id, account, stored.refresh_token, str(exc)) from exc
        except OAuthError as exc:
            return self._fall_back(account_id, account, stored, exc)

        account.unsaved = fresh
        try:
            await self._write(account_id, fresh)
        except TransientAuthError as exc:
            return self._fall_back(account_id, account, stored, exc)
        account.unsaved = None
        account.cached = fresh
        self._recovered(account)
        return fresh

    async def _read(self, account_id: str) -> TokenSet | None:
        try:
            text = await asyncio.to_thread(self._load, account_id)
        except Exception as exc:
            raise TransientAuthError(f"could not read the stored login ({type(exc).__name__})") from exc
        if text is None:
            return None
        try:
            return TokenSet.from_json(text)
        except OAuthError as exc:
            raise PermanentAuthError(f"the stored login is unreadable ({exc})") from exc

    async def _write(self, account_id: str, tokens: TokenSet) -> None:
        try:
            await asyncio.to_thread(self._save, account_id, tokens.to_json())
        except Exception as exc:
            raise TransientAuthError(f"could not store the refreshed login ({type(exc).__name__})") from exc

    def _fall_back(self, account_id: str, account: _Account, current: TokenSet, exc: OAuthError) -> TokenSet:
        """After a transient failure: back off, and keep serving the current access token while it is valid."""
        self._failed(account_id, account, exc)
        account.cached = current
        now = self._clock()
        if current.expires_at > now:
            return current
        retry_at = account.retry_at if account.retry_at is not None else now
        raise TransientAuthError(str(exc), retry_after=max(0.0, retry_at - now)) from exc

    def _failed(self, account_id: str, account: _Account, exc: OAuthError) -> None:
        if account.state == "needs_login":
            return
        account.failures += 1
        retry_after = exc.retry_after if isinstance(exc, TransientAuthError) else None
        if retry_after is None:
            retry_after = self._backoff_base * 2.0 ** min(account.failures - 1, 30)
        delay = min(retry_after, self._backoff_cap)
        account.state = "refresh_failing"
        account.last_error = str(exc)
        account.retry_at = self._clock() + delay
        log.warning("account %s: token refresh failed (%s); next try in %.0f s", account_id, exc, delay)

    def _needs_login(
        self, account_id: str, account: _Account, refresh_token: str | None, message: str
    ) -> PermanentAuthError:
        account.state = "needs_login"
        account.last_error = message
        account.failures = 0
        account.retry_at = None
        account.rejected = _fingerprint(refresh_token) if refresh_token else None
        account.cached = None
        log.warning("account %s needs a new login: %s", account_id, message)
        return PermanentAuthError(message)

    @staticmethod
    def _recovered(account: _Account) -> None:
        account.state = "ok"
        account.last_error = None
        account.failures = 0
        account.retry_at = None
        account.rejected = None
