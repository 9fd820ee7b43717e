"""Request bodies an agent compressed (``Content-Encoding: zstd``, ``gzip``, ``deflate``), decoded before anything reads them.

Codex clients signed in to ChatGPT send their ``/responses`` bodies as zstd (level 3), and pi's Codex transport does
the same on its HTTP path; others use gzip. Read as they are, they are "not UTF-8" to the gateway. Decoded here, the
rest of the gateway sees the JSON the agent meant: routing, transforms, dumps and the request log work unchanged, and
the body goes upstream uncompressed (``content-encoding`` is never forwarded, see ``proxy.providers.base``).

- Codings listed in the header are undone last-applied first (RFC 9110, 8.4); ``identity`` is no coding.
- The decoded size is bounded by the same limit as the body itself (``gateway.max_body_mb``): a small body that
  inflates past it (a compression bomb) is a 413 as soon as the limit is crossed, never held whole.
- A body that does not decode is a 400 that names the coding and what is wrong; a coding the gateway does not
  decode (``br``, ``compress``) is a 415 with ``Accept-Encoding`` naming the ones it does (RFC 9110, 15.5.16).

zstd is the standard library's ``compression.zstd`` from Python 3.14, its backport (``backports.zstd``) before;
it is imported on the first zstd body, not when the gateway starts.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from proxy.wire.errors import BadRequest, RequestTooLarge, UnsupportedContentEncoding

__all__ = ["DECODED_CODINGS", "decode_body", "zstd_module"]

#: What the gateway decodes, in the order it names them (the 415's Accept-Encoding).
DECODED_CODINGS = ("zstd", "gzip", "deflate")

_ALIASES = {"x-gzip": "gzip"}


class _Decompressor(Protocol):
    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


def decode_body(body: bytes, content_encoding: str | None, limit_mb: int) -> bytes:
    """``body`` with every coding in ``content_encoding`` undone; at most ``limit_mb`` MB once decoded."""
    if not content_encoding:
        return body
    codings = [_ALIASES.get(c, c) for c in (part.strip().lower() for part in content_encoding.split(","))]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return body
    for coding in codings:
        if coding not in DECODED_CODINGS:
            raise UnsupportedContentEncoding(
                f"the request body is sent with Content-Encoding {coding!r}, which the gateway does not decode "
                f"(it decodes {', '.join(DECODED_CODINGS)}; or send the body uncompressed)",
                headers={"accept-encoding": ", ".join(DECODED_CODINGS)},
            )
    for coding in reversed(codings):
        body = _decode(body, coding, limit_mb)
    return body


def _decode(body: bytes, coding: str, limit_mb: int) -> bytes:
    if not body:
        return body
    if coding == "zstd":
        zstd = zstd_module()
        return _inflate(body, coding, limit_mb, zstd.ZstdDecompressor, (zstd.ZstdError,))
    if coding == "gzip":
        return _inflate(
            body, coding, limit_mb, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), (zlib.error,)
        )
    # "deflate" is zlib-wrapped data (RFC 9110, 8.4.1.2); some clients send the bare deflate stream instead
    wrapped = body[0] & 0x0F == 8 and int.from_bytes(body[:2], "big") % 31 == 0
    wbits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
    return _inflate(body, coding, limit_mb, lambda: zlib.decompressobj(wbits), (zlib.error,), members=False)


def _inflate(
    body: bytes,
    coding: str,
    limit_mb: int,
    new: Callable[[], Any],
    errors: tuple[type[Exception], ...],
    *,
    members: bool = True,
) -> bytes:
    """Decompress ``body`` (one stream, or several back to back where ``members``) to at most ``limit_mb`` MB."""
    limit = limit_mb * 1024 * 1024
    parts: list[bytes] = []
    size = 0
    data = body
    while data:
        decompressor: _Decompressor = new()
        try:
            part = decompressor.decompress(data, limit + 1 - size)
        except errors as exc:
            raise BadRequest(
                f"the request body is not valid {coding} data (Content-Encoding: {coding}): {exc}"
            ) from None
        size += len(part)
        if size > limit:
            raise RequestTooLarge(
                f"the request body is larger than the gateway's limit of {limit_mb} MB once decompressed "
                f"(Content-Encoding: {coding}; setting gateway.max_body_mb)"
            )
        if not decompressor.eof:  # all of the input read, and the output limit not reached: it stops mid-way
            raise BadRequest(
                f"the request body's {coding} data is cut short (Content-Encoding: {coding}): it ends before its "
                "compressed stream does"
            )
        parts.append(part)
        data = decompressor.unused_data
        if data and not members:
            raise BadRequest(f"the request body has bytes after the end of its {coding} data")
    return b"".join(parts)


def zstd_module() -> Any:
    """The standard library's zstd module (``compression.zstd``, Python 3.14), or its backport before."""
    if sys.version_info >= (3, 14):
        from compression import zstd
    else:
        from backports import zstd
    return zstd
