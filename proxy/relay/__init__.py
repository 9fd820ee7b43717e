"""The relay: request bodies uploaded once per agent session, then as patches, through the user's own Cloudflare Worker.

Agents resend their whole history on every turn (100 to 300 KB bodies). With the relay on, the first request of a
session uploads the full body (gzip-compressed) to a Worker in the user's own Cloudflare account; later turns upload
only a patch against the previous body. The Worker rebuilds the exact bytes, checks their SHA-256, calls the provider
and streams the answer back unbuffered. Upload bytes from the user's machine drop; the provider still receives (and
bills) the full request.

Modules: ``patch`` (splices between bodies), ``protocol`` (the envelope, names), ``websocket`` (a small RFC 6455
client over httpx), ``client`` (:class:`RelayClient`, the gateway's side) with ``lanes`` (the base bodies it keeps
per session), ``channel`` (a session's WebSocket) and ``trips`` (what relaying cost), ``upstreams`` (the origins the
Worker may call), ``setup`` (the Cloudflare API steps), ``deployed`` (status, forget, disable), ``worker/*.js`` (the Worker's modules,
package data). The README's relay section states the trust model for users.

Trust model: read this before turning the relay on
-----------------------------------------------------
* The Worker sees everything the request carries: the upstream credentials (your Anthropic / OpenAI API key or
  ChatGPT access token, sent as the request's headers so that the Worker can call the provider), your prompts, your
  code, and the provider's answers. It runs in YOUR Cloudflare account, from source Headway ships and you can read
  (``proxy/relay/worker/``); Headway's authors run nothing in between. Cloudflare, as the host, is in the
  path the same way it is for any Worker.
* The Worker keeps each session's last body (Durable Object storage, or KV) for ``relay.ttl_hours`` (24 by default,
  bound at deploy as ``RELAY_TTL_SECONDS``) after its last use, so that the next turn can be a patch; at most 128
  sessions. It keeps no credentials: the headers are used for the one upstream call. Session ids reach it only as a
  hash. ``POST /v1/forget`` deletes everything it keeps.
* It calls only the provider origins bound at deploy (``RELAY_UPSTREAMS``, a JSON list): any other upstream, or one
  with user info, gets 403 ``upstream_not_allowed`` before any network call; redirects are passed back, never
  followed. Headway sends requests for other origins direct without asking (``relay.upstreams``).
* Only Headway can use the Worker: every call carries the relay secret (32 random bytes, base64url), stored in your
  OS keychain under ``relay-secret`` and in the Worker as the secret binding ``RELAY_TOKEN``; the Worker compares
  digests in constant time and refuses anything else with 401. ``relay setup --rotate-secret`` replaces it; the old
  one is refused once the upload is done.
* The Cloudflare API token pasted at setup is used for the setup calls only and is never written anywhere.
* The provider sees requests come from Cloudflare's network (with a ``cf-worker`` header), not from your machine.

Protocol, version 1
-------------------
Authenticated with ``x-relay-token: <secret>``; ``x-relay-protocol: 1``; the session key (``sha256(session id)``,
32 hex) in ``x-relay-session`` (HTTP) or ``?session=`` (WebSocket). A Worker speaking another version answers 426.

* ``GET /v1/info`` → ``{"protocol": 1, "worker_version": "…", "storage": "durable_object" | "kv", "upstreams": […],
  "ttl_seconds", "max_sessions", "max_envelope_bytes", "max_body_bytes", "sessions"`` (Durable Object only)``}``.
* ``POST /v1/forget`` → ``{"forgotten": <sessions, or KV lanes>, "storage"}``: every stored body deleted.
* ``POST /v1/relay``, body = one envelope: a byte of encoding (0 identity, 1 gzip), then ``<header JSON>\\n<payload>``.
  Header: ``{"v": 1, "type": "request", "id", "lane", "mode", "revision", "next_hash": "sha256:<hex>",
  "upstream": {"url", "method", "headers": [[name, value], …]}}`` plus, for ``mode: "patch"``, ``"base_hash",
  "base_revision", "ops": [[start, delete_count, insert_length], …]`` (ascending, in base-body offsets; the payload
  is the inserted bytes, concatenated). ``full_sync`` and ``oneshot`` carry the whole body; ``oneshot`` is not kept.
  A session has up to 3 lanes (its main conversation, a side request such as a title or a small-model call…), each
  with its own base body; the client picks the lane whose base shares the most with the new body.
* The Worker answers with the upstream's status, headers and body, streamed, plus ``x-headway-relay: 1``; or with
  its own error: JSON ``{"error": {"code", "message"}}`` and ``x-headway-relay-error: <code>`` : 409
  ``state_mismatch`` / ``hash_mismatch`` / ``bad_patch`` (the client resends a ``full_sync``), 401 ``unauthorized``,
  400 ``bad_envelope`` / ``bad_request`` / ``bad_session`` / ``bad_upstream``, 403 ``upstream_not_allowed``,
  413 ``envelope_too_large`` (over 16 MiB as sent) / ``body_too_large`` (over 32 MiB inflated or rebuilt: inflating
  stops there), 426 ``protocol_mismatch``, 502 ``upstream_unreachable``. Every refusal before the response starts is
  :class:`RelayUnavailable` on Headway's side: direct, unless ``relay.fallback_to_direct`` is false.
* ``GET /v1/ws`` (WebSocket, one per agent session): the Worker sends ``{"t":"ready","v":1}``; each request is one
  binary message holding an envelope; per request the Worker sends ``{"t":"accepted","id"}`` (body rebuilt and
  verified), ``{"t":"response_start","id","status","headers"}``, the body as binary messages, then
  ``{"t":"done","id"}``, or ``{"t":"error","id","status","code","message","started"}``. Both sides send
  ``{"t":"keepalive"}`` every 15 s. One request at a time per socket: the client queues a session's requests, and the
  Worker handles what arrives in order. Envelopes over 1 MiB (Cloudflare's message limit) go by HTTP instead.
* Storage: a Durable Object per session (class ``RelaySession``, SQLite-backed, binding ``RELAY_SESSION``) holds
  the lanes in memory and persists them in 512 KiB chunks; an alarm deletes them ``RELAY_TTL_SECONDS`` after the
  last use. The object named ``registry`` (same class) lists the sessions, deletes the least recently used beyond 128
  and all of them on ``/v1/forget``. KV
  (binding ``RELAY_STATE``, key ``session:<key>:<lane>``, TTL ``RELAY_TTL_SECONDS``) is the alternative: eventually consistent and
  limited to one write per second per key, so a fast agent loop would see 409s and full syncs. Setup deploys the
  Durable Object unless told otherwise.

Fallback: relay off, no session id or a small body → direct. A failure before the response starts →
:class:`RelayUnavailable`; the caller goes direct unless ``relay.fallback_to_direct`` is false. Once the response
started, a broken stream ends like a broken direct stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy.relay.protocol import PROTOCOL_VERSION, RELAY_SECRET

if TYPE_CHECKING:
    from proxy.relay.client import RelayClient, RelayTrip, RelayUnavailable

__all__ = ["PROTOCOL_VERSION", "RELAY_SECRET", "RelayClient", "RelayTrip", "RelayUnavailable"]

_FROM_CLIENT = frozenset({"RelayClient", "RelayTrip", "RelayUnavailable"})


def __getattr__(name: str) -> Any:
    """The client's names, imported on first use: importing the package (for ``RELAY_SECRET``, or the WebSocket
    client beside it) does not load the relay client while the relay is off."""
    if name in _FROM_CLIENT:
        from proxy.relay import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
