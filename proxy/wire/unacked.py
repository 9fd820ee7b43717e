"""Upstream sockets give up on bytes nothing acknowledges: a connection the network lost fails in seconds.

When the network under a kept connection changes (a VPN switched on, another Wi-Fi, a router that lost its state),
what Headway sends on it goes nowhere and nothing answers: no reset, no close. Without help the request then waits
out its read timeout — two minutes for a stream, ten for a plain answer. Linux's ``TCP_USER_TIMEOUT`` ends such a
connection once sent bytes stay unacknowledged for :data:`UNACKED_TIMEOUT`; the read then fails with ETIMEDOUT,
which the callers treat as a connection lost before the upstream had the request.

Nothing else is affected: while a model thinks or streams, no bytes of ours are outstanding, however long it takes.
macOS (``TCP_RXT_CONNDROPTIME``) and Windows (``TCP_MAXRT``) have options of the same kind that Python does not
name; they are not set, and the read timeout still applies there.
"""

from __future__ import annotations

import logging
import socket

__all__ = ["UNACKED_TIMEOUT", "give_up_unacked"]

log = logging.getLogger("headway.upstream")

#: how long bytes sent upstream may stay unacknowledged before the connection is given up
UNACKED_TIMEOUT = 15.0
_TCP_USER_TIMEOUT: int | None = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only


def give_up_unacked(sock: socket.socket | None, seconds: float = UNACKED_TIMEOUT) -> None:
    """Set ``sock`` to end its connection after ``seconds`` of unacknowledged bytes, where the system allows it."""
    if _TCP_USER_TIMEOUT is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, round(seconds * 1000))
    except OSError as exc:  # never worth failing a request for
        log.debug("cannot set TCP_USER_TIMEOUT: %s", exc)
