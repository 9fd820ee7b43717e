"""Upstream bytes per turn and time to first delta over a 30-turn agent session: HTTP vs the upstream WebSocket.

    .venv/bin/python -m benchmarks.websocket            # 30 turns per mode
    .venv/bin/python -m benchmarks.websocket --turns 10 # quicker
    .venv/bin/python -m benchmarks.websocket --json     # only the JSON line

Three modes, each a fresh `headway serve` (OpenAI API-key account) in front of the same fake OpenAI endpoint
(tests/fakes, WebSocket mode on), the same scripted session (a coding agent: ~12 KB of instructions, 10 tools, every
turn a tool result of ~1.5 KB and a tool call back, the last turn a text answer):

| mode | agent → Headway | Headway → upstream |
|---|---|---|
| `http` | HTTP, the whole conversation every turn (as the Codex CLI over HTTP) | HTTP (`upstream_websocket.openai` off) |
| `http_ws` | the same HTTP agent | one WebSocket for the session: only what is new |
| `ws_ws` | one WebSocket, `previous_response_id` + the new items | the same |

Upstream bytes per turn: what the fake received for the turn — HTTP: request line, headers and body (uncompressed,
as Headway sends them); WebSocket: the frame as it travelled (header, mask, permessage-deflate — Headway offers it,
the service and the fake agree to it), and the upgrade request once (on turn 1). `payload` figures are the frames
before compression: each frame repeats the instructions and tools (the service does not carry them over with
previous_response_id), which the deflate window shared across a connection's frames reduces to back-references. Time to first delta: the
agent's request written → its first `response.output_text.delta` / `…arguments.delta` event, on the agent's side
(the fakes are threads, so absolute figures carry their overhead; compare the modes, not the numbers).

Aim (issue 14): on turns ≥ 2, `http_ws` and `ws_ws` send ≤ 10 % of `http`'s upstream bytes. Reported, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.processes import Server, start_gateway
from proxy.relay.websocket import WebSocket
from tests.fakes import Behavior, FakeOpenAI, RecordedRequest, ToolCall

__all__ = ["main", "run"]

_TOOL_CALL = Behavior(tool_call=ToolCall("read_file", {"path": "src/module.py"}), chunks=4)


_WORDS = (
    "agent repository change test module function value request session account error event stream handler "
    "config file path line token cache input output result model tool call context window limit retry account "
    "the a of to and in is for on with as by at from that this be are it or an not but"
).split()


def _text(rng: random.Random, size: int) -> str:
    """``size`` characters of word salad: compresses about like prose and code do (3-4x), unlike repeated text."""
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS) + (f"_{rng.randrange(1000)}" if rng.random() < 0.2 else "")
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def _instructions() -> str:
    return _text(random.Random(1), 12_000)


def _tools() -> list[dict[str, Any]]:
    rng = random.Random(2)
    return [
        {
            "type": "function",
            "name": f"tool_{i}",
            "description": _text(rng, 300),
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                "required": ["path"],
            },
        }
        for i in range(10)
    ]


def _tool_result(turn: int) -> str:
    return _text(random.Random(1000 + turn), 1_500)


def _http_bytes(request: RecordedRequest) -> int:
    head = len(f"{request.method} {request.path} HTTP/1.1\r\n") + 2
    head += sum(len(k) + len(v) + 4 for k, v in request.headers.items())
    return head + len(request.body)


class _Session:
    """One agent session against one gateway, measured on the agent's side."""

    def __init__(self, server: Server, session_id: str) -> None:
        self.server = server
        self.session_id = session_id
        self.instructions = _instructions()
        self.tools = _tools()
        self.ttfd_ms: list[float] = []

    def _body(self, items: list[Any], extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": "gpt-5",
            "instructions": self.instructions,
            "tools": self.tools,
            "input": items,
            "store": False,
            **extra,
        }

    async def http(self, client: httpx.AsyncClient, turns: int) -> None:
        conversation: list[Any] = [_user("Refactor the event handlers.")]
        headers = {"authorization": f"Bearer {self.server.key}", "session-id": self.session_id}
        for turn in range(1, turns + 1):
            body = self._body(conversation, {"stream": True})
            started = time.perf_counter()
            first: float | None = None
            output: list[Any] = []
            async with client.stream(
                "POST", self.server.url + "/v1/responses", json=body, headers=headers
            ) as answer:
                answer.raise_for_status()
                async for line in answer.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    event = json.loads(line[6:])
                    if first is None and str(event.get("type", "")).endswith(".delta"):
                        first = time.perf_counter()
                    if event.get("type") == "response.output_item.done":
                        output.append(event["item"])
            self.ttfd_ms.append(((first or time.perf_counter()) - started) * 1000)
            conversation = [*conversation, *output, *_next_input(output, turn)]

    async def websocket(self, client: httpx.AsyncClient, turns: int) -> None:
        headers = {"authorization": f"Bearer {self.server.key}", "session-id": self.session_id}
        ws = await WebSocket.connect(client, self.server.url + "/v1/responses", headers)
        previous: str | None = None
        new: list[Any] = [_user("Refactor the event handlers.")]
        try:
            for turn in range(1, turns + 1):
                extra = {"previous_response_id": previous} if previous else {}
                frame = {"type": "response.create", **self._body(new, extra)}
                started = time.perf_counter()
                first: float | None = None
                output: list[Any] = []
                await ws.send_text(json.dumps(frame))
                while True:
                    event = json.loads(await ws.recv(timeout=60))
                    kind = event.get("type")
                    if first is None and str(kind).endswith(".delta"):
                        first = time.perf_counter()
                    if kind == "response.output_item.done":
                        output.append(event["item"])
                    if kind == "response.completed":
                        previous = event["response"]["id"]
                        break
                    if kind in ("error", "response.failed"):
                        raise RuntimeError(f"turn {turn} failed: {event}")
                self.ttfd_ms.append(((first or time.perf_counter()) - started) * 1000)
                new = _next_input(output, turn)
        finally:
            await ws.close()


def _user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def _next_input(output: list[Any], turn: int) -> list[Any]:
    calls = [item for item in output if item.get("type") == "function_call"]
    if calls:
        return [
            {"type": "function_call_output", "call_id": calls[0]["call_id"], "output": _tool_result(turn)}
        ]
    return [_user(f"Now the next file, please ({turn}).")]


def _mode(workdir: Path, fake: FakeOpenAI, mode: str, turns: int) -> dict[str, Any]:
    settings = {"upstream_websocket": {"openai": mode != "http"}}
    server = start_gateway(workdir, fake.url, provider="openai", settings=settings)
    fake.reset()
    before_requests = len(fake.requests)
    before_turns = len(fake.sockets.turns)
    before_connections = len(fake.sockets.connections)
    for _ in range(turns - 1):
        fake.enqueue(_TOOL_CALL)
    fake.enqueue(Behavior(text="Done: the handlers are refactored."))
    session = _Session(server, f"bench-{mode}")
    try:

        async def go() -> None:
            async with httpx.AsyncClient(timeout=60) as client:
                if mode == "ws_ws":
                    await session.websocket(client, turns)
                else:
                    await session.http(client, turns)

        asyncio.run(go())
    finally:
        server.stop()
    per_turn: list[int]
    http_requests = [r for r in fake.requests[before_requests:] if r.path == "/v1/responses"]
    socket_turns = fake.sockets.turns[before_turns:]
    if mode == "http":
        per_turn = [_http_bytes(r) for r in http_requests]
    else:
        per_turn = [t.wire for t in socket_turns]
        connections = fake.sockets.connections[before_connections:]
        upgrade = sum(len(k) + len(v) + 4 for c in connections for k, v in c.headers.items()) + 40
        if per_turn:
            per_turn[0] += upgrade
        per_turn += [_http_bytes(r) for r in http_requests]  # turns that fell back to HTTP, if any
    return {
        "turns": len(per_turn),
        "upstream_bytes_per_turn": per_turn,
        "turn_1_bytes": per_turn[0] if per_turn else 0,
        "later_turns_bytes_mean": statistics.mean(per_turn[1:]) if len(per_turn) > 1 else 0,
        "later_turns_bytes_total": sum(per_turn[1:]),
        "over_http_turns": len(http_requests),
        "later_turns_payload_mean": statistics.mean(t.size for t in socket_turns[1:])
        if len(socket_turns) > 1
        else None,
        "ttfd_ms_p50": statistics.median(session.ttfd_ms) if session.ttfd_ms else None,
        "ttfd_ms_later_p50": statistics.median(session.ttfd_ms[1:]) if len(session.ttfd_ms) > 1 else None,
    }


def run(turns: int = 30) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="headway-bench-ws-") as tmp, FakeOpenAI() as fake:
        fake.sockets.enabled = True
        results = {mode: _mode(Path(tmp), fake, mode, turns) for mode in ("http", "http_ws", "ws_ws")}
    base = results["http"]["later_turns_bytes_total"] or 1
    for mode in ("http_ws", "ws_ws"):
        share = results[mode]["later_turns_bytes_total"] / base
        results[mode]["later_turns_share_of_http"] = round(share, 4)
        results[mode]["aim_le_10_percent"] = "ok" if share <= 0.10 else "MISS"
    return {"turns": turns, "modes": results}


def _table(report: dict[str, Any]) -> str:
    lines = [
        f"{report['turns']}-turn session, upstream bytes and time to first delta",
        f"{'mode':<9} {'turn 1 B':>10} {'turns>=2 mean B':>16} {'turns>=2 total B':>17} {'vs http':>8} "
        f"{'ttfd p50 ms':>12} {'aim':>5}",
    ]
    for mode, r in report["modes"].items():
        share = r.get("later_turns_share_of_http")
        lines.append(
            f"{mode:<9} {r['turn_1_bytes']:>10} {r['later_turns_bytes_mean']:>16.0f} "
            f"{r['later_turns_bytes_total']:>17} {'' if share is None else f'{share:.1%}':>8} "
            f"{r['ttfd_ms_later_p50'] or 0:>12.1f} {r.get('aim_le_10_percent', ''):>5}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.websocket", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    args = parser.parse_args(argv)
    report = run(args.turns)
    if not args.json:
        print(_table(report))
    compact = {
        "turns": report["turns"],
        "modes": {
            mode: {k: v for k, v in r.items() if k != "upstream_bytes_per_turn"}
            for mode, r in report["modes"].items()
        },
    }
    print(json.dumps(compact))
    return 0


if __name__ == "__main__":
    sys.exit(main())
