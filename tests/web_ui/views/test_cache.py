"""The page's time-limited cache (web_ui/views/cache.py): reuse within the ttl, recompute after, forget by prefix."""

from __future__ import annotations

import threading

from web_ui.views.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_value_is_reused_within_its_ttl_and_computed_again_after() -> None:
    clock = Clock()
    cache = TtlCache(clock)
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert cache.get("k", 10.0, compute) == 1
    clock.now += 9.9
    assert cache.get("k", 10.0, compute) == 1
    clock.now += 0.1
    assert cache.get("k", 10.0, compute) == 2
    assert len(calls) == 2


def test_each_reader_asks_for_its_own_ttl() -> None:
    clock = Clock()
    cache = TtlCache(clock)
    cache.get("k", 60.0, lambda: "old")
    clock.now += 5
    assert cache.get("k", 60.0, lambda: "new") == "old"
    assert cache.get("k", 2.0, lambda: "new") == "new"


def test_forget_drops_only_the_keys_with_the_prefix() -> None:
    cache = TtlCache(Clock())
    for key in ("key:a", "key:b", "relay-secret"):
        cache.get(key, 60.0, lambda key=key: f"{key} 1")  # type: ignore[misc]
    cache.forget("key:a")
    assert cache.get("key:a", 60.0, lambda: "key:a 2") == "key:a 2"
    assert cache.get("key:b", 60.0, lambda: "key:b 2") == "key:b 1"
    cache.forget()
    assert cache.get("relay-secret", 60.0, lambda: "relay-secret 2") == "relay-secret 2"


def test_a_slow_compute_does_not_block_other_keys() -> None:
    cache = TtlCache(Clock())
    inside = threading.Event()
    release = threading.Event()

    def slow() -> str:
        inside.set()
        assert release.wait(10)
        return "slow"

    worker = threading.Thread(target=lambda: cache.get("slow", 60.0, slow))
    worker.start()
    try:
        assert inside.wait(10)
        assert cache.get("fast", 60.0, lambda: "fast") == "fast"  # the lock is not held while computing
    finally:
        release.set()
        worker.join(10)
    assert cache.get("slow", 60.0, lambda: "again") == "slow"
