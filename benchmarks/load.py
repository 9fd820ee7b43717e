"""The load driver every measurement shares: where requests go, what they carry, and workers that send them.

Each worker has its own keep-alive :class:`~benchmarks.client.Connection`. Every loop is bounded twice: by a count
(requests per worker) and by a time budget, after which workers stop starting requests; each request has its own
timeout as well.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .client import Connection, HTTPError, Response
from .processes import Server

__all__ = ["PATH", "REQUEST_TIMEOUT", "Run", "Target", "body_for", "warm", "workers"]

PATH = "/v1/messages"
REQUEST_TIMEOUT = 30.0


@dataclass(frozen=True)
class Target:
    """Where requests go, and with which headers: the mock itself, or the gateway with its access key."""

    name: str
    host: str
    port: int
    headers: dict[str, str]

    @classmethod
    def of(cls, name: str, server: Server, key: str) -> Target:
        headers = {
            "x-api-key": key,
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": "headway-benchmark/1",
        }
        return cls(name, server.host, server.port, headers)


def body_for(stream: bool, bench: dict[str, Any] | None = None) -> bytes:
    """A Messages API request; ``bench`` tells the mock how to answer. It goes in a ``bench`` field (Headway
    forwards the body unchanged) and again at the end of the text, for a peer that rebuilds requests."""
    text = "Reply with a short greeting."
    if bench:
        text += " bench=" + json.dumps(bench, separators=(",", ":"))
    request: dict[str, Any] = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    }
    if bench:
        request["bench"] = bench
    return json.dumps(request).encode()


@dataclass
class Run:
    responses: list[Response]
    errors: int
    completed_at: list[int]


async def workers(
    target: Target,
    concurrency: int,
    per_worker: int,
    budget: float,
    body: bytes,
    *,
    think_ms: float = 0.0,
    stagger_s: float = 0.0,
    seed: int = 1,
    skip: int = 0,
    on_first_body: Callable[[], None] | None = None,
    on_done: Callable[[], None] | None = None,
) -> Run:
    """``concurrency`` workers, each on its own keep-alive connection, each sending up to ``per_worker`` requests.

    Each worker's first ``skip`` successful responses (new connections, cold pools) are left out of the result.
    """
    deadline = time.monotonic() + budget
    run = Run([], 0, [])

    async def worker(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        connection = Connection(target.host, target.port, target.headers)
        try:
            if stagger_s:
                await asyncio.sleep(stagger_s * index / concurrency)
            for n in range(per_worker):
                if time.monotonic() >= deadline:
                    break
                try:
                    response = await connection.request("POST", PATH, body, REQUEST_TIMEOUT, on_first_body)
                except (HTTPError, OSError, TimeoutError):
                    run.errors += 1
                    await asyncio.sleep(0.01)  # a refusing server must not turn this into a busy loop
                    continue
                finally:
                    if on_done is not None:
                        on_done()
                if response.status != 200:
                    run.errors += 1
                    continue
                if n >= skip:
                    run.responses.append(response)
                    run.completed_at.append(response.done_ns)
                if think_ms:
                    await asyncio.sleep(rng.uniform(0, think_ms) / 1000)
        finally:
            connection.close()

    async with asyncio.timeout(budget + REQUEST_TIMEOUT + 5), asyncio.TaskGroup() as group:
        for index in range(concurrency):
            group.create_task(worker(index), name=f"bench-{target.name}-worker-{index}")
    return run


async def warm(target: Target) -> int:
    """A few streamed and non-streamed requests on two connections (pools, caches, first-use imports); failures."""
    errors = 0
    for stream in (True, False):
        body = body_for(stream, {"events": 3, "gap_ms": 0} if stream else None)
        errors += (await workers(target, 2, 5, 10.0, body)).errors
    return errors
