"""One request's life: pick an account, send, fall back or retry, stream back, record.

    candidates (router, then each feature's ``allows``) ─► for each account, in order:
        prepare (features) ─► send the buffered body (a feature's ``open``, else direct)
            ─► status in fallback_statuses?  cool down / mark auth, next account
            ─► 5xx / 529?                  retry the same account (bounded, backoff), then next
            ─► streaming 2xx: hold the pre-content events (message_start, response.created …) until the first
               content event; an in-stream rate-limit / overload error there still falls back or retries, since
               nothing reached the agent yet
            ─► commit: held bytes, then every upstream chunk as it arrives (gateway/stream.py)
    nothing usable ─► 429 (with retry-after = the earliest reset) or 503, naming each account's state
    after the last byte ─► every feature's ``on_complete`` (request log, dumps, metrics)

Every loop is bounded: each account is tried once, with at most ``max_retries`` retries. Once a byte reached the
agent there is no retry; a failure after that ends the stream with an error event in the agent's protocol.
httpx exceptions are translated into :mod:`proxy.gateway.errors` here and nowhere else. The forwarder never names
an account kind: what differs per provider is asked of the adapter, what Headway adds is asked of the features
(:mod:`proxy.features.base`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.responses import Response, StreamingResponse

from proxy.auth.credentials import Credentials
from proxy.config.settings import Account, Settings, UpstreamSettings
from proxy.features.base import Completed, Features
from proxy.gateway.aliases import resolve_alias
from proxy.gateway.attempt import (
    AGENT_GONE,
    RETRYABLE,
    Attempt,
    Failure,
    describe_blocks,
    short_error,
)
from proxy.gateway.errors import Protocol, error_response
from proxy.gateway.exchange import Exchange, error_answer
from proxy.providers.base import Incoming, ProviderAdapter
from proxy.routing.health import Block
from proxy.routing.router import Candidates, Skipped
from proxy.routing.state import RuntimeState
from proxy.wire.errors import AllAccountsExhausted, GatewayPaused, HeadwayError, NoAccounts, UpstreamTimeout
from proxy.wire.request_budget import AgentGone, Budget, DeadlinePassed
from proxy.wire.upstream_client import UpstreamClient
from proxy.wire.usage import UsageAccumulator

__all__ = ["Forwarder", "describe_blocks"]

log = logging.getLogger("headway.forward")


class Forwarder:
    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        upstreams: Callable[[], UpstreamSettings],
        state: RuntimeState,
        client: UpstreamClient,
        credentials: Credentials,
        adapters: Callable[[str], ProviderAdapter],
        features: Features,
        on_state_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._state = state
        self._credentials = credentials
        self._adapter = adapters
        self._features = features
        self._clock = clock
        self._sleep = sleep
        self._exchange = Exchange(
            settings=settings,
            upstreams=upstreams,
            state=state,
            client=client,
            features=features,
            finish=self._finish,
            on_state_change=on_state_change,
            clock=clock,
        )

    async def handle(self, incoming: Incoming) -> Response:
        attempt = Attempt(started=time.perf_counter())
        protocol: Protocol = "anthropic" if incoming.family == "anthropic" else "openai"
        settings = self._settings()
        budget = Budget(settings.gateway.request_deadline_seconds, incoming.receive)
        try:
            if settings.gateway.paused:
                raise GatewayPaused("the gateway is paused; resume it from the tray or the settings page")
            incoming = resolve_alias(incoming, settings.models.aliases)  # the real model, before routing
            for feature in self._features.admit:
                refusal = feature.admit(incoming)
                if refusal is not None:
                    raise refusal
            return await self._route(incoming, attempt, budget)
        except AgentGone:
            attempt.status = AGENT_GONE
            attempt.error = "the agent disconnected before its answer started"
            log.info(
                "agent hung up on %s before its answer started; stopped after %s",
                incoming.path,
                attempt.chain,
            )
            self._finish(incoming, attempt, None, None)
            return Response(status_code=AGENT_GONE)
        except HeadwayError as exc:
            attempt.status = exc.status
            attempt.error = exc.message
            self._finish(incoming, attempt, None, None)
            return error_response(protocol, exc)
        finally:
            await budget.close()

    async def send_shadow(self, incoming: Incoming, account: Account) -> bool:
        """Send a background request (keep-warm) on exactly this account; never falls back, never retries.

        Returns True when it completed. Skipped when the account is blocked for any reason.
        """
        settings = self._settings()
        now = self._clock()
        attempt = Attempt(started=time.perf_counter())
        fingerprints = await self._credentials.fingerprints_of([account])
        attempt.fingerprints = fingerprints
        if settings.gateway.paused or self._state.health.block(account.id, now, fingerprints.get(account.id)):
            return False
        if self._state.quota.below_killswitch(account.id, account.killswitch, now):
            return False
        if self._feature_block(incoming, account, now) is not None:
            return False
        credential = await self._credentials.credential(account)
        if not credential:
            return False
        budget = Budget(settings.gateway.request_deadline_seconds)
        try:
            outcome = await self._exchange.run(
                incoming, account, credential, self._adapter(account.kind), settings, attempt, budget
            )
        except (AgentGone, DeadlinePassed):
            outcome = ("next", None, None)
        if not isinstance(outcome, Response):
            failure = outcome[1]  # the log row says which account answered what, not status 0 and no account
            attempt.account = attempt.account or account
            if isinstance(failure, tuple):
                attempt.status, attempt.error = failure[0], short_error(failure[2])
            elif isinstance(failure, HeadwayError):
                attempt.status, attempt.error = failure.status, failure.message
            self._finish(incoming, attempt, None, None)
            return False
        if isinstance(outcome, StreamingResponse):
            async for _ in outcome.body_iterator:  # drain: the usage arrives at the end, and is logged
                pass
        return 200 <= outcome.status_code < 300

    async def _candidates(
        self, incoming: Incoming, settings: Settings, session_id: str | None, attempt: Attempt
    ) -> Candidates:
        family = [a for a in settings.accounts if a.family == incoming.family and a.enabled]
        fingerprints = await self._credentials.fingerprints_of(family)
        attempt.fingerprints = fingerprints
        now = self._clock()
        candidates = self._state.router.candidates(
            settings,
            incoming.family,
            session_id=session_id,
            now=now,
            health=self._state.health,
            quota=self._state.quota,
            fingerprints=fingerprints,
            model=incoming.model,
            requested_model=incoming.requested_model,
        )
        if not self._features.allows:
            return candidates
        usable, skipped = [], list(candidates.skipped)
        for account in candidates.usable:
            block = self._feature_block(incoming, account, now)
            if block is None:
                usable.append(account)
            else:
                skipped.append(Skipped(account, block))
        return Candidates(usable, skipped)

    def _feature_block(self, incoming: Incoming, account: Account, now: float) -> Block | None:
        """The first feature's reason to keep this request off this account (a budget spent), or None."""
        for feature in self._features.allows:
            block = feature.allows(incoming, account, now)
            if block is not None:
                return block
        return None

    async def _route(self, incoming: Incoming, attempt: Attempt, budget: Budget) -> Response:
        settings = self._settings()
        candidates = await self._candidates(incoming, settings, incoming.session.session_id, attempt)
        skipped = list(candidates.skipped)
        last: Failure = None

        try:
            for account in candidates.usable:
                budget.check()
                credential = await self._credentials.credential(account)
                if not credential:
                    block = self._state.health.block(account.id, self._clock(), None)
                    skipped.append(
                        Skipped(account, block or Block("no_secret", "no credential in the keychain"))
                    )
                    attempt.chain.append(f"{account.id}:no-credential")
                    continue
                adapter = self._adapter(account.kind)
                request = incoming
                for feature in self._features.prepare:
                    request = feature.prepare(request, account)
                for retry in range(settings.routing.max_retries + 1):
                    outcome = await self._exchange.run(
                        request, account, credential, adapter, settings, attempt, budget
                    )
                    if isinstance(outcome, Response):
                        return outcome
                    action, last, wait = outcome
                    if action == "retry" and retry < settings.routing.max_retries:
                        delay = (
                            settings.routing.retry_base_delay_seconds * (2**retry) if wait is None else wait
                        )
                        if delay <= settings.routing.max_retry_wait_seconds and delay < budget.remaining():
                            await budget.step(self._sleep(delay))
                            continue
                    break
        except DeadlinePassed:
            attempt.chain.append("deadline")
            log.warning(
                "%s: no answer within the request deadline (%gs); tried %s",
                incoming.path,
                budget.seconds,
                attempt.chain,
            )
            raise UpstreamTimeout(
                f"no upstream answered within the request deadline of {budget.seconds:g}s "
                "(gateway.request_deadline_seconds)"
            ) from None

        now = self._clock()
        refreshed = await self._candidates(incoming, settings, None, attempt)
        seen = {b.account.id for b in refreshed.skipped}
        blocked = refreshed.skipped + [s for s in skipped if s.account.id not in seen]
        family_name = "Anthropic" if incoming.family == "anthropic" else "OpenAI/ChatGPT"
        if not any(a.family == incoming.family for a in settings.accounts):
            hint = "anthropic" if incoming.family == "anthropic" else "openai` or `headway login chatgpt"
            raise NoAccounts(
                f"no {family_name} account is configured; add one with `headway accounts add {hint}`"
            )
        # A 5xx after its retries, or a refusal whose block has already ended (a 429 with `retry-after: 0`): the
        # upstream's own answer says more than an empty list of blocked accounts would.
        if isinstance(last, tuple) and (last[0] in RETRYABLE or not blocked):
            status, headers, body = last
            attempt.status = status
            attempt.error = short_error(body)
            self._finish(incoming, attempt, None, None)
            return error_answer(incoming, status, headers, body)
        if isinstance(last, HeadwayError):
            raise last
        resets = [s.block.until for s in blocked if s.block.until and s.block.until > now]
        if resets:
            raise AllAccountsExhausted(
                f"every {family_name} account is rate-limited, out of quota or blocked: {describe_blocks(blocked, now)}",
                retry_after=min(resets) - now,
            )
        raise NoAccounts(f"no {family_name} account can take requests now: {describe_blocks(blocked, now)}")

    def _finish(
        self,
        incoming: Incoming,
        attempt: Attempt,
        usage: UsageAccumulator | None,
        adapter: ProviderAdapter | None,
    ) -> None:
        """The request is over: hand its record to the features, after the response's last byte is out."""
        if not self._features.on_complete:
            return
        done = Completed(
            request=incoming,
            account=attempt.account,
            status=attempt.status,
            usage=usage.usage if usage is not None else None,
            model=(usage.model if usage is not None else None) or incoming.model,
            finished_at=self._clock(),
            latency_ms=(time.perf_counter() - attempt.started) * 1000,
            ttfb_ms=None if attempt.ttfb is None else attempt.ttfb * 1000,
            chain=tuple(attempt.chain),
            error=attempt.error,
            upstream_body=attempt.upstream_body,
            upstream_request_id=attempt.upstream_request_id,
            billing=adapter.billing if adapter is not None else None,
            transcript=b"".join(attempt.transcript) if attempt.transcript is not None else None,
        )
        try:
            asyncio.get_running_loop().call_soon(self._complete, done)
        except RuntimeError:
            self._complete(done)

    def _complete(self, done: Completed) -> None:
        for feature in self._features.on_complete:
            try:
                feature.on_complete(done)
            except Exception:
                log.exception("feature %s failed on a finished request", feature.name)
