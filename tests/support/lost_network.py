"""Run as ``unshare -n python -m tests.support.lost_network SCENARIO``: the upstream client loses a connection to the
network itself, in a network namespace of its own (``tests/proxy/wire/test_lost_network.py``).

Firewall rules (iptables, in this namespace only) drop every packet of chosen connections: what a VPN switched on,
another Wi-Fi or a router that lost its state does to them. Nothing answers, no reset comes.

- ``kept``: after two requests at once, the client's packets on the two connections the pool kept are dropped;
  then two more requests go out.
- ``stream``: a streamed answer stops after its first event (the upstream would go on later), and every packet of
  its connection, both ways, is dropped from then on; the client reads on.

Prints one JSON object: each request's status (or error), its time, and what the upstream saw. ``--quick`` gives
the client liveness settings of a second each (the default: Headway's own).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import time
from typing import Any

from proxy.wire.liveness import LIVENESS, Liveness
from proxy.wire.upstream_client import Timeouts, UpstreamClient
from tests.fakes import Behavior, FakeAnthropic
from tests.support.forgetful_relay import ForgetfulRelay

BODY = b'{"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}'
STREAM = BODY[:-1] + b', "stream": true}'
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}
QUICK = Liveness(unacked=1.0, idle=1.0, interval=1.0, probes=2)


async def _request(
    client: UpstreamClient, url: str, body: bytes = BODY, seen: asyncio.Event | None = None
) -> dict[str, Any]:
    """One request; ``seen`` is set once two events of its answer arrived."""
    started = time.monotonic()
    events = 0
    try:
        response = await client.send("POST", f"{url}/v1/messages", HEADERS, body)
        try:
            async for chunk in response.aiter_bytes():
                events += chunk.count(b"event: ")
                if seen is not None and events >= 2:
                    seen.set()
        finally:
            await response.aclose()
        outcome: dict[str, Any] = {"status": response.status_code}
    except Exception as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    outcome["seconds"] = round(time.monotonic() - started, 2)
    outcome["events"] = events
    return outcome


def _drop(*rule: str) -> None:
    subprocess.run(["iptables", "-A", "OUTPUT", "-p", "tcp", *rule, "-j", "DROP"], check=True)


async def _kept(client: UpstreamClient, fake: FakeAnthropic, relay: ForgetfulRelay) -> list[dict[str, Any]]:
    # two at once: two connections kept in the pool, both lost below
    results = list(await asyncio.gather(_request(client, relay.url), _request(client, relay.url)))
    for kept in relay.peers:
        await asyncio.to_thread(_drop, "--sport", str(kept))
    results.append(await _request(client, relay.url))
    results.append(await _request(client, relay.url))
    return results


async def _stream(client: UpstreamClient, fake: FakeAnthropic, relay: ForgetfulRelay) -> list[dict[str, Any]]:
    fake.enqueue(Behavior(hang_after_events=2))  # message_start, content_block_start, then silence

    seen = asyncio.Event()

    async def cut_once_the_first_events_are_through() -> None:
        await seen.wait()
        port = str(relay.peers[0])
        await asyncio.to_thread(_drop, "--sport", port)
        await asyncio.to_thread(_drop, "--dport", port)

    cut = asyncio.ensure_future(cut_once_the_first_events_are_through())
    result = await _request(client, relay.url, STREAM, seen)
    cut.cancel()  # (done already, unless the stream failed before its events)
    return [result]


async def _run(scenario: str, quick: bool, read: float) -> dict[str, Any]:
    log = logging.getLogger("headway.upstream")
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    with FakeAnthropic() as fake, ForgetfulRelay("127.0.0.1", fake.port) as relay:
        client = UpstreamClient(
            lambda: Timeouts(connect=5.0, read=read), environ={}, liveness=QUICK if quick else LIVENESS
        )
        try:
            results = await (_kept if scenario == "kept" else _stream)(client, fake, relay)
        finally:
            await client.aclose()
        return {
            "results": results,
            "connections": relay.connections,
            "upstream_requests": len(fake.requests),
            "log": lines,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=["kept", "stream"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--read", type=float, default=8.0)
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    print(json.dumps(asyncio.run(_run(args.scenario, args.quick, args.read))))


if __name__ == "__main__":
    main()
