"""Patches between bodies and the envelope: pure functions, no network (the WebSocket: test_relay_websocket.py)."""

from __future__ import annotations

import gzip
import itertools
import json
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.relay.patch import Patch, apply, common_prefix, common_suffix, diff, sha256_tag
from proxy.relay.protocol import decode_envelope, encode_envelope, session_key


def _agent_bodies(turns: int, seed: int = 7) -> list[bytes]:
    """Bodies shaped like an agent's: system prompt and tools, then a growing history whose cache breakpoint moves."""
    rng = random.Random(seed)
    words = [rng.randbytes(4).hex() for _ in range(2000)]
    messages: list[dict[str, object]] = []
    bodies = []
    for turn in range(turns):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(50, 3000)))
        messages.append(
            {"role": "user" if turn % 2 == 0 else "assistant", "content": [{"type": "text", "text": text}]}
        )
        history = json.loads(json.dumps(messages))
        history[-1]["content"][0]["cache_control"] = {"type": "ephemeral"}
        system = [
            {"type": "text", "text": "You are an agent. " * 800},
            {"type": "text", "text": f"turn {turn}"},
        ]
        tools = [
            {"name": f"tool_{i}", "description": "does things " * 40, "input_schema": {}} for i in range(30)
        ]
        bodies.append(
            json.dumps({"model": "m", "system": system, "tools": tools, "messages": history}).encode()
        )
    return bodies


@settings(max_examples=300, deadline=None)
@given(
    old=st.binary(max_size=600),
    edits=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 40), st.binary(max_size=200)), max_size=5),
    min_match=st.sampled_from([8, 64]),
)
def test_diff_then_apply_rebuilds_exactly(
    old: bytes, edits: list[tuple[int, int, bytes]], min_match: int
) -> None:
    new = bytearray(old)
    for pos, delete, insert in edits:
        pos = min(pos, len(new))
        new[pos : pos + delete] = insert
    patch = diff(old, bytes(new), min_match=min_match)
    assert apply(old, patch) == bytes(new)
    starts = [op[0] for op in patch.ops]
    assert starts == sorted(starts)


@given(a=st.binary(max_size=3000), b=st.binary(max_size=3000))
def test_common_prefix_and_suffix_agree_with_a_naive_scan(a: bytes, b: bytes) -> None:
    naive = 0
    while naive < min(len(a), len(b)) and a[naive] == b[naive]:
        naive += 1
    assert common_prefix(a, b) == naive
    naive = 0
    while naive < min(len(a), len(b)) and a[-1 - naive] == b[-1 - naive]:
        naive += 1
    assert common_suffix(a, b) == naive


def test_an_appended_turn_is_one_small_op() -> None:
    old = b'{"messages":[' + b'{"role":"user","content":"x"},' * 5000 + b"]}"
    new = old[:-2] + b',{"role":"assistant","content":"done"}]}'
    patch = diff(old, new)
    assert apply(old, patch) == new
    assert len(patch.ops) == 1 and patch.cost < 80


def test_two_distant_edits_stay_two_small_ops() -> None:
    """A cache breakpoint removed early in the history and a turn appended: not one splice over everything between."""
    rng = random.Random(3)
    old = rng.randbytes(200_000)
    new = old[:1000] + old[1030:150_000] + b"NEW TURN" * 50 + old[150_000:]
    patch = diff(old, new)
    assert apply(old, patch) == new
    assert len(patch.ops) == 2
    assert patch.cost < 600


def test_agent_like_turns_patch_small_and_fast() -> None:
    bodies = _agent_bodies(12)
    started = time.perf_counter()
    for old, new in itertools.pairwise(bodies):
        patch = diff(old, new)
        assert apply(old, patch) == new
        appended = len(new) - len(old)
        assert patch.cost < appended + 400, (patch.ops, appended)
    assert (time.perf_counter() - started) / (len(bodies) - 1) < 0.02


def test_unrelated_bodies_cost_about_the_whole_body() -> None:
    rng = random.Random(5)
    old, new = rng.randbytes(100_000), rng.randbytes(100_000)
    patch = diff(old, new)
    assert apply(old, patch) == new
    assert patch.cost >= len(new)


def test_apply_rejects_a_patch_that_does_not_fit() -> None:
    with pytest.raises(ValueError):
        apply(b"abc", Patch(((2, 5, 0),), b""))
    with pytest.raises(ValueError):
        apply(b"abc", Patch(((0, 1, 3),), b"x"))


def test_envelope_round_trip_compresses_large_and_keeps_small_plain() -> None:
    header = {"v": 1, "mode": "full_sync", "lane": "0"}
    big = b'{"text":"' + b"hello world " * 5000 + b'"}'
    envelope = encode_envelope(header, big)
    assert envelope[0] == 1 and len(envelope) < len(big) // 10
    assert decode_envelope(envelope) == (header, big)
    small = encode_envelope(header, b"{}")
    assert small[0] == 0 and decode_envelope(small) == (header, b"{}")
    # the payload may hold newlines: only the first one ends the header
    assert decode_envelope(encode_envelope(header, b"a\nb\n", compress=False)) == (header, b"a\nb\n")
    assert gzip.decompress(envelope[1:]).startswith(b'{"v":1')


def test_session_key_is_a_fixed_length_hash() -> None:
    key = session_key("ses_abc")
    assert len(key) == 32 and int(key, 16) >= 0 and key != session_key("ses_abd")
    assert sha256_tag(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
