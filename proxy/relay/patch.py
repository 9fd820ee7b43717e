"""Patches between successive request bodies of one session: a few byte splices, found fast.

An agent resends its whole history on every turn, so turn n+1's body is turn n's with a tail appended and, now and
then, a small edit in the middle (a cache breakpoint moved, a reminder rewritten). A patch is a list of splices
against the previous body::

    ops = [(start, delete_count, insert_length), ...]      ascending, non-overlapping, positions in the OLD body
    inserts = the inserted bytes of every op, concatenated in order

:func:`diff` strips the common prefix and suffix, then looks for a long shared run inside what is left (a few probe
windows of the new body searched in the old one with ``bytes.find``, each match extended both ways) and recurses on
either side of it. Everything runs in C-speed slice compares and searches: a 300 KB body diffs in about a millisecond.
The result is always correct (``apply(old, diff(old, new)) == new``); a poor anchor only makes it larger.
Bytes, not text: the Worker rebuilds the exact bytes and checks their SHA-256.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["Patch", "apply", "common_prefix", "common_suffix", "diff", "sha256_tag"]

_FIRST_BLOCK = 256
_MAX_BLOCK = 64 * 1024
_MIN_MATCH = 64
_PROBES = 12
_WINDOW = 32
_MAX_DEPTH = 24
_MAX_OPS = 128
# What one op costs on the wire in the JSON header, roughly: "[123456,12,3456],"
_OP_COST = 18


def sha256_tag(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Patch:
    ops: tuple[tuple[int, int, int], ...]
    inserts: bytes

    @property
    def cost(self) -> int:
        """Approximate bytes on the wire before compression."""
        return len(self.inserts) + _OP_COST * len(self.ops)


def common_prefix(a: bytes, b: bytes, a0: int = 0, b0: int = 0, limit: int | None = None) -> int:
    """Length of the common run of a[a0:] and b[b0:], at most ``limit``."""
    n = min(len(a) - a0, len(b) - b0)
    if limit is not None:
        n = min(n, limit)
    if n <= 0:
        return 0
    # Bytes slices compare with memcmp; blocks stay small enough to avoid mmap-sized copies.
    i = 0
    block = _FIRST_BLOCK
    while i < n:
        step = min(block, n - i)
        if a[a0 + i : a0 + i + step] != b[b0 + i : b0 + i + step]:
            lo, hi = 0, step - 1  # the first mismatch is in [i, i+step): bisect on prefix equality
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if a[a0 + i : a0 + i + mid] == b[b0 + i : b0 + i + mid]:
                    lo = mid
                else:
                    hi = mid - 1
            return i + lo
        i += step
        block = min(block * 2, _MAX_BLOCK)
    return n


def common_suffix(
    a: bytes, b: bytes, a_end: int | None = None, b_end: int | None = None, limit: int | None = None
) -> int:
    """Length of the common run ending at a[:a_end] and b[:b_end], at most ``limit``."""
    a_end = len(a) if a_end is None else a_end
    b_end = len(b) if b_end is None else b_end
    n = min(a_end, b_end)
    if limit is not None:
        n = min(n, limit)
    if n <= 0:
        return 0
    i = 0
    block = _FIRST_BLOCK
    while i < n:
        step = min(block, n - i)
        if a[a_end - i - step : a_end - i] != b[b_end - i - step : b_end - i]:
            lo, hi = 0, step - 1
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if a[a_end - i - mid : a_end - i] == b[b_end - i - mid : b_end - i]:
                    lo = mid
                else:
                    hi = mid - 1
            return i + lo
        i += step
        block = min(block * 2, _MAX_BLOCK)
    return n


class _Differ:
    def __init__(self, old: bytes, new: bytes, max_ops: int, min_match: int) -> None:
        self.old = old
        self.new = new
        self.max_ops = max_ops
        self.min_match = min_match
        self.ops: list[tuple[int, int, int, int]] = []  # (old start, delete, new start, insert length)

    def region(self, o_lo: int, o_hi: int, n_lo: int, n_hi: int, depth: int) -> None:
        old, new = self.old, self.new
        p = common_prefix(old, new, o_lo, n_lo, min(o_hi - o_lo, n_hi - n_lo))
        o_lo += p
        n_lo += p
        s = common_suffix(old, new, o_hi, n_hi, min(o_hi - o_lo, n_hi - n_lo))
        o_hi -= s
        n_hi -= s
        if o_lo == o_hi and n_lo == n_hi:
            return
        small = n_hi - n_lo < 2 * max(self.min_match, _WINDOW) or o_hi - o_lo < max(self.min_match, _WINDOW)
        if small or depth >= _MAX_DEPTH or len(self.ops) >= self.max_ops - 2:
            self.ops.append((o_lo, o_hi - o_lo, n_lo, n_hi - n_lo))
            return
        anchor = self.anchor(o_lo, o_hi, n_lo, n_hi)
        if anchor is None:
            self.ops.append((o_lo, o_hi - o_lo, n_lo, n_hi - n_lo))
            return
        ao, an, length = anchor
        self.region(o_lo, ao, n_lo, an, depth + 1)
        self.region(ao + length, o_hi, an + length, n_hi, depth + 1)

    def anchor(self, o_lo: int, o_hi: int, n_lo: int, n_hi: int) -> tuple[int, int, int] | None:
        """The longest shared run found by probing windows of new[n_lo:n_hi] in old[o_lo:o_hi]."""
        old, new = self.old, self.new
        span = n_hi - n_lo - _WINDOW
        best: tuple[int, int, int] | None = None
        probes = min(_PROBES, max(1, span // _WINDOW))
        for k in range(probes):
            pos = n_lo + (span * (2 * k + 1)) // (2 * probes)
            if best is not None and best[1] <= pos < best[1] + best[2]:
                continue  # inside the run we already have
            idx = old.find(new[pos : pos + _WINDOW], o_lo, o_hi)
            if idx < 0:
                continue
            back = common_suffix(old, new, idx, pos, min(idx - o_lo, pos - n_lo))
            fwd = common_prefix(
                old, new, idx + _WINDOW, pos + _WINDOW, min(o_hi - idx - _WINDOW, n_hi - pos - _WINDOW)
            )
            length = back + _WINDOW + fwd
            if best is None or length > best[2]:
                best = (idx - back, pos - back, length)
        if best is None or best[2] < self.min_match:
            return None
        return best


def diff(old: bytes, new: bytes, *, max_ops: int = _MAX_OPS, min_match: int = _MIN_MATCH) -> Patch:
    """Splices that turn ``old`` into ``new``."""
    differ = _Differ(old, new, max_ops, min_match)
    differ.region(0, len(old), 0, len(new), 0)
    ops = tuple((o, d, n) for o, d, _, n in differ.ops)
    inserts = b"".join(new[s : s + n] for _, _, s, n in differ.ops)
    return Patch(ops, inserts)


def apply(old: bytes, patch: Patch) -> bytes:
    """Rebuild the new body (the Worker does the same in JavaScript); ValueError on a malformed patch."""
    out: list[bytes] = []
    pos = 0
    taken = 0
    for start, delete, length in patch.ops:
        if start < pos or delete < 0 or length < 0 or start + delete > len(old):
            raise ValueError(f"bad op ({start}, {delete}, {length}) at position {pos}")
        out.append(old[pos:start])
        out.append(patch.inserts[taken : taken + length])
        taken += length
        pos = start + delete
    if taken != len(patch.inserts):
        raise ValueError("the inserts do not match the ops")
    out.append(old[pos:])
    return b"".join(out)
