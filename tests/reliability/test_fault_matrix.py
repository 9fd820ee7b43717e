"""The fault matrix: every upstream fault, on every route (streamed and not), for every account kind.

Each case runs through a real gateway on 127.0.0.1 against the fake upstreams (real HTTP servers, faults injected on
the wire). The case's pool holds two fresh accounts of one kind: ``primary`` (first in order; the fault is injected on
its requests only) and ``backup`` (healthy) — or, in the ``alone`` pass, the faulty primary only, so that Headway's
own error answers are checked too. For every case the test checks that:

- the agent's answer is well-formed in its protocol's shape (an Anthropic / Responses / Chat Completions object, an
  event stream that ends with its terminal event or an error event, or an error object) — never a hang, never HTML;
- the answer came within ``BOUND`` seconds (generous next to the configured timeouts below);
- the upstream attempts are exactly the documented ones (``Expect.primary_attempts``; the backup gets one or none);
- the account the documented one served it (``x-headway-account``), with the documented status.

What is retried and bounded (the README's Reliability section):

- 401 / 403 / 429 and in-stream rate-limit errors before content: no retry; the account is blocked (auth) or cooled
  down and the next account is tried at once.
- 500 / 502 / 503 / 504 / 529 and in-stream overload errors before content: up to ``routing.max_retries`` retries on
  the same account (back-off ``retry_base_delay_seconds`` doubling, or the upstream's Retry-After up to
  ``max_retry_wait_seconds``), then the next account.
- refused or dropped connections, a stream that ends or breaks before content, malformed SSE, a non-JSON answer,
  no response headers within ``first_byte_timeout_seconds`` (streamed requests) or ``read_timeout_seconds``
  (non-streamed): one attempt, then the next account.
- once content reached the agent: no retry; a break or a silence over ``read_timeout_seconds`` ends the stream with
  an error event in the agent's protocol.
- everything before the answer starts is bounded by ``request_deadline_seconds`` in total (then 504), and stops
  when the agent hangs up (tests/proxy/gateway/test_forward.py).

The matrix is printed at the end of the run (scenario, route, kind, outcome, attempts, time), with or without -s.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from proxy.auth import TokenSet
from proxy.config.settings import Account, Settings
from proxy.secrets.keychain import account_secret_name
from tests.fakes import Behavior, FakeAccount, FakeAnthropic, FakeOpenAI, FakeOpenAIAuth, FakeServer
from tests.fakes.codex import FakeCodex
from tests.support.chatgpt_gateway import chatgpt_gateway
from tests.support.gateway import RunningGateway

pytestmark = pytest.mark.timeout(240)

MAX_RETRIES = 2
FIRST_BYTE = 0.5
READ = 0.75
DEADLINE = 8.0
BOUND = 6.0  # seconds: the slowest documented path is a hang (READ) then the backup; 6 s is far above it
AFTER_CONTENT = 4  # events: every fake stream has sent content by its 4th event

# -- the axes -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    path: str
    protocol: str  # anthropic | openai-responses | openai-chat
    body: dict[str, Any]


MESSAGES = Route(
    "/v1/messages",
    "anthropic",
    {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]},
)
RESPONSES = Route("/v1/responses", "openai-responses", {"model": "gpt-5", "input": "hi"})
CHAT = Route(
    "/v1/chat/completions", "openai-chat", {"model": "gpt-5", "messages": [{"role": "user", "content": "hi"}]}
)

COMBOS = [
    (MESSAGES, "anthropic-api-key"),
    (RESPONSES, "openai-api-key"),
    (RESPONSES, "chatgpt"),
    (CHAT, "openai-api-key"),
    (CHAT, "chatgpt"),
]


@dataclass(frozen=True)
class Case:
    route: Route
    kind: str
    stream: bool  # the agent asked to stream

    @property
    def upstream_streams(self) -> bool:
        return self.stream or self.kind == "chatgpt"  # the Codex backend always streams

    @property
    def rate_limit_code(self) -> str:
        return "rate_limit_error" if self.kind == "anthropic-api-key" else "rate_limit_exceeded"


@dataclass(frozen=True)
class Expect:
    served_by: str | None  # primary | backup | None (an error answer from Headway)
    status: int
    primary_attempts: int  # requests the primary's upstream received
    ends_with_error: bool = False  # a committed stream that ends with an error event


def _ok_backup(attempts: int = 1) -> Expect:
    return Expect("backup", 200, attempts)


PRIMARY_OK = Expect("primary", 200, 1)
REFUSED = Behavior(status=599)  # marker: the primary's base URL points at a closed port instead


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Callable[[Case], Behavior]
    expect: Callable[[Case], Expect]  # with a healthy backup account
    alone: Callable[[Case], Expect]  # the faulty account is the only one


def _headway(status: int, attempts: int = 1) -> Expect:
    return Expect(None, status, attempts)


def _streams_only(failed: Expect) -> Callable[[Case], Expect]:
    """For faults that exist only in event streams: a non-streamed API answer is whole."""
    return lambda c: failed if c.upstream_streams else PRIMARY_OK


def _alone_after_content(failed: Expect) -> Callable[[Case], Expect]:
    def expect(case: Case) -> Expect:
        if case.stream:
            return Expect("primary", 200, 1, ends_with_error=True)
        return failed if case.kind == "chatgpt" else PRIMARY_OK

    return expect


def _alone_dropped_after_content(case: Case) -> Expect:
    return Expect("primary", 200, 1, ends_with_error=True) if case.stream else _headway(502)


def _after_content(case: Case) -> Expect:
    """A failure once content flowed: a streaming agent keeps what it got plus an error event; a non-streaming agent
    behind an aggregating adapter (ChatGPT) got nothing yet, so the backup serves."""
    if case.stream:
        return Expect("primary", 200, 1, ends_with_error=True)
    if case.kind == "chatgpt":
        return _ok_backup()
    return PRIMARY_OK  # the fault only exists in streams: a non-streamed API answer is whole


def _dropped_after_content(case: Case) -> Expect:
    if case.stream:
        return Expect("primary", 200, 1, ends_with_error=True)
    return _ok_backup()  # a non-streamed answer dropped before it was complete: nothing reached the agent


def _error_after_content(case: Case) -> Expect:
    if case.stream:
        return Expect("primary", 200, 1, ends_with_error=True)
    if case.kind == "chatgpt":
        return Expect(
            "primary", 502, 1
        )  # the aggregated answer is the upstream's failure, in the OpenAI shape
    return PRIMARY_OK


# Alone, Headway answers: 401 → 503 (the account needs a new key or login), 403 / 429 → 429 with the cooldown's
# reset as retry-after, 5xx after the retries → the upstream's own error object (redacted), a refused or broken
# connection / bad stream / bad body → 502, a hang → 504.
SCENARIOS = [
    Scenario(
        "401",
        lambda c: Behavior(status=401, error_type="authentication_error"),
        lambda c: _ok_backup(),
        lambda c: _headway(503),
    ),
    Scenario(
        "403",
        lambda c: Behavior(status=403, error_type="permission_error"),
        lambda c: _ok_backup(),
        lambda c: _headway(429),
    ),
    Scenario(
        "429+retry-after",
        lambda c: Behavior(status=429, retry_after=30, error_type=c.rate_limit_code),
        lambda c: _ok_backup(),
        lambda c: _headway(429),
    ),
    Scenario(
        "429",
        lambda c: Behavior(status=429, error_type=c.rate_limit_code),
        lambda c: _ok_backup(),
        lambda c: _headway(429),
    ),
    Scenario(
        "500",
        lambda c: Behavior(status=500),
        lambda c: _ok_backup(MAX_RETRIES + 1),
        lambda c: _headway(500, MAX_RETRIES + 1),
    ),
    Scenario(
        "529",
        lambda c: Behavior(status=529, error_type="overloaded_error"),
        lambda c: _ok_backup(MAX_RETRIES + 1),
        lambda c: _headway(529, MAX_RETRIES + 1),
    ),
    Scenario(
        "in-stream error before content",
        lambda c: Behavior(in_stream_error=c.rate_limit_code),
        _streams_only(_ok_backup()),
        _streams_only(_headway(429)),
    ),
    Scenario(
        "in-stream error after content",
        lambda c: Behavior(in_stream_error=c.rate_limit_code, in_stream_error_after_content=True),
        _error_after_content,
        _error_after_content,
    ),
    Scenario("connection refused", lambda c: REFUSED, lambda c: _ok_backup(0), lambda c: _headway(502, 0)),
    Scenario(
        "dropped before content",
        lambda c: Behavior(drop_after_events=1),
        lambda c: _ok_backup(),
        lambda c: _headway(502),
    ),
    Scenario(
        "dropped mid-stream",
        lambda c: Behavior(drop_after_events=AFTER_CONTENT),
        _dropped_after_content,
        _alone_dropped_after_content,
    ),
    Scenario(
        "hang before headers", lambda c: Behavior(hang=True), lambda c: _ok_backup(), lambda c: _headway(504)
    ),
    Scenario(
        "hang before content",
        lambda c: Behavior(hang_after_events=1),
        _streams_only(_ok_backup()),
        _streams_only(_headway(504)),
    ),
    Scenario(
        "hang mid-stream",
        lambda c: Behavior(hang_after_events=AFTER_CONTENT),
        _after_content,
        _alone_after_content(_headway(504)),
    ),
    Scenario(
        "slow stream", lambda c: Behavior(chunks=4, delay=0.1), lambda c: PRIMARY_OK, lambda c: PRIMARY_OK
    ),
    Scenario(
        "malformed SSE",
        lambda c: Behavior(raw_stream=b"data: {not json\n\nevent: ???\ndata: \x00\x01\n\n: x\n\n"),
        lambda c: _ok_backup(),
        lambda c: _headway(502),
    ),
    Scenario(
        "invalid JSON body",
        lambda c: Behavior(body=b'{"id": "msg_1", "content": [', status=200),
        lambda c: _ok_backup(),
        lambda c: _headway(502),
    ),
]


# -- the printed matrix -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    scenario: str
    route: str
    kind: str
    outcome: str
    attempts: str
    seconds: float
    ok: bool


@pytest.fixture(scope="session")
def matrix(request: pytest.FixtureRequest) -> Iterator[list[Row]]:
    rows: list[Row] = []
    yield rows
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None or not rows:
        return
    with capture.global_and_fixture_disabled():  # printed with or without -s
        reporter.write_line("")
        reporter.write_sep("=", f"fault matrix: {len(rows)} cases, {sum(not r.ok for r in rows)} failed")
        reporter.write_line(
            f"{'scenario':32} {'route':36} {'kind':18} {'outcome':34} {'attempts':9} {'time':>6}"
        )
        for r in rows:
            mark = "" if r.ok else "  <-- FAILED"
            reporter.write_line(
                f"{r.scenario:32} {r.route:36} {r.kind:18} {r.outcome:34} {r.attempts:9} {r.seconds:5.2f}s{mark}"
            )


# -- running one case ---------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Rig:
    """One gateway and the fakes for one (route, kind) pair; each case gets two fresh accounts."""

    def __init__(self, gw: RunningGateway, fakes: dict[str, FakeServer], auth: FakeOpenAIAuth) -> None:
        self.gw = gw
        self.fakes = fakes
        self.auth = auth
        self.faults: dict[str, Behavior] = {}
        self.counter = 0
        self._tokens: str | None = None
        for name, fake in fakes.items():
            fake.fault_for = self._fault_for(name)

    def _fault_for(self, name: str) -> Callable[[Any], Behavior | None]:
        def pick(request: Any) -> Behavior | None:
            return self.faults.get(_identity(name, request))

        return pick

    def secret_for(self, kind: str, account_id: str) -> str:
        if kind == "anthropic-api-key":
            return f"sk-ant-api03-{account_id}-{'k' * 24}"
        if kind == "openai-api-key":
            return f"sk-proj-{account_id}-{'k' * 24}"
        if self._tokens is None:
            payload = self.auth.issue_tokens(
                FakeAccount(account_id="acct-matrix", email="matrix@example.com")
            )
            self._tokens = TokenSet.from_token_response(payload, now=time.time()).to_json()
        return self._tokens

    def accounts(self, case: Case, fault: Behavior, *, alone: bool) -> tuple[Account, Account]:
        self.counter += 1
        made = []
        for role in ("p", "b"):
            account_id = f"{role}{self.counter}"
            self.gw.services.keychain.set(
                account_secret_name(account_id), self.secret_for(case.kind, account_id)
            )
            extra: dict[str, Any] = {}
            if case.kind == "chatgpt":
                extra["chatgpt_account_id"] = f"acct-{account_id}"
            if role == "p" and fault is REFUSED:
                extra["base_url"] = f"http://127.0.0.1:{_closed_port()}"
            made.append(Account(id=account_id, kind=case.kind, label=account_id, **extra))  # type: ignore[arg-type]
        primary, backup = made

        def use(settings: Settings) -> None:
            settings.accounts = [primary] if alone else [primary, backup]

        self.gw.edit(use)
        if fault is not REFUSED:
            self.faults = {_identity_of(case.kind, primary, self.secret_for(case.kind, primary.id)): fault}
        else:
            self.faults = {}
        return primary, backup

    def attempts(self, case: Case, account: Account) -> int:
        fake = self.fakes[_fake_name(case.kind)]
        who = _identity_of(case.kind, account, self.secret_for(case.kind, account.id))
        paths = {"/backend-api/codex/responses", case.route.path}
        return sum(1 for r in fake.requests if r.path in paths and _identity(_fake_name(case.kind), r) == who)


def _fake_name(kind: str) -> str:
    return {"anthropic-api-key": "anthropic", "openai-api-key": "openai", "chatgpt": "codex"}[kind]


def _identity(name: str, request: Any) -> str:
    if name == "anthropic":
        return str(request.headers.get("x-api-key", ""))
    if name == "codex":
        return str(request.headers.get("chatgpt-account-id", ""))
    return str(request.headers.get("authorization", "")).removeprefix("Bearer ")


def _identity_of(kind: str, account: Account, secret: str) -> str:
    return f"acct-{account.id}" if kind == "chatgpt" else secret


# -- what "well-formed" means per protocol ------------------------------------------------------------------------


def _sse(text: str) -> list[tuple[str | None, str]]:
    events: list[tuple[str | None, str]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        if data:
            events.append((name, "\n".join(data)))
    return events


def _check_error_object(protocol: str, body: Any) -> None:
    if protocol == "anthropic":
        assert (
            body["type"] == "error"
            and isinstance(body["error"]["type"], str)
            and isinstance(body["error"]["message"], str)
        )
    else:
        assert isinstance(body["error"]["message"], str)


def _check_answer(case: Case, response: httpx.Response) -> bool:
    """Assert the answer is well-formed in the agent's protocol; return whether a stream ended with an error."""
    protocol = case.route.protocol
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), response.text[:200]
        _check_error_object(protocol, response.json())
        return False
    if not case.stream:
        body = response.json()
        expected = {
            "anthropic": ("type", "message"),
            "openai-responses": ("object", "response"),
            "openai-chat": ("object", "chat.completion"),
        }
        key, value = expected[protocol]
        assert body[key] == value, body
        return False
    assert response.headers["content-type"].startswith("text/event-stream"), response.headers
    events = _sse(response.text)
    assert events, "an empty stream"
    for _, data in events:
        if data != "[DONE]":
            json.loads(data)
    name, data = events[-1]
    if protocol == "anthropic":
        if name == "error":
            _check_error_object(protocol, json.loads(data))
            return True
        assert name == "message_stop", events[-3:]
        return False
    if protocol == "openai-responses":
        last = json.loads(data)
        if last.get("type") in ("error", "response.failed"):
            return True
        assert last["type"] == "response.completed", last
        return False
    if data == "[DONE]":
        return False
    assert "error" in json.loads(data), data
    return True


# -- the test -----------------------------------------------------------------------------------------------------


@pytest.fixture
def rig() -> Iterator[Rig]:
    with (
        FakeAnthropic() as anthropic,
        FakeOpenAI() as openai,
        FakeOpenAIAuth() as auth,
        FakeCodex(auth=auth) as codex,
    ):

        def quick(settings: Settings) -> None:
            settings.routing.max_retries = MAX_RETRIES
            settings.routing.retry_base_delay_seconds = 0.01
            settings.gateway.first_byte_timeout_seconds = FIRST_BYTE
            settings.gateway.read_timeout_seconds = READ
            settings.gateway.request_deadline_seconds = DEADLINE
            settings.chatgpt.usage_poll_minutes = 120

        with chatgpt_gateway(
            auth, codex, anthropic_url=anthropic.url, openai_url=openai.url, settings=quick
        ) as gw:
            yield Rig(gw, {"anthropic": anthropic, "openai": openai, "codex": codex}, auth)


@pytest.mark.parametrize("pool", ["with-backup", "alone"])
@pytest.mark.parametrize("stream", [True, False], ids=["stream", "json"])
@pytest.mark.parametrize(
    ("route", "kind"), COMBOS, ids=[f"{r.path.rsplit('/', 1)[-1]}-{k}" for r, k in COMBOS]
)
def test_fault_matrix(rig: Rig, matrix: list[Row], route: Route, kind: str, stream: bool, pool: str) -> None:
    failures: list[str] = []
    alone = pool == "alone"
    for scenario in SCENARIOS:
        case = Case(route, kind, stream)
        fault = scenario.fault(case)
        expect = scenario.alone(case) if alone else scenario.expect(case)
        primary, backup = rig.accounts(case, fault, alone=alone)
        headers = rig.gw.headers("anthropic" if route.protocol == "anthropic" else "openai")
        started = time.monotonic()
        try:
            response = httpx.post(
                f"{rig.gw.url}{route.path}",
                json={**route.body, "stream": stream},
                headers=headers,
                timeout=BOUND + 10,
            )
            seconds = time.monotonic() - started
            served = {primary.id: "primary", backup.id: "backup"}.get(
                response.headers.get("x-headway-account", "")
            )
            ended_with_error = _check_answer(case, response)
            attempts = (rig.attempts(case, primary), rig.attempts(case, backup))
            outcome = f"{response.status_code} {served or 'headway'}" + (
                " +error event" if ended_with_error else ""
            )
            problems = []
            if seconds > BOUND:
                problems.append(f"took {seconds:.2f}s > {BOUND}s")
            if (served, response.status_code) != (expect.served_by, expect.status):
                problems.append(f"expected {expect.status} from {expect.served_by}")
            if ended_with_error != expect.ends_with_error:
                problems.append(f"expected ends_with_error={expect.ends_with_error}")
            expected_backup = 1 if expect.served_by == "backup" else 0
            if attempts != (expect.primary_attempts, expected_backup):
                problems.append(f"expected attempts {expect.primary_attempts}+{expected_backup}")
        except Exception as exc:  # a malformed answer: record it in the matrix, fail below
            seconds = time.monotonic() - started
            outcome, attempts, problems = f"malformed: {type(exc).__name__}", (-1, -1), [repr(exc)[:200]]
        route_name = f"{route.path}{' stream' if stream else ''}{' (alone)' if alone else ''}"
        matrix.append(
            Row(
                scenario.name,
                route_name,
                kind,
                outcome,
                f"{attempts[0]}+{attempts[1]}",
                seconds,
                not problems,
            )
        )
        if problems:
            failures.append(
                f"{scenario.name}: {outcome}, attempts {attempts[0]}+{attempts[1]}: {'; '.join(problems)}"
            )
    assert not failures, "\n".join(failures)
