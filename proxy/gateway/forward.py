"""One request's life: pick an account, send, fall back or retry, stream back, record.

    candidates (router) ─► for each account, in order:
        send the buffered body ─► status in fallback_statuses?  cool down / mark auth, next account
                               ─► 5xx / 529?                  retry the same account (bounded, backoff), then next
                               ─► streaming 2xx: hold the pre-content events (message_start, response.created …)
                                  until the first content event; an in-stream rate-limit / overload error there
                                  still falls back or retries, since nothing reached the agent yet
                               ─► commit: held bytes, then every upstream chunk as it arrives
    nothing usable ─► 429 (with retry-after = the earliest reset) or 503, naming each account's state

Every loop is bounded: each account is tried once, with at most ``max_retries`` retries. Once a byte reached the
agent there is no retry; a failure after that ends the stream with an error event in the agent's protocol.
httpx exceptions are translated into :mod:`proxy.gateway.errors` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from starlette.responses import Response, StreamingResponse

from proxy.config.settings import Account, Settings, UpstreamSettings
from proxy.features.pricing import estimate_cost
from proxy.features.request_log import RequestLog, RequestRecord
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
    stream_error_event,
)
from proxy.logs import redact
from proxy.providers.base import Incoming, Outgoing, ProviderAdapter, ResponseTransformer, Verdict
from proxy.relay import RelayClient, RelayUnavailable
from proxy.routing.health import Block
from proxy.routing.quota import Window
from proxy.routing.router import Candidates, Skipped
from proxy.routing.state import RuntimeState
from proxy.wire.request_budget import AgentGone, Budget, DeadlinePassed, StepTimeout
from proxy.wire.response_body import read_capped
from proxy.wire.retry_after import retry_after_seconds
from proxy.wire.sse import SSEEvent, SSEParser
from proxy.wire.usage import Usage, UsageAccumulator

__all__ = ["Completed", "Forwarder", "SecretCache", "describe_blocks", "fingerprint"]

log = logging.getLogger("headway.forward")

_RETRYABLE = frozenset({500, 502, 503, 504, 529})
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
_HOLD_LIMIT = 256 * 1024
_AGENT_GONE = 499  # nginx's "client closed request": the request log's status for an agent that hung up
_ACCUMULATE_LIMIT = 32 * 1024 * 1024
_ERROR_BODY_LIMIT = 64 * 1024  # of an upstream's error answer


def fingerprint(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class SecretCache:
    """Secrets read from the keychain off the loop, cached briefly so a replaced key is picked up within seconds.

    A secret that is not there is cached for ``missing_ttl`` only (a second): an account added by another process
    writes its key just after its settings, and the first look-up may come in between. A settings change empties the
    cache (the engine's ``_apply``); replacing a key records ``key_updated_at`` in the settings for that reason.
    """

    def __init__(
        self,
        read: Callable[[str], str | None],
        ttl: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        missing_ttl: float = 1.0,
    ):
        self._read = read
        self._ttl = ttl
        self._missing_ttl = missing_ttl
        self._clock = clock
        self._cache: dict[str, tuple[str | None, float]] = {}

    async def get(self, account_id: str) -> str | None:
        hit = self._cache.get(account_id)
        if hit is not None and self._clock() - hit[1] < (self._ttl if hit[0] else self._missing_ttl):
            return hit[0]
        try:
            value = await asyncio.to_thread(self._read, account_id)
        except Exception as exc:
            log.error("cannot read the secret of account %s: %s", account_id, exc)
            value = hit[0] if hit else None
        self._cache[account_id] = (value, self._clock())
        return value

    def fingerprints(self) -> dict[str, str]:
        return {k: fingerprint(v) for k, (v, _) in self._cache.items() if v}

    async def fingerprints_of(self, accounts: list[Account]) -> dict[str, str]:
        """Fingerprints of these accounts' current secrets (read through the cache), to notice replaced keys."""
        out = {}
        for account in accounts:
            value = await self.get(account.id)
            if value:
                out[account.id] = fingerprint(value)
        return out

    def missing(self) -> set[str]:
        """Accounts whose secret was looked up and is not in the keychain."""
        return {k for k, (v, _) in self._cache.items() if not v}

    def invalidate(self, account_id: str | None = None) -> None:
        if account_id is None:
            self._cache.clear()
        else:
            self._cache.pop(account_id, None)


def _reset_of_exhausted(windows: list[Window], now: float) -> float | None:
    resets = [
        w.resets_at
        for w in windows
        if w.resets_at
        and w.resets_at > now
        and (w.remaining_fraction is not None and w.remaining_fraction <= 0)
    ]
    return max(resets) if resets else None


def _short(body: bytes, limit: int = 300) -> str:
    """An upstream error body as one short line, redacted: it is stored (health, request log) and shown."""
    try:
        data = json.loads(body)
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, dict) and error.get("message"):
            text = str(error.get("type") or error.get("code") or "error") + ": " + str(error["message"])
            return redact(text)[:limit]
    except ValueError:
        pass
    return redact(body.decode("utf-8", errors="replace")).strip()[:limit]


def _redact_body(body: bytes) -> bytes:
    """An upstream body relayed to the agent, with any secret it echoes masked."""
    text = body.decode("utf-8", errors="replace")
    clean = redact(text)
    return body if clean == text else clean.encode()


class _TooLarge(Exception):
    """A non-streamed answer beyond the size Headway buffers."""


async def _close(upstream: httpx.Response) -> None:
    try:
        await upstream.aclose()
    except Exception as exc:  # closing a broken or cancelled stream must not hide why it broke
        log.debug("closing an upstream response failed: %s", exc)


def _in(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    if seconds < 90:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 90:
        return f"{minutes}m"
    return f"{minutes // 60}h {minutes % 60}m"


_DELTA_EVENTS = frozenset(
    {
        "content_block_delta",
        "content_block_start",
        "content_block_stop",
        "ping",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.reasoning_summary_text.delta",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_text.done",
    }
)


def _carries_usage(protocol: str, event: SSEEvent) -> bool:
    """Whether an event may hold usage or the model; streams are mostly deltas, which need no JSON parse."""
    if event.event in _DELTA_EVENTS:
        return False
    if protocol == "openai-chat":
        return '"usage":' in event.data and '"usage":null' not in event.data.replace(" ", "")
    return True


def describe_blocks(skipped: list[Skipped], now: float) -> str:
    """Each enabled account's state, for an error body; disabled accounts are only counted."""
    parts = []
    disabled = 0
    for item in skipped:
        if item.block.state == "disabled":
            disabled += 1
            continue
        text = f"{item.account.label} ({item.block.state.replace('_', ' ')}"
        if item.block.until:
            text += f", resets in {_in(item.block.until - now)}"
        if item.block.reason:
            text += f": {redact(item.block.reason)}"
        parts.append(text + ")")
    if disabled:
        parts.append(f"{disabled} disabled account{'s' if disabled > 1 else ''} not tried")
    return "; ".join(parts) if parts else "no enabled account"


@dataclass
class _Attempt:
    """What one request did, for the request log and the dump."""

    started: float
    chain: list[str] = field(default_factory=list)
    account: Account | None = None
    status: int = 0
    ttfb: float | None = None
    error: str | None = None
    upstream_request_id: str | None = None
    upstream_body: bytes | None = None
    transcript: list[bytes] | None = None
    fingerprints: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Completed:
    """A finished request, handed to observers (dumps) off the hot path."""

    incoming: Incoming
    account: Account | None
    upstream_body: bytes | None
    status: int
    usage: Usage | None
    latency_ms: float
    transcript: bytes | None


Failure = tuple[int, httpx.Headers, bytes] | HeadwayError | None


class Forwarder:
    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        upstreams: Callable[[], UpstreamSettings],
        state: RuntimeState,
        client: httpx.AsyncClient,
        credential: Callable[[Account], Awaitable[str | None]],
        fingerprints: Callable[[list[Account]], Awaitable[dict[str, str]]],
        adapters: Callable[[str], ProviderAdapter],
        request_log: RequestLog | None,
        on_state_change: Callable[[], None] = lambda: None,
        prepare: Callable[[Incoming, Account], Incoming] | None = None,
        observe: Callable[[Completed], None] | None = None,
        on_success: Callable[[Incoming, Account], None] | None = None,
        keep_transcript: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        relay: RelayClient | None = None,
    ) -> None:
        self._relay_client = relay
        self._settings = settings
        self._upstreams = upstreams
        self._state = state
        self._client = client
        self._credential = credential
        self._fingerprints = fingerprints
        self._adapter = adapters
        self._log = request_log
        self._changed = on_state_change
        self._prepare = prepare
        self._observe = observe
        self._on_success = on_success
        self._keep_transcript = keep_transcript
        self._clock = clock
        self._sleep = sleep

    async def handle(self, incoming: Incoming) -> Response:
        attempt = _Attempt(started=time.perf_counter())
        protocol: Protocol = "anthropic" if incoming.family == "anthropic" else "openai"
        settings = self._settings()
        budget = Budget(settings.gateway.request_deadline_seconds, incoming.receive)
        try:
            if settings.gateway.paused:
                raise GatewayPaused("the gateway is paused; resume it from the tray or the settings page")
            return await self._route(incoming, attempt, budget)
        except AgentGone:
            attempt.status = _AGENT_GONE
            attempt.error = "the agent disconnected before its answer started"
            log.info(
                "agent hung up on %s before its answer started; stopped after %s",
                incoming.path,
                attempt.chain,
            )
            self._finish(incoming, attempt, None, None)
            return Response(status_code=_AGENT_GONE)
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
        attempt = _Attempt(started=time.perf_counter())
        fingerprints = await self._fingerprints([account])
        attempt.fingerprints = fingerprints
        if settings.gateway.paused or self._state.health.block(account.id, now, fingerprints.get(account.id)):
            return False
        if self._state.quota.below_killswitch(account.id, account.killswitch, now):
            return False
        credential = await self._credential(account)
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
        self, incoming: Incoming, settings: Settings, session_id: str | None, attempt: _Attempt
    ) -> Candidates:
        family = [a for a in settings.accounts if a.family == incoming.family and a.enabled]
        fingerprints = await self._fingerprints(family)
        attempt.fingerprints = fingerprints
        return self._state.router.candidates(
            settings,
            incoming.family,
            session_id=session_id,
            now=self._clock(),
            health=self._state.health,
            quota=self._state.quota,
            fingerprints=fingerprints,
        )

    async def _route(self, incoming: Incoming, attempt: _Attempt, budget: Budget) -> Response:
        settings = self._settings()
        candidates = await self._candidates(incoming, settings, incoming.session.session_id, attempt)
        skipped = list(candidates.skipped)
        last: Failure = None

        try:
            for account in candidates.usable:
                budget.check()
                credential = await self._credential(account)
                if not credential:
                    block = self._state.health.block(account.id, self._clock(), None)
                    skipped.append(
                        Skipped(account, block or Block("no_secret", "no credential in the keychain"))
                    )
                    attempt.chain.append(f"{account.id}:no-credential")
                    continue
                adapter = self._adapter(account.kind)
                request = incoming if self._prepare is None else self._prepare(incoming, account)
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
        if isinstance(last, tuple) and (last[0] in _RETRYABLE or not blocked):
            status, headers, body = last
            attempt.status = status
            attempt.error = _short(body)
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
            return Response(_redact_body(body), status_code=status, headers=out)
        protocol: Protocol = "anthropic" if incoming.family == "anthropic" else "openai"
        message = f"Headway: the upstream answered {status}" + (f": {_short(body)}" if body.strip() else "")
        return Response(
            json.dumps(error_body(protocol, status, message, "upstream_error")),
            status_code=status,
            headers=out,
        )

    async def _open(
        self, out: Outgoing, incoming: Incoming, account: Account, attempt: _Attempt
    ) -> httpx.Response | None:
        """Send the request (through the relay when it takes it); None when the relay failed and may not be bypassed."""
        if self._relay_client is not None:
            try:
                upstream = await self._relay_client.send(self._client, out, incoming.session.session_id)
            except RelayUnavailable as exc:
                attempt.chain.append(f"{account.id}:relay-failed")
                if not exc.fallback_to_direct:
                    log.warning(
                        "account %s: the relay failed and relay.fallback_to_direct is off: %s",
                        account.id,
                        exc,
                    )
                    return None
            else:
                if upstream is not None:
                    return upstream
        return await self._client.send(
            self._client.build_request(out.method, out.url, headers=out.headers, content=out.content),
            stream=True,
        )

    async def _try(
        self,
        incoming: Incoming,
        account: Account,
        credential: str,
        adapter: ProviderAdapter,
        settings: Settings,
        attempt: _Attempt,
        budget: Budget,
    ) -> Response | tuple[str, Failure, float | None]:
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
            attempt.chain.append(f"{account.id}:no-headers")
            log.warning("account %s: no response headers within %gs", account.id, first_byte)
            self._state.health.of(account.id).last_error = f"no response headers within {first_byte:g}s"
            return (
                "next",
                UpstreamTimeout(
                    f"the upstream sent no answer within {first_byte:g}s on account {account.label} "
                    "(gateway.first_byte_timeout_seconds)"
                ),
                None,
            )
        except httpx.TimeoutException as exc:
            attempt.chain.append(f"{account.id}:timeout")
            log.warning("account %s: upstream timed out (%s)", account.id, type(exc).__name__)
            return (
                "next",
                UpstreamTimeout(f"the upstream did not answer in time on account {account.label}"),
                None,
            )
        except httpx.HTTPError as exc:
            attempt.chain.append(f"{account.id}:unreachable")
            text = redact(str(exc) or type(exc).__name__)
            log.warning("account %s: upstream unreachable: %s", account.id, text)
            return (
                "next",
                UpstreamUnavailable(f"cannot reach the upstream for account {account.label}: {text}"),
                None,
            )
        if upstream is None:
            return "next", UpstreamUnavailable("the relay failed (relay.fallback_to_direct is off)"), None
        try:
            return await self._answer(upstream, incoming, account, adapter, settings, attempt, budget)
        except BaseException:
            await _close(upstream)
            raise

    async def _answer(
        self,
        upstream: httpx.Response,
        incoming: Incoming,
        account: Account,
        adapter: ProviderAdapter,
        settings: Settings,
        attempt: _Attempt,
        budget: Budget,
    ) -> Response | tuple[str, Failure, float | None]:
        """What to do with the upstream's response, once its headers are in."""
        state = self._state
        now = self._clock()
        windows = adapter.quota_windows(upstream.headers, now)
        if state.quota.update(account.id, windows, now, adapter.plan_type(upstream.headers)):
            state.dirty = True
            self._changed()
        status = upstream.status_code
        fallback_statuses = set(settings.routing.fallback_statuses)

        if status in fallback_statuses or status in _RETRYABLE:
            body = await budget.step(read_capped(upstream, _ERROR_BODY_LIMIT))
            attempt.chain.append(f"{account.id}:{status}")
            reason = f"{status} {_short(body)}"
            if status in _RETRYABLE and status not in fallback_statuses:
                log.info("account %s: transient %s, may retry", account.id, status)
                state.health.of(account.id).last_error = reason
                return "retry", (status, upstream.headers, body), retry_after_seconds(upstream.headers, now)
            self._fall_back(
                account,
                adapter,
                status,
                reason,
                upstream.headers,
                body,
                windows,
                attempt.fingerprints,
                now,
                settings,
            )
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
            verdict, held, held_events = await budget.step(
                self._hold(chunks, adapter, incoming, parser, usage)
            )
        except httpx.TimeoutException:
            await _close(upstream)
            attempt.chain.append(f"{account.id}:stalled")
            state.health.of(account.id).last_error = "the stream went silent before any content"
            return (
                "next",
                UpstreamTimeout(
                    f"the upstream's stream went silent before any content on account {account.label}"
                ),
                None,
            )
        if verdict is not None and verdict.kind == "error" and verdict.action != "pass":
            await _close(upstream)
            reason = redact(verdict.reason)
            attempt.chain.append(f"{account.id}:stream-{verdict.action}")
            if verdict.action == "fallback":
                self._fall_back(
                    account,
                    adapter,
                    429,
                    reason,
                    upstream.headers,
                    b"",
                    windows,
                    attempt.fingerprints,
                    now,
                    settings,
                )
                return "next", (429, upstream.headers, b"".join(held)), None
            state.health.of(account.id).last_error = reason
            return "retry", UpstreamUnavailable(f"account {account.label}: {reason}"), None
        if verdict is None:
            await _close(upstream)
            attempt.chain.append(f"{account.id}:dropped")
            state.health.of(account.id).last_error = "the stream ended before any content"
            return (
                "next",
                UpstreamUnavailable(
                    f"the upstream's stream broke or ended before any content on account {account.label}"
                ),
                None,
            )

        if transformer is not None and transformer.aggregate:
            return await budget.step(
                self._aggregate(
                    upstream,
                    chunks,
                    held,
                    held_events,
                    parser,
                    usage,
                    transformer,
                    incoming,
                    account,
                    attempt,
                    adapter,
                )
            )
        self._commit(upstream, incoming, account, attempt, status)
        if self._keep_transcript():
            attempt.transcript = list(held)
        headers = self._response_headers(upstream.headers, account)
        if transformer is not None:
            headers["content-type"] = transformer.content_type
        body_iter = self._relay(
            upstream, chunks, held, held_events, parser, usage, transformer, incoming, attempt, adapter
        )
        return StreamingResponse(body_iter, status_code=status, headers=headers)

    def _commit(
        self, upstream: httpx.Response, incoming: Incoming, account: Account, attempt: _Attempt, status: int
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
            if self._on_success is not None:
                self._on_success(incoming, account)

    async def _whole(
        self,
        upstream: httpx.Response,
        incoming: Incoming,
        account: Account,
        adapter: ProviderAdapter,
        attempt: _Attempt,
        budget: Budget,
        usage: UsageAccumulator,
    ) -> Response | tuple[str, Failure, float | None]:
        """A response that is not an event stream: read it whole, check it, answer once."""
        status = upstream.status_code
        try:
            body = await budget.step(self._read_all(upstream))
        except httpx.TimeoutException:
            attempt.chain.append(f"{account.id}:timeout")
            self._state.health.of(account.id).last_error = "the answer stalled"
            return "next", UpstreamTimeout(f"the upstream's answer stalled on account {account.label}"), None
        except (httpx.HTTPError, _TooLarge) as exc:
            attempt.chain.append(f"{account.id}:broken-body")
            reason = (
                "the answer was too large"
                if isinstance(exc, _TooLarge)
                else "the connection broke during the answer"
            )
            self._state.health.of(account.id).last_error = reason
            return "next", UpstreamUnavailable(f"{reason} on account {account.label}"), None
        data: object = None
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                data = None
        if 200 <= status < 300 and not isinstance(data, dict | list):
            attempt.chain.append(f"{account.id}:invalid-json")
            log.warning("account %s: a %s answer that is not JSON (%d bytes)", account.id, status, len(body))
            self._state.health.of(account.id).last_error = f"a {status} answer that is not JSON"
            return (
                "next",
                UpstreamUnavailable(f"the upstream's answer on account {account.label} was not valid JSON"),
                None,
            )
        self._commit(upstream, incoming, account, attempt, status)
        attempt.ttfb = time.perf_counter() - attempt.started
        if isinstance(data, dict):
            usage.feed_body(data)
        if status >= 400:
            attempt.error = _short(body)
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
        fingerprints: dict[str, str],
        now: float,
        settings: Settings,
    ) -> None:
        health = self._state.health
        exhausted = adapter.classify_error(status, body, now)
        if status == 401:
            health.fail_auth(account.id, reason, fingerprints.get(account.id), needs_login=adapter.oauth)
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
                _in(resets - now),
            )
        else:
            wait = retry_after_seconds(headers, now)
            until = now + wait if wait is not None else _reset_of_exhausted(windows, now)
            if until is None:
                until = now + settings.routing.default_cooldown_seconds
            health.cool_down(account.id, until, reason)
            log.warning(
                "account %s: %s; cooling down for %s, falling back", account.id, reason, _in(until - now)
            )
        self._state.dirty = True
        self._changed()

    @staticmethod
    async def _read_all(upstream: httpx.Response, limit: int = _ACCUMULATE_LIMIT) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in upstream.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise _TooLarge
        finally:
            await upstream.aclose()
        return b"".join(chunks)

    async def _hold(
        self,
        iterator: AsyncIterator[bytes],
        adapter: ProviderAdapter,
        incoming: Incoming,
        parser: SSEParser,
        usage: UsageAccumulator,
    ) -> tuple[Verdict | None, list[bytes], list[SSEEvent]]:
        """Read until the first content or error event. Returns (verdict, held chunks, held events).

        The verdict is None when the stream ended or broke first; a silence beyond the read timeout raises.
        """
        held: list[bytes] = []
        events: list[SSEEvent] = []
        size = 0
        try:
            while True:
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    return None, held, events
                held.append(chunk)
                size += len(chunk)
                for event in parser.feed(chunk):
                    events.append(event)
                    data = event.json()
                    if isinstance(data, dict):
                        usage.feed_event(event.event, data)
                    verdict = adapter.classify_event(incoming.protocol, event)
                    if verdict.kind != "meta":
                        return verdict, held, events
                if size > _HOLD_LIMIT:
                    return Verdict("content"), held, events
        except httpx.TimeoutException:
            raise
        except httpx.HTTPError as exc:
            log.warning("upstream stream broke before content: %s", type(exc).__name__)
            return None, [], []

    async def _aggregate(
        self,
        upstream: httpx.Response,
        chunks: AsyncIterator[bytes],
        held: list[bytes],
        held_events: list[SSEEvent],
        parser: SSEParser,
        usage: UsageAccumulator,
        transformer: ResponseTransformer,
        incoming: Incoming,
        account: Account,
        attempt: _Attempt,
        adapter: ProviderAdapter,
    ) -> Response | tuple[str, Failure, float | None]:
        """Collect the whole stream for an agent that did not ask to stream; answer once.

        Nothing reached the agent until the stream is complete, so a stream that breaks or stalls moves on to the
        next account like a failure before content.
        """
        transcript = list(held) if self._keep_transcript() else None
        for event in held_events:
            transformer.feed(event)
        try:
            async for chunk in chunks:
                if transcript is not None:
                    transcript.append(chunk)
                for event in parser.feed(chunk):
                    data = event.json()
                    if isinstance(data, dict):
                        usage.feed_event(event.event, data)
                    transformer.feed(event)
        except httpx.HTTPError as exc:
            attempt.chain.append(f"{account.id}:broken-stream")
            stalled = isinstance(exc, httpx.TimeoutException)
            reason = "the stream stalled" if stalled else "the stream broke"
            self._state.health.of(account.id).last_error = reason
            log.warning(
                "account %s: %s before the answer was complete (%s)", account.id, reason, type(exc).__name__
            )
            failure = UpstreamTimeout if stalled else UpstreamUnavailable
            return (
                "next",
                failure(f"{reason} before the answer was complete on account {account.label}"),
                None,
            )
        finally:
            await _close(upstream)
        self._commit(upstream, incoming, account, attempt, upstream.status_code)
        attempt.transcript = transcript
        status, body = transformer.result()
        attempt.status = status
        attempt.ttfb = time.perf_counter() - attempt.started
        if status >= 400:
            attempt.error = _short(body)
        self._finish(incoming, attempt, usage, adapter)
        headers = self._response_headers(upstream.headers, account)
        headers["content-type"] = transformer.content_type
        return Response(body, status_code=status, headers=headers)

    async def _relay(
        self,
        upstream: httpx.Response,
        chunks: AsyncIterator[bytes],
        held: list[bytes],
        held_events: list[SSEEvent],
        parser: SSEParser,
        usage: UsageAccumulator,
        transformer: ResponseTransformer | None,
        incoming: Incoming,
        attempt: _Attempt,
        adapter: ProviderAdapter,
    ) -> AsyncIterator[bytes]:
        """The committed event stream to the agent; a break after this point ends it with an error event."""
        transcript = attempt.transcript
        try:
            if transformer is None:
                for chunk in held:
                    if attempt.ttfb is None:
                        attempt.ttfb = time.perf_counter() - attempt.started
                    yield chunk
            else:
                out = b"".join(transformer.feed(event) for event in held_events)
                if out:
                    attempt.ttfb = time.perf_counter() - attempt.started
                    yield out
            async for chunk in chunks:
                if attempt.ttfb is None:
                    attempt.ttfb = time.perf_counter() - attempt.started
                if transcript is not None:
                    transcript.append(chunk)
                if transformer is None:
                    yield chunk
                events = parser.feed(chunk)
                for event in events:
                    if not _carries_usage(usage.protocol, event):
                        continue
                    data = event.json()
                    if isinstance(data, dict):
                        usage.feed_event(event.event, data)
                if transformer is not None:
                    out = b"".join(transformer.feed(event) for event in events)
                    if out:
                        yield out
            if transformer is not None:
                tail = transformer.finish()
                if tail:
                    yield tail
        except httpx.HTTPError as exc:
            attempt.error = f"upstream stream broke: {type(exc).__name__}"
            log.warning("account %s: %s", attempt.account.id if attempt.account else "?", attempt.error)
            if isinstance(exc, httpx.TimeoutException):
                message = "the upstream went silent mid-stream for longer than gateway.read_timeout_seconds"
            else:
                message = "the upstream connection broke mid-stream"
            yield stream_error_event(incoming.protocol, message)
        finally:
            await _close(upstream)
            self._finish(incoming, attempt, usage, adapter)

    def _response_headers(self, headers: httpx.Headers, account: Account | None) -> dict[str, str]:
        out = {k: v for k, v in headers.items() if k.lower() not in _DROP_RESPONSE}
        if account is not None:
            out["x-headway-account"] = account.id
        return out

    def _finish(
        self,
        incoming: Incoming,
        attempt: _Attempt,
        usage: UsageAccumulator | None,
        adapter: ProviderAdapter | None,
    ) -> None:
        account = attempt.account
        tokens = usage.usage if usage is not None else None
        model = (usage.model if usage is not None else None) or incoming.model
        latency_ms = (time.perf_counter() - attempt.started) * 1000
        if self._observe is not None and attempt.upstream_body is not None:
            self._observe(
                Completed(
                    incoming=incoming,
                    account=account,
                    upstream_body=attempt.upstream_body,
                    status=attempt.status,
                    usage=tokens,
                    latency_ms=latency_ms,
                    transcript=b"".join(attempt.transcript) if attempt.transcript is not None else None,
                )
            )
        if self._log is None:
            return
        # After the response's last byte is out: the agent never waits on bookkeeping.
        try:
            asyncio.get_running_loop().call_soon(
                self._record, incoming, attempt, tokens, model, account, adapter, latency_ms
            )
        except RuntimeError:
            self._record(incoming, attempt, tokens, model, account, adapter, latency_ms)

    def _record(
        self,
        incoming: Incoming,
        attempt: _Attempt,
        tokens: Usage | None,
        model: str | None,
        account: Account | None,
        adapter: ProviderAdapter | None,
        latency_ms: float,
    ) -> None:
        if self._log is None:
            return
        price = None
        if tokens is not None and model and account is not None and adapter is not None:
            provider = "anthropic" if account.family == "anthropic" else "openai"
            billing = adapter.billing
            price = lambda: estimate_cost(provider, model, tokens, billing=billing)  # noqa: E731
        self._log.record(
            RequestRecord(
                ts=self._clock(),
                route=incoming.path,
                family=incoming.family,
                account_id=account.id if account else None,
                account_label=account.label if account else None,
                account_kind=account.kind if account else None,
                model=model,
                status=attempt.status,
                latency_ms=latency_ms,
                ttfb_ms=None if attempt.ttfb is None else attempt.ttfb * 1000,
                stream=incoming.stream,
                usage=tokens,
                price=price,
                session_id=incoming.session.session_id,
                parent_session_id=incoming.session.parent_session_id,
                fallback_chain=list(attempt.chain),
                error=attempt.error,
                purpose=incoming.purpose,
                request_bytes=len(incoming.body),
                upstream_request_id=attempt.upstream_request_id,
            )
        )
