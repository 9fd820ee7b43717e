"""Binding the gateway beyond loopback (a team deployment): refused unless asked for explicitly.

``headway serve --host 0.0.0.0`` (or ``gateway.host`` set to a non-loopback address) needs ``--allow-remote`` (or
``gateway.allow_remote``). Then the access key is always required (:class:`proxy.gateway.app.LocalGuard`), Host
headers must be loopback or listed in ``gateway.allowed_hosts``, and the gateway speaks plain HTTP: TLS belongs
to a reverse proxy in front of it.
"""

from __future__ import annotations

from proxy.gateway.app import is_loopback

__all__ = ["REMOTE_WARNING", "RemoteNotAllowed", "check_bind", "shared_deployment"]

REMOTE_WARNING = (
    "the gateway listens on {host}, beyond this machine: every request needs an access key, Host headers must be "
    "listed in gateway.allowed_hosts, and traffic is plain HTTP — put a reverse proxy with TLS in front of it"
)


class RemoteNotAllowed(Exception):
    """A non-loopback bind address without --allow-remote / gateway.allow_remote."""

    def __init__(self, host: str) -> None:
        super().__init__(
            f"refusing to listen on {host}: that serves the gateway beyond this machine. If that is what you "
            "want (a team gateway), add --allow-remote (or set gateway.allow_remote) and put a reverse proxy "
            "with TLS in front of it"
        )
        self.host = host


def check_bind(host: str, allow_remote: bool) -> None:
    if not is_loopback(host) and not allow_remote:
        raise RemoteNotAllowed(host)


def shared_deployment(host: str, shared_state: bool) -> bool:
    """More than one person may use this gateway: it shares state with replicas, or listens beyond loopback."""
    return shared_state or not is_loopback(host)
