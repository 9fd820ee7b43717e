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
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol as TypingProtocol

import httpx
from starlette.responses import Response, StreamingResponse

from proxy.config.settings import Account, Settings, UpstreamSettings
from proxy.durations import format_duration
from proxy.features.base import Completed, Features, TransportFailed
from proxy.gateway.attempt import (
    AGENT_GONE,
    RETRYABLE,
    Attempt,
    Failure,
    Outcome,
    describe_blocks,
    redact_body,
    reset_of_exhausted,
    short_error,
)
from proxy.gateway.errors import (
    AllAccountsExhausted,
    BadRequest,
    GatewayPaused,
    HeadwayError,
    NoAccounts,
    Protocol,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_body,
    error_response,
)
from proxy.gateway.stream import TooLarge, close_quietly, collect, hold, pump, read_all
from proxy.logs import redact
from proxy.providers.base import Incoming, Outgoing, ProviderAdapter
from proxy.routing.health import Block
from proxy.routing.quota import Window
from proxy.routing.router import Candidates, Skipped
from proxy.routing.state import RuntimeState
from proxy.wire.request_budget import AgentGone, Budget, DeadlinePassed, StepTimeout
from proxy.wire.response_body import read_capped
from proxy.wire.retry_after import retry_after_seconds
from proxy.wire.sse import SSEParser
from proxy.wire.usage import UsageAccumulator

__all__ = ["Credentials", "Forwarder", "describe_blocks"]

log = logging.getLogger("headway.forward")

_DROP_RESPONSE = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "set-cookie",
        "server",
        "date",
    }
)
_ERROR_BODY_LIMIT = 64 * 1024  # of an upstream's error answer


class Credentials(TypingProtocol):
    """Where the forwarder gets each account's secret (:class:`proxy.auth.credentials.Credentials`)."""

    async def credential(self, account: Account) -> str | None: ...

    async def fingerprints_of(self, accounts: list[Account]) -> dict[str, str]: ...


class Forwarder:
    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        upstreams: Callable[[], UpstreamSettings],
        state: RuntimeState,
        client: httpx.AsyncClient,
        credentials: Credentials,
        adapters: Callable[[str], ProviderAdapter],
        features: Features,
        on_state_change: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._upstreams = upstreams
        self._state = state
        self._client = client
        self._credentials = credentials
        self._adapter = adapters
        self._features = features
        self._changed = on_state_change
        self._clock = clock
        self._sleep = sleep

    async def handle(self, incoming: Incoming) -> Response:
        attempt = Attempt(started=time.perf_counter())
        protocol: Protocol = "anthropic" if incoming.family == "anthropic" else "openai"
        settings = self._settings()
        budget = Budget(settings.gateway.request_deadline_seconds, incoming.receive)
        try:
            if settings.gateway.paused:
                raise GatewayPaused("the gateway is paused; resume it from the tray or the settings page")
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
        if any(f.allows(incoming, account, now) for f in self._features.allows):
            return False
        credential = await self._credentials.credential(account)
        if not credential:
            return False
        budget = Budget(settings.gateway.request_deadline_seconds)
        try:
            outcome = await self._try(
                incoming, account, credential, self._adapter(account.kind), settings, attempt, budget
            )
        except (AgentGone, DeadlinePassed):
            outcome = ("next", None, None)
        if not isinstance(outcome, Response):
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
        )
        if not self._features.allows:
            return candidates
        usable, skipped = [], list(candidates.skipped)
        for account in candidates.usable:
            block = next(
                (b for f in self._features.allows if (b := f.allows(incoming, account, now)) is not None),
                None,
            )
            if block is None:
                usable.append(account)
            else:
                skipped.append(Skipped(account, block))
        return Candidates(usable, skipped)

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
                    outcome = await self._try(
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
            return self._error_answer(incoming, status, headers, body)
        if isinstance(last, HeadwayError):
            raise last
        resets = [s.block.until for s in blocked if s.block.until and s.block.until > now]
        if resets:
            raise AllAccountsExhausted(
                f"every {family_name} account is rate-limited, out of quota or blocked: {describe_blocks(blocked, now)}",
                retry_after=min(resets) - now,
            )
        raise NoAccounts(f"no {family_name} account can take requests now: {describe_blocks(blocked, now)}")

    def _error_answer(self, incoming: Incoming, status: int, headers: httpx.Headers, body: bytes) -> Response:
        """An upstream error relayed to the agent: its own error object (redacted), or one in the agent's shape."""
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        out = self._response_headers(headers, None)
        out["content-type"] = "application/json"
        if isinstance(data, dict) and "error" in data:
            return Response(redact_body(body), status_code=status, headers=out)
        protocol: Protocol = "anthropic" if incoming.family == "anthropic" else "openai"
        message = f"Headway: the upstream answered {status}" + (
            f": {short_error(body)}" if body.strip() else ""
        )
        return Response(
            json.dumps(error_body(protocol, status, message, "upstream_error")),
            status_code=status,
            headers=out,
        )

    async def _open(
        self, out: Outgoing, incoming: Incoming, account: Account, attempt: Attempt
    ) -> httpx.Response | TransportFailed:
        """Send the request: through the first feature that takes it, else directly."""
        for feature in self._features.open:
            try:
                upstream = await feature.open(out, incoming, account)
            except TransportFailed as exc:
                attempt.chain.append(f"{account.id}:{feature.name}-failed")
                if not exc.fallback:
                    log.warning("account %s: %s", account.id, exc)
                    return exc
                continue
            if upstream is not None:
                return upstream
        return await self._client.send(
            self._client.build_request(out.method, out.url, headers=out.headers, content=out.content),
            stream=True,
        )

    def _give_up(
        self, attempt: Attempt, account: Account, tag: str, note: str | None, failure: HeadwayError
    ) -> Outcome:
        """This account did not answer usably: note why (the chain, its health's last error); try the next."""
        attempt.chain.append(f"{account.id}:{tag}")
        if note is not None:
            self._state.health.of(account.id).last_error = note
        return "next", failure, None

    async def _try(
        self,
        incoming: Incoming,
        account: Account,
        credential: str,
        adapter: ProviderAdapter,
        settings: Settings,
        attempt: Attempt,
        budget: Budget,
    ) -> Response | Outcome:
        """One upstream attempt: a committed Response, or (action, failure, retry wait) for the caller's loop.

        Raises AgentGone / DeadlinePassed (from the budget), having closed the upstream connection.
        """
        try:
            out = adapter.build(incoming, account, credential, self._upstreams(), settings)
        except ValueError as exc:
            raise BadRequest(f"cannot send this request to {account.label}: {exc}") from exc
        attempt.upstream_body = out.content
        first_byte = settings.gateway.first_byte_timeout_seconds if adapter.streams(incoming) else None
        try:
            upstream = await budget.step(self._open(out, incoming, account, attempt), first_byte)
        except StepTimeout:
            log.warning("account %s: no response headers within %gs", account.id, first_byte)
            return self._give_up(
                attempt,
                account,
                "no-headers",
                f"no response headers within {first_byte:g}s",
                UpstreamTimeout(
                    f"the upstream sent no answer within {first_byte:g}s on account {account.label} "
                    "(gateway.first_byte_timeout_seconds)"
                ),
            )
        except httpx.TimeoutException as exc:
            log.warning("account %s: upstream timed out (%s)", account.id, type(exc).__name__)
            return self._give_up(
                attempt,
                account,
                "timeout",
                None,
                UpstreamTimeout(f"the upstream did not answer in time on account {account.label}"),
            )
        except httpx.HTTPError as exc:
            text = redact(str(exc) or type(exc).__name__)
            log.warning("account %s: upstream unreachable: %s", account.id, text)
            return self._give_up(
                attempt,
                account,
                "unreachable",
                None,
                UpstreamUnavailable(f"cannot reach the upstream for account {account.label}: {text}"),
            )
        if isinstance(upstream, TransportFailed):
            return "next", UpstreamUnavailable(str(upstream)), None
        try:
            return await self._answer(upstream, incoming, account, adapter, settings, attempt, budget)
        except BaseException:
            await close_quietly(upstream)
            raise

    async def _answer(
        self,
        upstream: httpx.Response,
        incoming: Incoming,
        account: Account,
        adapter: ProviderAdapter,
        settings: Settings,
        attempt: Attempt,
        budget: Budget,
    ) -> Response | Outcome:
        """What to do with the upstream's response, once its headers are in."""
        state = self._state
        now = self._clock()
        windows = adapter.quota_windows(upstream.headers, now)
        if state.quota.update(account.id, windows, now, adapter.plan_type(upstream.headers)):
            state.dirty = True
            self._changed()
        status = upstream.status_code
        fallback_statuses = settings.routing.fallback_statuses

        if status in fallback_statuses or status in RETRYABLE:
            body = await budget.step(read_capped(upstream, _ERROR_BODY_LIMIT))
            attempt.chain.append(f"{account.id}:{status}")
            reason = f"{status} {short_error(body)}"
            if status in RETRYABLE and status not in fallback_statuses:
                log.info("account %s: transient %s, may retry", account.id, status)
                state.health.of(account.id).last_error = reason
                return "retry", (status, upstream.headers, body), retry_after_seconds(upstream.headers, now)
            self._fall_back(account, adapter, status, reason, upstream.headers, body, windows, attempt, now)
            return "next", (status, upstream.headers, body), None

        ok = 200 <= status < 300
        usage = UsageAccumulator(adapter.upstream_protocol(incoming))
        is_sse = ok and "text/event-stream" in upstream.headers.get("content-type", "")
        if not is_sse:
            return await self._whole(upstream, incoming, account, adapter, attempt, budget, usage)

        parser = SSEParser()
        transformer = adapter.transformer(incoming)
        chunks = upstream.aiter_bytes().__aiter__()
        try:
            verdict, held, held_events = await budget.step(hold(chunks, adapter, incoming, parser, usage))
        except httpx.TimeoutException:
            await close_quietly(upstream)
            return self._give_up(
                attempt,
                account,
                "stalled",
                "the stream went silent before any content",
                UpstreamTimeout(
                    f"the upstream's stream went silent before any content on account {account.label}"
                ),
            )
        if verdict is not None and verdict.kind == "error" and verdict.action != "pass":
            await close_quietly(upstream)
            reason = redact(verdict.reason)
            attempt.chain.append(f"{account.id}:stream-{verdict.action}")
            if verdict.action == "fallback":
                self._fall_back(account, adapter, 429, reason, upstream.headers, b"", windows, attempt, now)
                return "next", (429, upstream.headers, b"".join(held)), None
            state.health.of(account.id).last_error = reason
            return "retry", UpstreamUnavailable(f"account {account.label}: {reason}"), None
        if verdict is None:
            await close_quietly(upstream)
            return self._give_up(
                attempt,
                account,
                "dropped",
                "the stream ended before any content",
                UpstreamUnavailable(
                    f"the upstream's stream broke or ended before any content on account {account.label}"
                ),
            )

        transcript = list(held) if self._features.wants_transcript() else None
        if transformer is not None and transformer.aggregate:
            try:
                await budget.step(collect(chunks, held_events, parser, usage, transformer, transcript))
            except httpx.HTTPError as exc:
                stalled = isinstance(exc, httpx.TimeoutException)
                reason = "the stream stalled" if stalled else "the stream broke"
                log.warning(
                    "account %s: %s before the answer was complete (%s)",
                    account.id,
                    reason,
                    type(exc).__name__,
                )
                failure = UpstreamTimeout if stalled else UpstreamUnavailable
                return self._give_up(
                    attempt,
                    account,
                    "broken-stream",
                    reason,
                    failure(f"{reason} before the answer was complete on account {account.label}"),
                )
            finally:
                await close_quietly(upstream)
            # Nothing reached the agent until the stream was complete: a break above moved on like a failure
            # before content.
            self._commit(upstream, incoming, account, attempt, status)
            attempt.transcript = transcript
            status, body = transformer.result()
            attempt.status = status
            attempt.ttfb = time.perf_counter() - attempt.started
            if status >= 400:
                attempt.error = short_error(body)
            self._finish(incoming, attempt, usage, adapter)
            headers = self._response_headers(upstream.headers, account)
            headers["content-type"] = transformer.content_type
            return Response(body, status_code=status, headers=headers)

        self._commit(upstream, incoming, account, attempt, status)
        attempt.transcript = transcript
        headers = self._response_headers(upstream.headers, account)
        if transformer is not None:
            headers["content-type"] = transformer.content_type
        body_iter = pump(
            chunks,
            held,
            held_events,
            parser,
            usage,
            transformer,
            attempt,
            incoming,
            close=lambda: close_quietly(upstream),
            finish=lambda: self._finish(incoming, attempt, usage, adapter),
        )
        return StreamingResponse(body_iter, status_code=status, headers=headers)

    def _commit(
        self, upstream: httpx.Response, incoming: Incoming, account: Account, attempt: Attempt, status: int
    ) -> None:
        """This account's answer goes to the agent: record it, and mark the account healthy on success."""
        state = self._state
        now = self._clock()
        attempt.chain.append(f"{account.id}:{status}")
        attempt.account = account
        attempt.status = status
        attempt.upstream_request_id = upstream.headers.get("request-id") or upstream.headers.get(
            "x-request-id"
        )
        if 200 <= status < 300:
            state.health.ok(account.id, now)
            state.router.pin(incoming.session.session_id, account.id, now)
            state.dirty = True
            self._changed()
            for feature in self._features.on_success:
                try:
                    feature.on_success(incoming, account)
                except Exception:
                    log.exception("feature %s failed on a successful request", feature.name)

    async def _whole(
        self,
        upstream: httpx.Response,
        incoming: Incoming,
        account: Account,
        adapter: ProviderAdapter,
        attempt: Attempt,
        budget: Budget,
        usage: UsageAccumulator,
    ) -> Response | Outcome:
        """A response that is not an event stream: read it whole, check it, answer once."""
        status = upstream.status_code
        try:
            body = await budget.step(read_all(upstream))
        except httpx.TimeoutException:
            return self._give_up(
                attempt,
                account,
                "timeout",
                "the answer stalled",
                UpstreamTimeout(f"the upstream's answer stalled on account {account.label}"),
            )
        except (httpx.HTTPError, TooLarge) as exc:
            reason = (
                "the answer was too large"
                if isinstance(exc, TooLarge)
                else "the connection broke during the answer"
            )
            return self._give_up(
                attempt,
                account,
                "broken-body",
                reason,
                UpstreamUnavailable(f"{reason} on account {account.label}"),
            )
        data: object = None
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                data = None
        if 200 <= status < 300 and not isinstance(data, dict | list):
            log.warning("account %s: a %s answer that is not JSON (%d bytes)", account.id, status, len(body))
            return self._give_up(
                attempt,
                account,
                "invalid-json",
                f"a {status} answer that is not JSON",
                UpstreamUnavailable(f"the upstream's answer on account {account.label} was not valid JSON"),
            )
        self._commit(upstream, incoming, account, attempt, status)
        attempt.ttfb = time.perf_counter() - attempt.started
        if isinstance(data, dict):
            usage.feed_body(data)
        if status >= 400:
            attempt.error = short_error(body)
            answer = self._error_answer(incoming, status, upstream.headers, body)
            answer.headers["x-headway-account"] = account.id
        else:
            answer = Response(
                body, status_code=status, headers=self._response_headers(upstream.headers, account)
            )
        self._finish(incoming, attempt, usage, adapter)
        return answer

    def _fall_back(
        self,
        account: Account,
        adapter: ProviderAdapter,
        status: int,
        reason: str,
        headers: httpx.Headers,
        body: bytes,
        windows: list[Window],
        attempt: Attempt,
        now: float,
    ) -> None:
        """The account refused (a fallback status, or an in-stream limit): block it for as long as it says."""
        health = self._state.health
        settings = self._settings()
        exhausted = adapter.classify_error(status, body, now)
        if status == 401:
            health.fail_auth(
                account.id, reason, attempt.fingerprints.get(account.id), needs_login=adapter.oauth
            )
            log.warning(
                "account %s: authentication failed upstream (%s); skipping it until it is fixed",
                account.id,
                reason,
            )
        elif exhausted is not None:
            resets = exhausted.resets_at or now + settings.routing.default_cooldown_seconds
            health.cool_down(account.id, resets, exhausted.reason, exhausted=True)
            log.warning(
                "account %s: %s; exhausted for %s, falling back",
                account.id,
                exhausted.reason,
                format_duration(resets - now),
            )
        else:
            wait = retry_after_seconds(headers, now)
            until = now + wait if wait is not None else reset_of_exhausted(windows, now)
            if until is None:
                until = now + settings.routing.default_cooldown_seconds
            health.cool_down(account.id, until, reason)
            log.warning(
                "account %s: %s; cooling down for %s, falling back",
                account.id,
                reason,
                format_duration(until - now),
            )
        self._state.dirty = True
        self._changed()

    def _response_headers(self, headers: httpx.Headers, account: Account | None) -> dict[str, str]:
        out = {k: v for k, v in headers.items() if k.lower() not in _DROP_RESPONSE}
        if account is not None:
            out["x-headway-account"] = account.id
        return out

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
