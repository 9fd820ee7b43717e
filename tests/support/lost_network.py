"""Run as ``unshare -n python -m tests.support.lost_network``: the upstream client loses a kept connection to the
network itself, in a network namespace of its own (``tests/proxy/wire/test_lost_network.py``).

After two requests at once, firewall rules (iptables, in this namespace only) drop every packet the client sends on
the two connections the pool kept: what a VPN switched on, another Wi-Fi or a router that lost its state does to it. Nothing
answers, no reset comes, the request's bytes are never acknowledged. Then two more requests go out. Prints one JSON
object: each request's status (or error) and time, and how many connections the upstream saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import time
from typing import Any

from proxy.wire.upstream_client import Timeouts, UpstreamClient
from tests.fakes import FakeAnthropic
from tests.support.forgetful_relay import ForgetfulRelay

BODY = b'{"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}'
HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01", "content-type": "application/json"}


async def _request(client: UpstreamClient, url: str) -> dict[str, Any]:
    started = time.monotonic()
    try:
        response = await client.send("POST", f"{url}/v1/messages", HEADERS, BODY)
        await response.aread()
        await response.aclose()
        outcome: dict[str, Any] = {"status": response.status_code}
    except Exception as exc:
        outcome = {"error": f"{type(exc).__name__}: {exc}"}
    outcome["seconds"] = round(time.monotonic() - started, 2)
    return outcome


async def _run(unacked: float | None, read: float) -> dict[str, Any]:
    log = logging.getLogger("headway.upstream")
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    options = {} if unacked is None else {"unacked_timeout": unacked}
    with FakeAnthropic() as fake, ForgetfulRelay("127.0.0.1", fake.port) as relay:
        client = UpstreamClient(lambda: Timeouts(connect=5.0, read=read), environ={}, **options)
        try:
            # two at once: two connections kept in the pool, both lost below
            results = list(await asyncio.gather(_request(client, relay.url), _request(client, relay.url)))
            for kept in relay.peers:
                await asyncio.to_thread(_drop_packets_from, kept)
            results.append(await _request(client, relay.url))
            results.append(await _request(client, relay.url))
        finally:
            await client.aclose()
        return {
            "results": results,
            "connections": relay.connections,
            "upstream_requests": len(fake.requests),
            "log": lines,
        }


def _drop_packets_from(port: int) -> None:
    subprocess.run(["iptables", "-A", "OUTPUT", "-p", "tcp", "--sport", str(port), "-j", "DROP"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--unacked", type=float, default=None)
    parser.add_argument("--read", type=float, default=8.0)
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    print(json.dumps(asyncio.run(_run(args.unacked, args.read))))


if __name__ == "__main__":
    main()
