"""The hot path's HTTP client: every agent request goes upstream through it (logins, polling and Cloudflare use httpx).

It is aiohttp's client (connection pool, HTTP/1.1 keep-alive, TLS, its C parser) with answers handed back as
:class:`httpx.Response` objects whose body streams from aiohttp, and aiohttp's exceptions translated into httpx's.
So the exchange, the stream readers and the features that open their own transport (relay, upstream WebSocket) keep
one response type and one exception vocabulary, whatever carried the bytes.

Why not httpx here: httpcore's pool checks every idle keep-alive connection on every request (``getpeername`` and a
``poll`` each, twice), so its cost per request grows with the pool; with 20 busy connections httpx cost 1.5 ms of CPU
per request against 0.1 ms for aiohttp's client on the same load (``python -m benchmarks clients``; the figures and
the other candidates are in docs/architecture.md).

What it does the way httpx did, so that nothing changes for the user:
- proxies from the environment, or the system's settings where it names none (:mod:`proxy.wire.proxies`; HTTP
  proxies only — a request whose proxy is another kind fails with a clear :class:`httpx.ProxyError`). aiohttp's own
  ``trust_env`` is not used: it would also send credentials from ``~/.netrc``.
- certificates: httpx's default context (certifi, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), the very one the
  engine's httpx client uses when it hands it in (:mod:`proxy.wire.tls`);
- timeouts: connect and per-read, from the settings at each request; waiting for a free connection is bounded too;
- no cookies (one client serves every account: an upstream's cookies must never link them), no redirects followed,
  ``Accept-Encoding: gzip, deflate`` (the answer is decoded by httpx's decoders as before).

One thing it does that neither httpx nor aiohttp does for a POST: a request whose connection is *reset* before any
of the answer arrived is sent once more, on a new connection. That is what a kept-alive connection meets after the
laptop slept or the network changed: the upstream forgot it long ago (its kernel answers the request's bytes with a
reset), the pool cannot know (its idle clock is monotonic, which stands still in sleep), and the first request after
waking failed with "Connection reset by peer" — or went to the next account. The request body is buffered, and the
gateway already replays it on another account after the same error; a model request changes nothing upstream but
its cost. Not sent again: a connection the upstream *closed* without answering (it may have read the request: the
next account is tried, as before), a failure to connect, a timeout (the upstream may be working on it), anything
after the answer began.

Where the forgetting side says nothing at all (a router or firewall that drops packets it has no state for), a reset
never comes and the request would wait out its read timeout on every kept connection it tried. So the pool does not
outlive a sleep: when the machine slept since the last request (:class:`~proxy.wire.sleep_watch.SleepWatch`), the
next one opens a new pool; the old one serves the answers still open on it and closes with the last of them.

The network can lose a kept connection without a sleep too (a VPN switched on, another Wi-Fi): the request's bytes
go out and are never acknowledged. Every upstream socket gives up after 15 s of that, where the system allows it
(:mod:`proxy.wire.liveness`, which also has the kernel probe a silent connection), so such a request fails with
"Connection timed out" instead of waiting out the read timeout. That failure means the upstream never received the
whole request, so it is sent once more on a new connection like a reset, and the pool is retired as after a sleep:
its other kept connections went over the same lost network.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import httpx

from proxy.durations import format_duration
from proxy.wire.liveness import LIVENESS, Liveness
from proxy.wire.proxies import Proxies
from proxy.wire.sleep_watch import SleepWatch
from proxy.wire.tls import client_context

__all__ = ["Timeouts", "UpstreamClient", "translate"]

log = logging.getLogger("headway.upstream")

_ACCEPT_ENCODING = "gzip, deflate"  # what httpx's decoders read without optional packages
_POOL_WAIT_SECONDS = 30.0
#: A connection reset, not closed: what the upstream's kernel answers to bytes on a connection it no longer knows
_RESET = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


@dataclass(frozen=True)
class Timeouts:
    connect: float
    read: float


class _Pool:
    """An aiohttp session and how many of its answers are still open: a retired pool (the machine slept, or the
    network lost one of its connections) takes no new requests and closes when its last answer does."""

    __slots__ = ("open", "retired", "session")

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.open = 0
        self.retired = False


class UpstreamClient:
    """One pool of keep-alive connections to every upstream; :meth:`send` returns a streaming response."""

    def __init__(
        self,
        timeouts: Callable[[], Timeouts],
        *,
        max_connections: int = 200,
        keepalive_expiry: float = 60.0,
        environ: Mapping[str, str] | None = None,
        system_proxies: Callable[[], Mapping[str, str]] | None = None,
        tls: ssl.SSLContext | None = None,
        sleep_watch: SleepWatch | None = None,
        liveness: Liveness = LIVENESS,
    ) -> None:
        self._timeouts = timeouts
        self._tls = tls
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._proxies = Proxies(os.environ if environ is None else environ, system_proxies)
        self._pool: _Pool | None = None
        self._fresh: _Pool | None = None  # a new connection each time: for sending again
        self._retired: set[_Pool] = set()  # pools from before a sleep, until their last answer closes
        self._closing: set[asyncio.Task[None]] = set()
        self.sleep_watch = SleepWatch() if sleep_watch is None else sleep_watch
        self._liveness = liveness
        self._client_timeout: tuple[Timeouts, aiohttp.ClientTimeout] | None = None

    def _open_session(self, *, pooled: bool = True) -> aiohttp.ClientSession:
        if self._tls is None:
            self._tls = client_context()
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            ssl=self._tls,
            socket_factory=self._socket,
            **({"keepalive_timeout": self._keepalive_expiry} if pooled else {"force_close": True}),
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,  # httpx.Response decodes, as it did when httpx carried the bytes
            trust_env=False,
            skip_auto_headers=("User-Agent",),  # the adapters always set Headway's own
        )

    def _socket(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """A socket for an upstream (or the proxy to it) that notices a peer gone silent for good."""
        family, kind, proto = addr_info[:3]
        sock = socket.socket(family=family, type=kind, proto=proto)
        self._liveness.apply(sock)
        return sock

    def _timeout(self) -> aiohttp.ClientTimeout:
        wanted = self._timeouts()
        cached = self._client_timeout
        if cached is None or cached[0] != wanted:
            cached = (
                wanted,
                aiohttp.ClientTimeout(
                    total=None,
                    # `connect` bounds waiting for a free connection and then connecting
                    connect=wanted.connect + _POOL_WAIT_SECONDS,
                    sock_connect=wanted.connect,
                    sock_read=wanted.read,
                ),
            )
            self._client_timeout = cached
        return cached[1]

    def proxy_for(self, url: str) -> str | None:
        """The proxy a request to ``url`` goes through (None: direct)."""
        return self._proxies.for_url(url)

    async def send(self, method: str, url: str, headers: Mapping[str, str], content: bytes) -> httpx.Response:
        """Send the request; the answer's head is in, its body streams (close it with ``aclose``).

        Raises httpx's exceptions (:func:`translate`): ``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
        ``ProxyError``, ``RemoteProtocolError``, ``TransportError``.
        """
        slept = self.sleep_watch.slept()
        if slept and self._pool is not None:
            log.info(
                "the machine slept (about %s): new requests go on new connections, not the ones kept from before",
                format_duration(slept),
            )
            self._retire(self._pool)
        if self._pool is None:
            self._pool = _Pool(self._open_session())
        proxy = self.proxy_for(url)
        if proxy is not None and not proxy.startswith(("http://", "https://")):
            raise httpx.ProxyError(
                f"the proxy {urlsplit(proxy).scheme}:// from the environment is not supported for model requests "
                "(use an http:// proxy, or NO_PROXY for this host)"
            )
        if "accept-encoding" not in headers:
            headers = {**headers, "accept-encoding": _ACCEPT_ENCODING}
        pool = self._pool
        while True:
            try:
                answer = await pool.session.request(
                    method,
                    url,
                    headers=headers,
                    data=content,
                    allow_redirects=False,
                    timeout=self._timeout(),
                    proxy=proxy,
                )
                break
            except aiohttp.ClientOSError as exc:
                # (a ClientConnectorError is a ClientOSError too: the connection was never made, nothing to redo)
                lost = exc.errno == errno.ETIMEDOUT
                if (
                    pool is self._fresh
                    or isinstance(exc, aiohttp.ClientConnectorError)
                    or not (lost or exc.errno in _RESET)
                ):
                    raise translate(exc, connecting=True) from exc
                if lost:
                    log.info(
                        "the network lost a kept-alive connection to %s (%s: nothing acknowledged the request); "
                        "sending it again on a new connection, and not using the other kept ones",
                        urlsplit(url).netloc,
                        exc,
                    )
                    if pool is self._pool:  # (not when a sleep retired it meanwhile)
                        self._retire(pool)
                else:
                    log.info(
                        "the upstream %s closed a kept-alive connection before answering (%s); sending the "
                        "request again on a new connection",
                        urlsplit(url).netloc,
                        exc,
                    )
                if self._fresh is None:
                    self._fresh = _Pool(self._open_session(pooled=False))
                pool = self._fresh
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise translate(exc, connecting=True) from exc
        pool.open += 1
        return httpx.Response(
            status_code=answer.status,
            headers=answer.raw_headers,
            stream=_Body(answer, lambda: self._answer_closed(pool)),
        )

    def _retire(self, pool: _Pool) -> None:
        """No new request goes to ``pool`` (the current one); it closes once its open answers have."""
        if pool is self._pool:
            self._pool = None
        pool.retired = True
        if pool.open:
            self._retired.add(pool)
        else:
            self._close_soon(pool)

    def _answer_closed(self, pool: _Pool) -> None:
        pool.open -= 1
        if pool.retired and not pool.open:
            self._retired.discard(pool)
            self._close_soon(pool)

    def _close_soon(self, pool: _Pool) -> None:
        task = asyncio.get_running_loop().create_task(pool.session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        pools = [self._pool, self._fresh, *self._retired]
        self._pool = self._fresh = None
        self._retired.clear()
        for pool in pools:
            if pool is not None:
                await pool.session.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


class _Body(httpx.AsyncByteStream):
    """The answer's body as aiohttp reads it: each chunk as it arrives (no re-chunking, so streams stay live)."""

    def __init__(self, answer: aiohttp.ClientResponse, closed: Callable[[], None]) -> None:
        self._answer = answer
        self._closed: Callable[[], None] | None = closed

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._answer.content
        try:
            async for chunk in content.iter_any():
                yield chunk
        except (aiohttp.ClientError, TimeoutError) as exc:
            # aiohttp raises a broken connection's error before the bytes that arrived with it; they are the last
            # events the agent can still get (httpx handed them on first, then raised).
            rest = _unread(content)
            if rest:
                yield rest
            raise translate(exc, connecting=False) from exc

    async def aclose(self) -> None:
        # A fully read answer gives its connection back to the pool; one closed early takes it down with it (the
        # rest of its body would otherwise be read into the next request's answer).
        if self._answer.content.at_eof():
            self._answer.release()
        else:
            self._answer.close()
        closed, self._closed = self._closed, None
        if closed is not None:
            closed()


def translate(exc: BaseException, *, connecting: bool) -> httpx.HTTPError:
    """aiohttp's exception as the httpx exception the gateway handles (the message kept)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, TimeoutError):  # waiting for the answer's head or its next bytes
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return httpx.ProxyError(_proxy_refusal(exc))
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return httpx.ProxyError(message)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return httpx.ConnectError(_untrusted(exc))
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return httpx.ConnectError(
            f"cannot find {exc.host} ({exc.strerror or exc}): is this machine online? (its DNS may be down)"
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(message)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(message)
    if isinstance(exc, aiohttp.ClientOSError):
        return httpx.ConnectError(message) if connecting else httpx.ReadError(message)
    return httpx.TransportError(message)


def _untrusted(exc: aiohttp.ClientConnectorCertificateError) -> str:
    """A certificate that does not verify, with the usual reasons on a laptop's network."""
    error = exc.certificate_error
    why = getattr(error, "verify_message", None) or str(error)
    return (
        f"the certificate of {exc.host}:{exc.port} is not trusted (CERTIFICATE_VERIFY_FAILED: {why}); something on "
        "this network intercepts HTTPS: a Wi-Fi sign-in page (sign in with a browser first), or a company proxy "
        "(point SSL_CERT_FILE at its root certificate)"
    )


def _proxy_refusal(exc: aiohttp.ClientHttpProxyError) -> str:
    """What the proxy said to the tunnel, and what to do — without aiohttp's ``url=…``, which is the proxy's URL with
    the user name and password from the environment in it."""
    proxy = urlsplit(str(exc.request_info.real_url)) if exc.request_info is not None else None
    where = f" at {proxy.hostname}:{proxy.port}" if proxy is not None and proxy.hostname else ""
    text = f"the proxy{where} refused the connection: {exc.status} {exc.message}".rstrip()
    if exc.status == 407:
        named = proxy is not None and proxy.username is not None
        text += (
            " (it did not accept the user name and password in the proxy variable's URL)"
            if named
            else " (it wants a user name and password: put them in the proxy variable's URL, "
            "http://user:password@host:port)"
        )
    return text


def _unread(content: aiohttp.StreamReader) -> bytes:
    """What is buffered and unread: aiohttp's public reads raise the stored error first (its private read does not;
    without it the bytes are lost, as they would be anyway)."""
    read = getattr(content, "_read_nowait", None)
    try:
        rest = read(-1) if read is not None else b""
    except Exception:
        return b""
    return rest if isinstance(rest, bytes) else b""
