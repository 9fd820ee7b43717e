from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.features.dumps import BodyDiff, DumpEntry, DumpWriter, body_diff, changed_part

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def conversation(fourth_text: str = "ORIGINAL wording of message three") -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "system": [
            {"type": "text", "text": "You are a coding agent."},
            {"type": "text", "text": "Project rules.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ],
        "tools": [{"name": "bash", "description": "Run", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "message zero"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "message one"}]},
            {"role": "user", "content": [{"type": "text", "text": "message two"}]},
            {"role": "assistant", "content": [{"type": "text", "text": fourth_text}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "message four", "cache_control": {"type": "ephemeral"}}],
            },
        ],
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
        "stream": True,
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def entry(body: bytes, **overrides: Any) -> DumpEntry:
    fields: dict[str, Any] = {
        "body": body,
        "route": "/v1/messages",
        "session_id": "ses_abc",
        "account_id": "anthropic-work",
        "model": "claude-sonnet-4-5",
        "status": 200,
        "usage": {"input_tokens": 12, "cache_read_input_tokens": 3400, "output_tokens": 50},
        "latency_ms": 812.5,
        "time": T0,
    }
    fields.update(overrides)
    return DumpEntry(**fields)


def meta_of(request_path: Path) -> dict[str, Any]:
    meta_path = request_path.with_name(request_path.name.replace(".request.json", ".meta.json"))
    result: dict[str, Any] = json.loads(meta_path.read_bytes())
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "dumps"


# -- files and meta ------------------------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_folder_is_0700_and_files_0600(tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=True)
    request_path = writer.write(entry(encode(conversation()), sse=b"event: message_stop\ndata: {}\n\n"))
    assert mode(folder) == 0o700
    files = sorted(folder.iterdir())
    assert [p.name.split(".", 1)[1] for p in files] == ["meta.json", "request.json", "sse.txt"]
    assert all(mode(p) == 0o600 for p in files)
    assert request_path in files


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_existing_open_folder_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    DumpWriter(folder, max_bytes=10_000_000, include_sse=False).write(entry(b"{}"))
    assert mode(folder) == 0o700


def test_request_file_holds_the_exact_bytes_and_name_pattern(folder: Path) -> None:
    body = b'{"model":"m",  "messages":[]}\n'  # odd spacing must survive
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=False)
    path = writer.write(entry(body, session_id="ses/../weird id"))
    assert path.read_bytes() == body
    assert re.fullmatch(r"20260101T000000000Z-000001-ses____weird_id\.request\.json", path.name)
    second = writer.write(entry(body, session_id=None))
    assert second.name == "20260101T000000000Z-000002-nosession.request.json"


def test_meta_describes_the_request(folder: Path) -> None:
    body = encode(conversation())
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=False)
    meta = meta_of(
        writer.write(entry(body, parent_session_id="ses_parent", cache_change="hybrid: top-level 1h"))
    )
    assert meta["time"] == "2026-01-01T00:00:00.000Z"
    assert (meta["session_id"], meta["parent_session_id"], meta["account_id"]) == (
        "ses_abc",
        "ses_parent",
        "anthropic-work",
    )
    assert (meta["route"], meta["model"]) == ("/v1/messages", "claude-sonnet-4-5")
    assert meta["body"] == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "json": True}
    system = conversation()["system"]
    canonical = json.dumps(system, sort_keys=True, separators=(",", ":")).encode()
    assert meta["parts_sha256"]["system"] == hashlib.sha256(canonical).hexdigest()
    assert meta["parts_sha256"]["tools"] is not None
    assert meta["parts_sha256"]["first_message"] is not None
    assert meta["breakpoints"] == [
        {"path": "system[1]", "ttl": "1h"},
        {"path": "messages[4].content[0]", "ttl": "5m"},
        {"path": "top-level", "ttl": "1h"},
    ]
    assert meta["response"] == {
        "status": 200,
        "usage": {"input_tokens": 12, "cache_read_input_tokens": 3400, "output_tokens": 50},
        "latency_ms": 812.5,
    }
    assert meta["cache_change"] == "hybrid: top-level 1h"
    assert meta["diff"] is None
    assert meta["files"]["sse"] is None


def test_meta_diff_against_the_previous_request_of_the_session(folder: Path) -> None:
    first = encode(conversation("ORIGINAL wording of message three"))
    second = encode(conversation("EDITED wording of message three"))
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=False)
    writer.write(entry(first))
    writer.write(entry(b'{"other": "session"}', session_id="ses_other"))
    meta = meta_of(writer.write(entry(second, time=T0 + 5)))

    offset = first.index(b"ORIGINAL")
    assert second[:offset] == first[:offset]
    diff = meta["diff"]
    assert diff["identical"] is False
    assert diff["first_diff_offset"] == offset
    assert diff["common_prefix"] == offset
    assert diff["common_suffix"] == len(first) - offset - len(b"ORIGINAL")
    assert diff["changed_bytes"] == len(b"EDITED")
    assert diff["removed_bytes"] == len(b"ORIGINAL")
    assert diff["previous_size"] == len(first)
    assert diff["changed_part"] == "messages[3]"
    first_meta = meta_of(next(folder.glob("*-000001-ses_abc.request.json")))
    assert first_meta["parts_sha256"] == meta["parts_sha256"]  # system, tools, first message untouched


def test_meta_diff_of_an_identical_resend(folder: Path) -> None:
    body = encode(conversation())
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=False)
    writer.write(entry(body))
    diff = meta_of(writer.write(entry(body)))["diff"]
    assert diff["identical"] is True
    assert diff["first_diff_offset"] is None
    assert diff["changed_bytes"] == 0
    assert diff["changed_part"] is None


def test_session_memory_is_bounded(folder: Path) -> None:
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=False, max_sessions=2)
    for session in ("a", "b", "c"):
        writer.write(entry(b"{}", session_id=session))
    assert meta_of(writer.write(entry(b"{}", session_id="a")))["diff"] is None  # evicted
    assert meta_of(writer.write(entry(b"{}", session_id="c")))["diff"]["identical"] is True


def test_non_json_body_is_dumped_with_a_byte_diff(folder: Path) -> None:
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=False)
    writer.write(entry(b"not json at all"))
    meta = meta_of(writer.write(entry(b"not json either")))
    assert meta["body"]["json"] is False
    assert meta["breakpoints"] == []
    assert meta["diff"]["first_diff_offset"] == len(b"not json ")
    assert meta["diff"]["changed_part"] == "unparsed"


# -- SSE, headers, size cap ----------------------------------------------------------------------------------


def test_sse_transcript_only_when_enabled(tmp_path: Path) -> None:
    transcript = b"event: message_start\ndata: {}\n\nevent: message_stop\ndata: {}\n\n"
    off = DumpWriter(tmp_path / "off", max_bytes=10_000_000, include_sse=False)
    off.write(entry(b"{}", sse=transcript))
    assert not list((tmp_path / "off").glob("*.sse.txt"))

    on = DumpWriter(tmp_path / "on", max_bytes=10_000_000, include_sse=True)
    meta = meta_of(on.write(entry(b"{}", sse=transcript)))
    [sse_file] = list((tmp_path / "on").glob("*.sse.txt"))
    assert sse_file.read_bytes() == transcript
    assert meta["files"]["sse"] == sse_file.name

    on.write(entry(b"{}", sse=None))
    assert len(list((tmp_path / "on").glob("*.sse.txt"))) == 1


def test_secret_headers_never_reach_the_disk(folder: Path) -> None:
    secrets = [
        "sk-ant-api03-TOPSECRET",
        "oauth-TOPSECRET-token",
        "session=TOPSECRET-cookie",
        "hw-TOPSECRET-key",
    ]
    headers = {
        "x-api-key": secrets[0],
        "Authorization": f"Bearer {secrets[1]}",
        "Cookie": secrets[2],
        "x-headway-access-token": secrets[3],
        "x-debug-echo": "sk-ant-api03-TOPSECRETTOPSECRETTOPSECRET",  # unexpected place: caught by logs.redact
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "extended-cache-ttl-2025-04-11",
    }
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=True)
    meta = meta_of(writer.write(entry(b"{}", request_headers=headers, sse=b"data: {}\n\n")))
    for path in folder.iterdir():
        content = path.read_bytes()
        assert b"TOPSECRET" not in content, path.name
    redacted = meta["request_headers"]
    assert redacted["anthropic-version"] == "2023-06-01"
    assert redacted["anthropic-beta"] == "extended-cache-ttl-2025-04-11"
    assert redacted["Authorization"].startswith("Bearer ")
    assert set(redacted) == set(headers)


def test_size_cap_removes_the_oldest_groups_first(folder: Path) -> None:
    folder.mkdir()
    foreign = folder / "notes.txt"
    foreign.write_bytes(b"x" * 50_000)  # not a dump: never counted, never deleted
    writer = DumpWriter(folder, max_bytes=12_000, include_sse=True)
    body = b"{" + b" " * 3000 + b"}"
    written = [writer.write(entry(body, time=T0 + i, sse=b"s" * 500)) for i in range(8)]

    survivors = sorted(p.name for p in folder.glob("*.request.json"))
    assert survivors == sorted(p.name for p in written[-len(survivors) :])
    assert 1 < len(survivors) < 8
    dump_bytes = sum(p.stat().st_size for p in folder.iterdir() if p != foreign)
    assert dump_bytes <= 12_000
    for path in written[: -len(survivors)]:
        stem = path.name.removesuffix(".request.json")
        assert not list(folder.glob(f"{stem}.*"))
    assert foreign.exists()


def test_a_single_oversized_dump_is_kept(folder: Path) -> None:
    writer = DumpWriter(folder, max_bytes=100, include_sse=False)
    writer.write(entry(b"{}" + b" " * 500, time=T0))
    newest = writer.write(entry(b"{}" + b" " * 500, time=T0 + 1))
    assert [p.name for p in folder.glob("*.request.json")] == [newest.name]


# -- worker thread -------------------------------------------------------------------------------------------


def test_worker_writes_submitted_entries_and_stops(folder: Path) -> None:
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=False)
    writer.start()
    assert "headway-dumps" in {t.name for t in threading.enumerate()}
    for i in range(3):
        assert writer.submit(entry(b"{}", time=T0 + i))
    assert writer.stop(timeout=5) is True
    assert len(list(folder.glob("*.request.json"))) == 3
    assert "headway-dumps" not in {t.name for t in threading.enumerate()}
    assert writer.stop(timeout=1) is True  # idempotent


def test_worker_stop_is_bounded_when_a_write_hangs(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=False)
    release = threading.Event()
    started = threading.Event()

    def stuck_write(_entry: DumpEntry) -> Path:
        started.set()
        release.wait(10)
        return folder

    monkeypatch.setattr(writer, "write", stuck_write)
    writer.start()
    writer.submit(entry(b"{}"))
    writer.submit(entry(b"{}"))
    assert started.wait(5)
    began = time.monotonic()
    assert writer.stop(timeout=0.2) is False
    assert time.monotonic() - began < 2
    release.set()
    assert writer.stop(timeout=5) is True

    monkeypatch.undo()  # the real write again: a restarted worker is not ended by a stale stop request
    writer.start()
    writer.submit(entry(b"{}"))
    assert writer.stop(timeout=5) is True
    assert len(list(folder.glob("*.request.json"))) == 1


def test_worker_survives_a_failing_write(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_bytes(b"")
    writer = DumpWriter(blocker / "dumps", max_bytes=10_000_000, include_sse=False)
    writer.start()
    with caplog.at_level(logging.ERROR, logger="headway.dumps"):
        writer.submit(entry(b"{}"))
        writer.submit(entry(b"{}"))
        assert writer.stop(timeout=5) is True
    assert sum("could not write request dump" in r.getMessage() for r in caplog.records) == 2


def test_submit_drops_when_the_queue_is_full(folder: Path) -> None:
    writer = DumpWriter(folder, max_bytes=10_000_000, include_sse=False, max_pending=2)
    assert writer.submit(entry(b"{}"))
    assert writer.submit(entry(b"{}"))
    assert writer.submit(entry(b"{}")) is False
    assert writer.dropped == 1
    writer.start()
    assert writer.stop(timeout=5)
    assert len(list(folder.glob("*.request.json"))) == 2


# -- body_diff and changed_part ------------------------------------------------------------------------------


def _naive_diff(prev: bytes, cur: bytes) -> tuple[int, int]:
    prefix = 0
    while prefix < min(len(prev), len(cur)) and prev[prefix] == cur[prefix]:
        prefix += 1
    suffix = 0
    while suffix < min(len(prev), len(cur)) - prefix and prev[-1 - suffix] == cur[-1 - suffix]:
        suffix += 1
    return prefix, suffix


@settings(max_examples=200, deadline=None)
@given(
    common=st.binary(max_size=9000),
    prev_mid=st.binary(max_size=50),
    cur_mid=st.binary(max_size=50),
    tail=st.binary(max_size=9000),
)
def test_body_diff_matches_a_naive_scan(common: bytes, prev_mid: bytes, cur_mid: bytes, tail: bytes) -> None:
    prev, cur = common + prev_mid + tail, common + cur_mid + tail
    diff = body_diff(prev, cur)
    assert (diff.common_prefix, diff.common_suffix) == _naive_diff(prev, cur)
    assert diff.identical == (prev == cur)
    assert diff.common_prefix + diff.common_suffix + diff.changed_bytes == len(cur)
    assert diff.common_prefix + diff.common_suffix + diff.removed_bytes == len(prev)


def test_body_diff_cases() -> None:
    assert body_diff(b"abc", b"abc") == BodyDiff(3, 3, 3, 0)
    assert body_diff(b"abc", b"abc").first_diff_offset is None
    appended = body_diff(b"abc", b"abcdef")
    assert (appended.first_diff_offset, appended.changed_bytes, appended.removed_bytes) == (3, 3, 0)
    big = b"x" * 10_000
    changed = body_diff(big + b"A" + big, big + b"BB" + big)
    assert (changed.first_diff_offset, changed.changed_bytes, changed.removed_bytes) == (10_000, 2, 1)
    assert body_diff(b"", b"").identical


def test_changed_part_in_prompt_order() -> None:
    base = conversation()
    assert changed_part(base, conversation()) == ""

    edited = conversation()
    edited["messages"][3]["content"][0]["text"] = "new"
    edited["model"] = "claude-opus-4-5"
    assert changed_part(base, edited) == "messages[3]"

    edited["system"][0]["text"] = "changed"
    edited["tools"][0]["description"] = "changed"
    assert changed_part(base, edited) == "tools"
    del edited["tools"]
    assert changed_part(base, edited) == "tools"

    appended = conversation()
    appended["messages"].append({"role": "assistant", "content": "more"})
    assert changed_part(base, appended) == "messages[5]"

    other = conversation()
    other["max_tokens"] = 1
    assert changed_part(base, other) == "max_tokens"
    dropped_key = conversation()
    del dropped_key["stream"]
    assert changed_part(base, dropped_key) == "stream"


def test_changed_part_sees_what_changes_bytes() -> None:
    base = conversation()
    reordered = conversation()
    reordered["tools"][0] = dict(reversed(list(reordered["tools"][0].items())))
    assert changed_part(base, reordered) == "tools"
    as_float = conversation()
    as_float["max_tokens"] = 4096.0
    assert changed_part(base, as_float) == "max_tokens"
    top_order = dict(reversed(list(conversation().items())))
    assert changed_part(base, top_order) == "key order"
    assert changed_part([1], [2]) == "body"
