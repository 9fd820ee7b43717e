"""Upstream sockets notice a peer that went silent for good: a connection the network lost fails in seconds.

When the network under a connection changes (a VPN switched on, another Wi-Fi, a router that lost its state), what
Headway sends on it goes nowhere and nothing answers: no reset, no close. Without help a request on such a kept
connection waits out its read timeout (two minutes for a stream's first byte, ten for a plain answer), and a stream
it cut waits ten minutes between two events. The kernel can tell sooner, with two options every upstream socket
gets (:data:`LIVENESS`):

- ``TCP_USER_TIMEOUT`` (Linux): bytes of ours unacknowledged for 15 s end the connection (ETIMEDOUT). The callers
  treat that before an answer as a connection lost before the upstream had the whole request.
- TCP keep-alive: after 30 s without a byte either way the kernel sends an empty probe, which a live peer's kernel
  acknowledges whatever the model is doing; unanswered, the connection ends (with the user timeout: 15 s later;
  elsewhere after 3 probes 10 s apart). A stream cut by the network errors out within a minute, and the agent
  hears it in its own protocol. The probes also keep a NAT's or firewall's state for an idle kept connection alive.

Nothing else is affected: a model that thinks for minutes keeps its connection acknowledged. Where an option does
not exist (``TCP_USER_TIMEOUT`` outside Linux; macOS's equivalent, ``TCP_RXT_CONNDROPTIME``, is not named by
Python), it is not set.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass

import httpx

__all__ = ["LIVENESS", "Liveness", "keep_checked"]

log = logging.getLogger("headway.upstream")


@dataclass(frozen=True)
class Liveness:
    """How soon a connection whose peer went silent for good is given up."""

    unacked: float = 15.0  # seconds our bytes may stay unacknowledged (TCP_USER_TIMEOUT)
    idle: float = 30.0  # seconds of silence before the first keep-alive probe
    interval: float = 10.0  # seconds between probes
    probes: int = 3  # unanswered probes before the connection is given up

    def apply(self, sock: socket.socket | None) -> None:
        """Set these on ``sock`` where the system has the options (never fails: a request is worth more)."""
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        options = [
            (socket.SOL_SOCKET, getattr(socket, "SO_KEEPALIVE", None), 1),
            # TCP_KEEPIDLE on Linux and Windows; macOS calls the same option TCP_KEEPALIVE
            (
                socket.IPPROTO_TCP,
                getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", None)),
                self.idle,
            ),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), self.interval),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), self.probes),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), self.unacked * 1000),
        ]
        for level, option, value in options:
            if option is None:
                continue
            try:
                sock.setsockopt(level, option, max(1, round(value)))
            except OSError as exc:
                log.debug("cannot set socket option %s: %s", option, exc)


#: what every upstream socket gets (the upstream client's, httpx's, the upstream and relay WebSockets')
LIVENESS = Liveness()


async def keep_checked(response: httpx.Response) -> None:
    """An httpx response hook: the connection the answer came on gets :data:`LIVENESS` before the pool keeps it.

    httpx makes its sockets itself and has no option for this (httpcore's ``socket_options`` would mean building the
    transport by hand, and losing httpx's own reading of the proxy variables), so the options are set on the first
    answer instead; a kept connection — the one a lost network can leave dead — has them from its second use on."""
    stream = response.extensions.get("network_stream")
    if stream is not None:
        LIVENESS.apply(stream.get_extra_info("socket"))
