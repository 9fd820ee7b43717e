"""Bad settings files, generated (hypothesis) and hand-picked: random mutations of a valid file, huge files, links,
special files. Whatever is on disk, a reload never raises, the last good settings stay in force, writes are refused
and the error names the file and — for a value that breaks the schema — its key path."""

from __future__ import annotations

import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.config.settings import Settings, SettingsError, parse_settings
from proxy.config.store import SettingsStore

GOOD: dict[str, Any] = {
    "version": 1,
    "gateway": {"port": 7444, "allowed_hosts": ["devbox"], "paused": False},
    "routing": {"mode": "sticky", "fallback_statuses": [401, 429], "max_retries": 1},
    "accounts": [
        {"id": "work", "kind": "anthropic-api-key", "label": "Work", "killswitch": {"requests": 5}},
        {
            "id": "home",
            "kind": "openai-api-key",
            "label": "Home",
            "enabled": False,
            "min_remaining_percent": 10,
        },
        {"id": "gpt", "kind": "chatgpt", "label": "ChatGPT", "chatgpt_account_id": "acc-1", "email": "a@b.c"},
    ],
    "cache": {"anthropic_mode": "hybrid"},
    "dumps": {"enabled": False, "max_mb": 50},
    "logging": {"level": "INFO"},
}
GOOD_TEXT = json.dumps(GOOD, indent=2)


class Home:
    def __init__(self, root: Path) -> None:
        self.path = root / "config" / "settings.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(GOOD_TEXT)
        self.store = SettingsStore(self.path, last_good=root / "data" / "settings.last-good.json")
        self.store.load()
        assert self.store.error is None
        self.good = self.store.current

    def assert_kept_and_explained(self) -> SettingsError:
        error = self.store.error
        assert error is not None
        assert self.store.current == self.good, "the last good settings were replaced"
        assert str(error).startswith(f"{self.path}: ")
        assert all(p.strip() for p in error.problems)
        with pytest.raises(SettingsError):
            self.store.update(lambda s: None)
        return error


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path)


def _paths_of(value: Any, prefix: str = "") -> list[str]:
    """Every key path in a JSON value, in the error format: gateway.port, accounts[1].kind."""
    out = []
    if isinstance(value, dict):
        for key, child in value.items():
            path = f"{prefix}.{key}" if prefix else key
            out.append(path)
            out.extend(_paths_of(child, path))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            path = f"{prefix}[{index}]"
            out.append(path)
            out.extend(_paths_of(child, path))
    return out


def _set(doc: Any, path: str, new: Any) -> Any:
    """A copy of ``doc`` with the value at ``path`` replaced."""
    import re

    doc = json.loads(json.dumps(doc))
    parts: list[str | int] = [
        int(p[1:-1]) if p.startswith("[") else p for p in re.findall(r"\[\d+\]|[^.\[\]]+", path)
    ]
    target = doc
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = new
    return doc


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
RUN = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@RUN
@given(data=st.data())
def test_a_value_replaced_anywhere_is_applied_or_named_by_its_key_path(
    home: Home, data: st.DataObject
) -> None:
    path = data.draw(st.sampled_from(_paths_of(GOOD)))
    new = data.draw(json_values)
    doc = _set(GOOD, path, new)
    text = json.dumps(doc)
    home.path.write_text(text)
    home.store.reload()
    if home.store.error is None:
        assert home.store.current == parse_settings(text)
        home.path.write_text(GOOD_TEXT)
        home.store.reload()
        return
    error = home.assert_kept_and_explained()
    # The problem is located at the changed key or inside it (or, for an account, the account's own path).
    account = path.split(".")[0] if path.startswith("accounts[") else None
    assert any(
        p.startswith(path) or path.startswith(p.split(":")[0]) or (account and p.startswith(account))
        for p in error.problems
    ), (path, new, error.problems)
    home.path.write_text(GOOD_TEXT)
    assert home.store.reload() is False and home.store.error is None


@RUN
@given(
    cut=st.integers(0, len(GOOD_TEXT)),
    junk=st.binary(max_size=12),
    where=st.integers(0, len(GOOD_TEXT)),
    flips=st.lists(st.tuples(st.integers(0, len(GOOD_TEXT) - 1), st.integers(1, 255)), max_size=3),
)
def test_random_byte_damage_never_crashes_and_keeps_the_last_good(
    home: Home, cut: int, junk: bytes, where: int, flips: list[tuple[int, int]]
) -> None:
    raw = bytearray(GOOD_TEXT.encode())
    for index, xor in flips:
        raw[index] ^= xor
    damaged = bytes(raw[:where]) + junk + bytes(raw[where : cut if cut > where else len(raw)])
    home.path.write_bytes(damaged)
    home.store.reload()  # never raises
    if home.store.error is None:
        assert home.store.current == parse_settings(damaged.decode("utf-8-sig"))
    else:
        home.assert_kept_and_explained()
    home.path.write_text(GOOD_TEXT)
    home.store.reload()
    assert home.store.error is None


@RUN
@given(doc=json_values)
def test_any_json_document_is_applied_or_refused_cleanly(home: Home, doc: Any) -> None:
    home.path.write_text(json.dumps(doc))
    home.store.reload()
    if home.store.error is not None:
        home.assert_kept_and_explained()
    home.path.write_text(GOOD_TEXT)
    home.store.reload()


# --------------------------------------------------------------------------- sizes, links, special files


def test_a_10_mb_file_is_refused_without_reading_it(home: Home) -> None:
    with open(home.path, "w") as fh:
        fh.write(
            '{"accounts": [' + ",".join(['{"id": "x", "kind": "chatgpt", "label": "x"}'] * 250_000) + "]}"
        )
    assert home.path.stat().st_size > 10 * 1024 * 1024
    tracemalloc.start()
    try:
        home.store.reload()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"reloading a 10 MB file allocated {peak / 1e6:.1f} MB"
    error = home.assert_kept_and_explained()
    assert "MiB; settings files are at most 1024 KiB" in str(error)


def test_a_symlink_loop_is_an_error(home: Home) -> None:
    home.path.unlink()
    home.path.symlink_to(home.path)
    home.store.reload()
    assert "cannot read the file" in str(home.assert_kept_and_explained())


@pytest.mark.timeout(10)
def test_a_fifo_in_its_place_is_refused_without_blocking(home: Home) -> None:
    home.path.unlink()
    os.mkfifo(home.path)
    home.store.reload()  # opening a FIFO for reading would block forever
    assert "is not a regular file" in str(home.assert_kept_and_explained())


@pytest.mark.timeout(10)
def test_a_link_to_a_device_is_refused(home: Home) -> None:
    home.path.unlink()
    home.path.symlink_to("/dev/zero")
    home.store.reload()
    assert "is not a regular file" in str(home.assert_kept_and_explained())


def test_a_link_to_a_file_too_large_is_refused(home: Home, tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (2 * 1024 * 1024) + b"{}")
    home.path.unlink()
    home.path.symlink_to(big)
    home.store.reload()
    assert "at most 1024 KiB" in str(home.assert_kept_and_explained())


def test_deletion_and_recreation_while_reloading_in_a_loop(home: Home) -> None:
    """Whatever moment a reload sees, it is the old file, the new file, or an error — never zero accounts."""
    import threading

    stop = threading.Event()
    seen: list[int] = []
    home.store.subscribe(lambda s: seen.append(len(s.accounts)))

    def reloader() -> None:
        while not stop.is_set():
            home.store.reload()

    t = threading.Thread(target=reloader)
    t.start()
    try:
        for i in range(200):
            home.path.unlink()
            with open(home.path, "w") as fh:
                fh.write(json.dumps({**GOOD, "gateway": {**GOOD["gateway"], "port": 8000 + i}}))
    finally:
        stop.set()
        t.join(10)
    home.store.reload()
    assert home.store.error is None and home.store.current.gateway.port == 8199
    assert 0 not in seen
    assert Settings() != home.store.current


@pytest.mark.timeout(10)
def test_a_fifo_swapped_in_after_the_check_does_not_hang_the_reload(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    import proxy.config.store as module

    regular = os.stat(home.path)
    home.path.unlink()
    os.mkfifo(home.path)
    real_stat = os.stat
    monkeypatch.setattr(
        module.os, "stat", lambda p, *a, **k: regular if str(p) == str(home.path) else real_stat(p, *a, **k)
    )
    home.store.reload()  # the stat said "regular file"; the open must not block on the FIFO all the same
    monkeypatch.undo()
    assert "is not a regular file" in str(home.assert_kept_and_explained())
