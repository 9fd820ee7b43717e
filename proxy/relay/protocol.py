"""The relay wire protocol, version 1: names, the envelope, and the Worker's error codes (sans-IO).

An envelope is one byte of encoding (0 identity, 1 gzip) followed by that encoding of::

    <header JSON, one line>\\n<payload bytes>

The header says what the payload is (see the package docstring for every field); the payload is the whole body
(``full_sync`` / ``oneshot``) or the patch's inserted bytes (``patch``). The same envelope travels as an HTTP POST body
(``/v1/relay``) or as one binary WebSocket message (``/v1/ws``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from typing import Any, Final

__all__ = [
    "ENCODING_GZIP",
    "ENCODING_IDENTITY",
    "ERROR_HEADER",
    "FORGET_PATH",
    "INFO_PATH",
    "MARK_HEADER",
    "PROTOCOL_HEADER",
    "PROTOCOL_VERSION",
    "RELAY_PATH",
    "RELAY_SECRET",
    "SESSION_HEADER",
    "TOKEN_HEADER",
    "WS_PATH",
    "decode_envelope",
    "encode_envelope",
    "session_key",
]

PROTOCOL_VERSION: Final = 1
RELAY_SECRET: Final = "relay-secret"  # the keychain entry

RELAY_PATH: Final = "/v1/relay"
WS_PATH: Final = "/v1/ws"
INFO_PATH: Final = "/v1/info"
FORGET_PATH: Final = "/v1/forget"

TOKEN_HEADER: Final = "x-relay-token"
PROTOCOL_HEADER: Final = "x-relay-protocol"
SESSION_HEADER: Final = "x-relay-session"
MARK_HEADER: Final = "x-headway-relay"  # on every response the Worker passes through from the upstream
ERROR_HEADER: Final = "x-headway-relay-error"  # on the Worker's own error answers: the error code

ENCODING_IDENTITY: Final = 0
ENCODING_GZIP: Final = 1
_COMPRESS_FROM = 1024


def session_key(session_id: str) -> str:
    """The Worker-side name of an agent session: a hash, so the agent's id never reaches Cloudflare."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def encode_envelope(
    header: dict[str, Any], payload: bytes, *, compress: bool = True, level: int = 6
) -> bytes:
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode() + b"\n" + payload
    if compress and len(raw) >= _COMPRESS_FROM:
        return bytes([ENCODING_GZIP]) + gzip.compress(raw, compresslevel=level, mtime=0)
    return bytes([ENCODING_IDENTITY]) + raw


def decode_envelope(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The inverse of :func:`encode_envelope` (the Worker's job; here for tests and tools). ValueError if malformed."""
    if len(data) < 2:
        raise ValueError("empty envelope")
    if data[0] == ENCODING_GZIP:
        raw = gzip.decompress(data[1:])
    elif data[0] == ENCODING_IDENTITY:
        raw = data[1:]
    else:
        raise ValueError(f"unknown envelope encoding {data[0]}")
    line, sep, payload = raw.partition(b"\n")
    if not sep:
        raise ValueError("the envelope has no header line")
    header = json.loads(line)
    if not isinstance(header, dict):
        raise ValueError("the envelope header is not an object")
    return header, payload
