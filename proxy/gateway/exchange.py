"""One attempt on one account: send the request, read the answer's head, and decide.

The forwarder's routing loop (proxy/gateway/forward.py) calls :meth:`Exchange.run` once per try; it returns the
committed :class:`Response` (its body may still be streaming) or an :data:`~proxy.gateway.attempt.Outcome` saying
whether to retry this account or move on, and why. A refusing account is blocked here for as long as its answer
says (cool-down, exhaustion until a reset, failed authentication), so the router skips it next time.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping

import httpx
from starlette.responses import Response

from proxy.config.settings import Account, Settings, UpstreamSettings
from proxy.durations import format_duration
from proxy.features.base import Features, TransportFailed
from proxy.gateway.attempt import (
    RETRYABLE,
    Attempt,
    Outcome,
    redact_body,
    reset_of_exhausted,
    short_error,
)
from proxy.gateway.errors import Protocol, error_body
from proxy.gateway.stream import AgentStream, TooLarge, close_quietly, collect, hold, pump, read_all
from proxy.logs import redact
from proxy.providers.base import Incoming, Outgoing, ProviderAdapter
from proxy.routing.quota import Window
from proxy.routing.state import RuntimeState
from proxy.wire.errors import BadRequest, HeadwayError, UpstreamTimeout, UpstreamUnavailable
from proxy.wire.request_budget import Budget, StepTimeout
from proxy.wire.response_body import read_capped
from proxy.wire.retry_after import retry_after_seconds
from proxy.wire.sse import SSEParser
from proxy.wire.upstream_client import UpstreamClient
from proxy.wire.usage import UsageAccumulator

__all__ = ["Exchange", "Finish", "error_answer", "hear_quota", "response_headers"]

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

# Records a finished request (the forwarder's: it hands the record to the features).
Finish = Callable[[Incoming, Attempt, UsageAccumulator | None, ProviderAdapter | None], None]


def response_headers(headers: httpx.Headers, account: Account | None) -> dict[str, str]:
    out = {k: v for k, v in headers.items() if k.lower() not in _DROP_RESPONSE}
    if account is not None:
        out["x-headway-account"] = account.id
    return out


def hear_quota(
    state: RuntimeState,
    account_id: str,
    adapter: ProviderAdapter,
    headers: Mapping[str, str],
    now: float,
    changed: Callable[[], None],
) -> list[Window]:
    """An answer's quota facts — its headers, or a frame in their shape — into the quota book; the windows read."""
    windows = adapter.quota_windows(headers, now)
    if state.quota.update(account_id, windows, now, adapter.plan_type(headers)):
        state.dirty = True
        changed()
    return windows


def error_answer(incoming: Incoming, status: int, headers: httpx.Headers, body: bytes) -> Response:
    """An upstream error relayed to the agent: its own error object (redacted), or one in the agent's shape."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    out = response_headers(headers, None)
    out["content-type"] = "application/json"
    if isinstance(data, dict) and "error" in data:
        return Response(redact_body(body), status_code=status, headers=out)
    protocol: Protocol = "anthropic" if incoming.family == "anthropic" else "openai"
    message = f"Headway: the upstream answered {status}" + (f": {short_error(body)}" if body.strip() else "")
    return Response(
        json.dumps(error_body(protocol, status, message, "upstream_error")),
        status_code=status,
        headers=out,
    )


class Exchange:
    def __init__(
        self,
        *,
        settings: Callable[[], Settings],
        upstreams: Callable[[], UpstreamSettings],
        state: RuntimeState,
        client: UpstreamClient,
        features: Features,
        finish: Finish,
        on_state_change: Callable[[], None],
        clock: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._upstreams = upstreams
        self._state = state
        self._client = client
        self._features = features
        self._finish = finish
        self._changed = on_state_change
        self._clock = clock

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
        return await self._client.send(out.method, out.url, out.headers, out.content)

    def _give_up(
        self, attempt: Attempt, account: Account, tag: str, note: str | None, failure: HeadwayError
    ) -> Outcome:
        """This account did not answer usably: note why (the chain, its health's last error); try the next."""
        attempt.chain.append(f"{account.id}:{tag}")
        if note is not None:
            self._state.health.of(account.id).last_error = note
        return "next", failure, None

    async def run(
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
        windows = hear_quota(state, account.id, adapter, upstream.headers, now, self._changed)
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
            headers = response_headers(upstream.headers, account)
            headers["content-type"] = transformer.content_type
            return Response(body, status_code=status, headers=headers)

        self._commit(upstream, incoming, account, attempt, status)
        attempt.transcript = transcript
        headers = response_headers(upstream.headers, account)
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
        return AgentStream(body_iter, status_code=status, headers=headers)

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
            answer = error_answer(incoming, status, upstream.headers, body)
            answer.headers["x-headway-account"] = account.id
        else:
            answer = Response(body, status_code=status, headers=response_headers(upstream.headers, account))
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
