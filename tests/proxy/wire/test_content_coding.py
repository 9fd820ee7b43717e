"""proxy.wire.content_coding: request bodies an agent compressed, decoded, bounded, and refused clearly."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib

import pytest

from proxy.wire.content_coding import DECODED_CODINGS, decode_body, zstd_module
from proxy.wire.errors import BadRequest, RequestTooLarge, UnsupportedContentEncoding

MB = 1024 * 1024
BODY = json.dumps(
    {"model": "gpt-5.1-codex", "input": [{"role": "user", "content": "hi " * 2000}], "stream": True}
).encode()

zstd = zstd_module()  # compression.zstd on Python 3.14, its backport before


def _deflate(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(wbits=wbits)
    return compressor.compress(data) + compressor.flush()


ENCODED = {
    "zstd": zstd.compress(BODY, 3),  # what Codex sends: zstd level 3
    "gzip": gzip.compress(BODY),
    "x-gzip": gzip.compress(BODY),
    "deflate": _deflate(BODY, zlib.MAX_WBITS),  # zlib-wrapped, as HTTP defines it
}


@pytest.mark.parametrize("coding", sorted(ENCODED))
def test_each_coding_decodes_to_the_agents_json(coding: str) -> None:
    assert decode_body(ENCODED[coding], coding, 1) == BODY


def test_no_coding_and_identity_leave_the_body_as_it_is() -> None:
    for header in (None, "", "identity", " Identity "):
        assert decode_body(BODY, header, 1) is BODY


def test_codings_are_undone_last_applied_first_and_names_are_case_insensitive() -> None:
    # "gzip, zstd": gzip was applied first, then zstd (RFC 9110, 8.4)
    stacked = zstd.compress(gzip.compress(BODY))
    assert decode_body(stacked, "GZIP, Zstd", 1) == BODY
    assert decode_body(stacked, "identity, gzip,zstd", 1) == BODY


def test_back_to_back_frames_and_members_are_all_read() -> None:
    half = len(BODY) // 2
    assert decode_body(zstd.compress(BODY[:half]) + zstd.compress(BODY[half:]), "zstd", 1) == BODY
    assert decode_body(gzip.compress(BODY[:half]) + gzip.compress(BODY[half:]), "gzip", 1) == BODY


def test_a_bare_deflate_stream_is_read_too() -> None:
    # some clients send "deflate" without the zlib wrapper
    assert decode_body(_deflate(BODY, -zlib.MAX_WBITS), "deflate", 1) == BODY


def test_an_empty_body_stays_empty() -> None:
    assert decode_body(b"", "zstd", 1) == b""


@pytest.mark.parametrize("coding", ["zstd", "gzip", "deflate"])
def test_a_body_that_is_not_the_coding_says_so(coding: str) -> None:
    with pytest.raises(BadRequest, match=f"not valid {coding} data \\(Content-Encoding: {coding}\\)"):
        decode_body(b'{"model": "plain JSON, labelled compressed"}', coding, 1)


@pytest.mark.parametrize("coding", ["zstd", "gzip", "deflate"])
def test_a_body_cut_short_says_so(coding: str) -> None:
    whole = ENCODED[coding]
    with pytest.raises(BadRequest, match=f"{coding} data is cut short"):
        decode_body(whole[: len(whole) // 2], coding, 1)


def test_bytes_after_the_end_are_refused() -> None:
    with pytest.raises(BadRequest, match="not valid zstd data"):
        decode_body(ENCODED["zstd"] + b"trailing", "zstd", 1)
    with pytest.raises(BadRequest, match="bytes after the end of its deflate data"):
        decode_body(ENCODED["deflate"] + b"trailing", "deflate", 1)


@pytest.mark.parametrize("coding", ["zstd", "gzip", "deflate"])
def test_a_compression_bomb_is_refused_without_being_inflated(coding: str) -> None:
    # 200 MB of zeros in a few hundred KB at most; the limit is 1 MB. Decoding stops once past it: the memory
    # allocated on the way stays near the limit, not the bomb's size.
    zeros = bytes(200 * MB)
    bomb = {
        "zstd": zstd.compress(zeros),
        "gzip": gzip.compress(zeros),
        "deflate": _deflate(zeros, zlib.MAX_WBITS),
    }[coding]
    del zeros
    assert len(bomb) < MB
    tracemalloc.start()
    try:
        with pytest.raises(RequestTooLarge, match="limit of 1 MB once decompressed") as refused:
            decode_body(bomb, coding, 1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MB, peak
    assert refused.value.status == 413


def test_the_limit_holds_across_frames() -> None:
    # each frame under the limit, together over it
    frame = zstd.compress(bytes(600 * 1024))
    with pytest.raises(RequestTooLarge):
        decode_body(frame + frame, "zstd", 1)
    assert len(decode_body(frame, "zstd", 1)) == 600 * 1024


@pytest.mark.parametrize("coding", ["br", "compress", "zstd, br"])
def test_a_coding_the_gateway_does_not_decode_is_a_415_naming_those_it_does(coding: str) -> None:
    with pytest.raises(UnsupportedContentEncoding, match=r"'br'|'compress'") as refused:
        decode_body(ENCODED["zstd"], coding, 1)
    assert refused.value.status == 415
    assert refused.value.headers == {"accept-encoding": ", ".join(DECODED_CODINGS)}
    assert "zstd, gzip, deflate" in refused.value.message
