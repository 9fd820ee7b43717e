"""The relay: request bodies uploaded once per agent session, then as patches, through the user's own Cloudflare Worker.

Agents resend their whole history on every turn (100 to 300 KB bodies). With the relay on, the first request of a
session uploads the full body (gzip-compressed) to a Worker in the user's own Cloudflare account; later turns upload
only a patch against the previous body. The Worker rebuilds the exact bytes, checks their SHA-256, calls the provider
and streams the answer back unbuffered. Upload bytes from the user's machine drop; the provider still receives (and
bills) the full request.

Modules: ``patch`` (splices between bodies), ``protocol`` (the envelope, names), ``websocket`` (a small RFC 6455
client over httpx), ``client`` (:class:`RelayClient`, the gateway's side), ``setup`` (the Cloudflare API steps),
``worker/worker.js`` (the Worker, package data).

Trust model: read this before turning the relay on
-----------------------------------------------------
* The Worker sees everything the request carries: the upstream credentials (your Anthropic / OpenAI API key or
  ChatGPT access token, sent as the request's headers so that the Worker can call the provider), your prompts, your
  code, and the provider's answers. It runs in YOUR Cloudflare account, from source Headway ships and you can read
  (``proxy/relay/worker/worker.js``); Headway's authors run nothing in between. Cloudflare, as the host, is in the
  path the same way it is for any Worker.
* The Worker keeps each session's last body (Durable Object storage, or KV) for up to 24 hours after its last use,
  so that the next turn can be a patch. It keeps no credentials: the headers are used for the one upstream call.
  Session ids reach it only as a hash.
* Only Headway can use the Worker: every call carries the relay secret (32 random bytes, base64url), stored in your
  OS keychain under ``relay-secret`` and in the Worker as the secret binding ``RELAY_TOKEN``; the Worker compares
  digests in constant time and refuses anything else with 401.
* The Cloudflare API token pasted at setup is used for the setup calls only and is never written anywhere.
* The provider sees requests come from Cloudflare's network (with a ``cf-worker`` header), not from your machine.

Protocol, version 1
-------------------
Authenticated with ``x-relay-token: <secret>``; ``x-relay-protocol: 1``; the session key (``sha256(session id)``,
32 hex) in ``x-relay-session`` (HTTP) or ``?session=`` (WebSocket). A Worker speaking another version answers 426.

* ``GET /v1/info`` → ``{"protocol": 1, "worker_version": "…", "storage": "durable_object" | "kv"}``.
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
  400 ``bad_envelope`` / ``bad_request`` / ``bad_session`` / ``bad_upstream``, 426 ``protocol_mismatch``,
  502 ``upstream_unreachable``.
* ``GET /v1/ws`` (WebSocket, one per agent session): the Worker sends ``{"t":"ready","v":1}``; each request is one
  binary message holding an envelope; per request the Worker sends ``{"t":"accepted","id"}`` (body rebuilt and
  verified), ``{"t":"response_start","id","status","headers"}``, the body as binary messages, then
  ``{"t":"done","id"}``, or ``{"t":"error","id","status","code","message","started"}``. Both sides send
  ``{"t":"keepalive"}`` every 15 s. One request at a time per socket: the client queues a session's requests, and the
  Worker handles what arrives in order. Envelopes over 1 MiB (Cloudflare's message limit) go by HTTP instead.
* Storage: a Durable Object per session (class ``RelaySession``, SQLite-backed, binding ``RELAY_SESSION``) holds
  the lanes in memory and persists them in 512 KiB chunks; an alarm deletes them 24 h after the last use. KV
  (binding ``RELAY_STATE``, key ``session:<key>:<lane>``, TTL 24 h) is the alternative: eventually consistent and
  limited to one write per second per key, so a fast agent loop would see 409s and full syncs. Setup deploys the
  Durable Object unless told otherwise.

Fallback: relay off, no session id or a small body → direct. A failure before the response starts →
:class:`RelayUnavailable`; the caller goes direct unless ``relay.fallback_to_direct`` is false. Once the response
started, a broken stream ends like a broken direct stream.
"""

from __future__ import annotations

from proxy.relay.client import RelayClient, RelayTrip, RelayUnavailable
from proxy.relay.protocol import PROTOCOL_VERSION, RELAY_SECRET

__all__ = ["PROTOCOL_VERSION", "RELAY_SECRET", "RelayClient", "RelayTrip", "RelayUnavailable"]
