"""The incremental SSE parser: framing, CRLF, comments, multi-line data, and any chunking of the same bytes."""

from __future__ import annotations

import itertools
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.wire.sse import SSEEvent, SSEParser


def _feed_all(chunks: list[bytes]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events


ANTHROPIC_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":12,"output_tokens":1}}}\n'
    b"\n"
    b"event: ping\n"
    b'data: {"type": "ping"}\n'
    b"\n"
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi \\u00e9"}}\n'
    b"\n"
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n'
    b"\n"
)


def test_events_with_names_and_json_data() -> None:
    events = SSEParser().feed(ANTHROPIC_STREAM)
    assert [e.event for e in events] == ["message_start", "ping", "content_block_delta", "message_stop"]
    assert events[0].json()["message"]["usage"]["input_tokens"] == 12
    assert events[2].json()["delta"]["text"] == "Hi é"


def test_openai_style_data_only_events_and_done() -> None:
    events = SSEParser().feed(b'data: {"choices":[]}\n\ndata: [DONE]\n\n')
    assert events == [SSEEvent(None, '{"choices":[]}'), SSEEvent(None, "[DONE]")]
    assert events[1].json() is None


def test_crlf_line_endings() -> None:
    crlf = ANTHROPIC_STREAM.replace(b"\n", b"\r\n")
    assert SSEParser().feed(crlf) == SSEParser().feed(ANTHROPIC_STREAM)


def test_crlf_split_between_cr_and_lf() -> None:
    assert _feed_all([b"data: a\r", b"\n\r", b"\n", b"data: b\r\n\r", b"\n"]) == [
        SSEEvent(None, "a"),
        SSEEvent(None, "b"),
    ]


def test_an_incomplete_event_waits_for_its_blank_line() -> None:
    parser = SSEParser()
    assert parser.feed(b"event: x\ndata: {") == []
    assert parser.feed(b'"a": 1}\n') == []
    assert parser.feed(b"\n") == [SSEEvent("x", '{"a": 1}')]


def test_comments_are_ignored() -> None:
    stream = b": keep-alive\n\nevent: x\n: a comment inside an event\ndata: 1\n\n:\n\n"
    assert SSEParser().feed(stream) == [SSEEvent("x", "1")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    stream = b"data: line one\ndata:line two\ndata:  indented\ndata:\n\n"
    assert SSEParser().feed(stream) == [SSEEvent(None, "line one\nline two\n indented\n")]


def test_other_fields_and_field_only_lines() -> None:
    stream = b"id: 7\nretry: 1000\nevent: x\ndata\nunknown: y\n\nid: 8\n\n"
    # "data" alone is a data line with an empty value; an event with only an id carries nothing to observe
    assert SSEParser().feed(stream) == [SSEEvent("x", "")]


def test_event_name_without_data() -> None:
    assert SSEParser().feed(b"event: ping\n\n") == [SSEEvent("ping", "")]


def test_a_stream_that_never_frames_an_event_does_not_grow_without_bound() -> None:
    parser = SSEParser(max_buffer=1024)
    for _ in range(10):
        assert parser.feed(b"x" * 500) == []
    assert len(parser._buffer) <= 1024


# --------------------------------------------------------------------------- any chunking, same events

_names = st.one_of(
    st.none(), st.sampled_from(["message_start", "content_block_delta", "response.completed", "error"])
)
_line = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
)
_event = st.tuples(_names, st.lists(_line, min_size=1, max_size=3))


def _encode(events: list[tuple[str | None, list[str]]], newline: bytes, comments: bool) -> bytes:
    out = b""
    for i, (name, lines) in enumerate(events):
        if comments and i % 2:
            out += b": ping" + newline
        if name is not None:
            out += b"event: " + name.encode() + newline
        for line in lines:
            out += b"data: " + line.encode() + newline
        out += newline
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=st.lists(_event, min_size=1, max_size=6),
    newline=st.sampled_from([b"\n", b"\r\n"]),
    comments=st.booleans(),
    data=st.data(),
)
def test_any_split_of_a_valid_stream_yields_the_same_events(
    events: list[tuple[str | None, list[str]]], newline: bytes, comments: bool, data: st.DataObject
) -> None:
    stream = _encode(events, newline, comments)
    expected = [SSEEvent(name, "\n".join(lines)) for name, lines in events]
    assert SSEParser().feed(stream) == expected
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts"))
    bounds = [0, *cuts, len(stream)]
    chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    assert _feed_all(chunks) == expected


def test_byte_by_byte_with_multibyte_utf8() -> None:
    payload = json.dumps({"text": "naïve — 日本語 🚀"}, ensure_ascii=False)
    stream = f"event: delta\r\ndata: {payload}\r\n\r\n".encode()
    events = _feed_all([stream[i : i + 1] for i in range(len(stream))])
    assert events == [SSEEvent("delta", payload)]
    assert events[0].json()["text"] == "naïve — 日本語 🚀"
