"""Opt-in request dumps: the exact upstream body of each request, with a meta file that explains it.

One dump is a group of files sharing the stem ``<ts>-<seq>-<session>``:

``.request.json``
    the final upstream body bytes, exactly as sent;
``.meta.json``
    who/where/what (session, parent session, account, route, model), body size and sha256, hashes of the
    cache-relevant parts (system, tools, first message), the breakpoints with their TTLs, the response (status,
    usage, latency), the redacted request headers, and the diff against the previous body of the same session:
    first differing byte, bytes changed, and which part of the prompt changed first;
``.sse.txt``
    the response transcript, when the writer was built with ``include_sse``.

The folder is owner-only (0700) and every file 0600: a body holds the user's code and prompts. After each write
the oldest groups are deleted until the dump files fit in ``max_bytes``; the group just written is always kept,
so a single dump larger than the cap survives until the next write.

The engine never touches the disk: it calls ``submit(entry)``, which queues to the one ``headway-dumps`` worker
thread and drops the dump (counted in ``dropped``) when the queue is full. ``write(entry)`` is the synchronous path
the worker uses, and tests call directly.

``body_diff`` and ``changed_part`` are reusable: the cache analyzer uses them to say where a cached prefix broke.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import queue
import re
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from proxy.config.settings import Settings
from proxy.features.base import Completed, Feature
from proxy.features.cache_control import find_breakpoints
from proxy.logs import REDACTED, redact

__all__ = [
    "BodyDiff",
    "DumpEntry",
    "DumpWriter",
    "Dumps",
    "body_diff",
    "changed_part",
]

logger = logging.getLogger("headway.dumps")

_DIR_MODE: Final = 0o700
_FILE_MODE: Final = 0o600
_CHUNK: Final = 4096
_STEM = re.compile(r"^(\d{8}T\d{9}Z-\d{6,}-[A-Za-z0-9_-]+)\.(?:request\.json|meta\.json|sse\.txt)$")
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|passw|credential", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class DumpEntry:
    """One upstream request, as the forwarder finished it."""

    body: bytes
    """The final upstream body, byte for byte."""
    route: str
    session_id: str | None = None
    parent_session_id: str | None = None
    account_id: str | None = None
    model: str | None = None
    request_headers: Mapping[str, str] = field(default_factory=dict)
    status: int | None = None
    usage: Mapping[str, Any] | None = None
    latency_ms: float | None = None
    sse: bytes | None = None
    """The response transcript; written only when the writer has ``include_sse``."""
    cache_change: str | None = None
    """``CacheResult.description`` of the cache-mode rewrite, if any."""
    time: float = field(default_factory=time.time)
    """Wall-clock start of the request (epoch seconds)."""


@dataclass(frozen=True, slots=True)
class BodyDiff:
    """Byte-level difference of two bodies, from their common prefix and (non-overlapping) common suffix."""

    prev_size: int
    cur_size: int
    common_prefix: int
    common_suffix: int

    @property
    def identical(self) -> bool:
        return self.prev_size == self.cur_size == self.common_prefix

    @property
    def first_diff_offset(self) -> int | None:
        """Offset of the first differing byte (possibly the end of the shorter body); ``None`` if identical."""
        return None if self.identical else self.common_prefix

    @property
    def changed_bytes(self) -> int:
        """Bytes of the current body outside the common prefix and suffix."""
        return self.cur_size - self.common_prefix - self.common_suffix

    @property
    def removed_bytes(self) -> int:
        """Bytes of the previous body outside the common prefix and suffix."""
        return self.prev_size - self.common_prefix - self.common_suffix


def _common_prefix(a: bytes, b: bytes, limit: int) -> int:
    pos = 0
    while pos < limit:
        end = min(pos + _CHUNK, limit)
        if a[pos:end] != b[pos:end]:
            while a[pos] == b[pos]:
                pos += 1
            return pos
        pos = end
    return limit


def _common_suffix(a: bytes, b: bytes, limit: int) -> int:
    la, lb = len(a), len(b)
    done = 0
    while done < limit:
        step = min(_CHUNK, limit - done)
        if a[la - done - step : la - done] != b[lb - done - step : lb - done]:
            while a[la - done - 1] == b[lb - done - 1]:
                done += 1
            return done
        done += step
    return limit


def body_diff(prev: bytes, cur: bytes) -> BodyDiff:
    shorter = min(len(prev), len(cur))
    prefix = _common_prefix(prev, cur, shorter)
    suffix = _common_suffix(prev, cur, shorter - prefix)
    return BodyDiff(len(prev), len(cur), prefix, suffix)


def _same(a: Any, b: Any) -> bool:
    """JSON equality that also sees key order and ``1`` vs ``1.0`` vs ``true``: what changes the bytes."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            ka == kb and _same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


_MISSING: Final = object()
_PROMPT_KEYS: Final = ("tools", "system", "messages")


def changed_part(prev_obj: Any, cur_obj: Any) -> str:
    """The first part that differs, in prompt order: ``tools``, ``system``, ``messages[N]``, then any other
    top-level key (e.g. ``model``, ``thinking``), or ``body`` when either side is not an object; ``""`` if equal.

    ``messages[N]`` with ``N == len(previous messages)`` means the earlier messages are intact and new ones were
    appended. Key order counts as a change, since it changes the bytes the cache sees.
    """
    if not (isinstance(prev_obj, dict) and isinstance(cur_obj, dict)):
        return "" if _same(prev_obj, cur_obj) else "body"
    for key in ("tools", "system"):
        if not _same(prev_obj.get(key, _MISSING), cur_obj.get(key, _MISSING)):
            return key
    prev_messages, cur_messages = prev_obj.get("messages", _MISSING), cur_obj.get("messages", _MISSING)
    if not _same(prev_messages, cur_messages):
        if isinstance(prev_messages, list) and isinstance(cur_messages, list):
            for i, (old, new) in enumerate(zip(prev_messages, cur_messages, strict=False)):
                if not _same(old, new):
                    return f"messages[{i}]"
            return f"messages[{min(len(prev_messages), len(cur_messages))}]"
        return "messages"
    others = [k for k in cur_obj if k not in _PROMPT_KEYS] + [
        k for k in prev_obj if k not in _PROMPT_KEYS and k not in cur_obj
    ]
    for key in others:
        if not _same(prev_obj.get(key, _MISSING), cur_obj.get(key, _MISSING)):
            return str(key)
    if [k for k in prev_obj] != [k for k in cur_obj]:
        return "key order"
    return ""


def _canonical_sha256(value: Any) -> str | None:
    if value is _MISSING:
        return None
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _mask(name: str, value: str) -> str:
    """The whole value masked; an ``Authorization`` scheme word (``Bearer``, ``Basic``) is kept."""
    scheme, sep, _rest = value.partition(" ")
    if (
        name.lower() in ("authorization", "proxy-authorization")
        and sep
        and scheme.isalpha()
        and len(scheme) <= 16
    ):
        return f"{scheme} {REDACTED}"
    return REDACTED


def _redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers whose name suggests a credential are masked whole; every other value still goes through
    ``proxy.logs.redact`` in case a token turns up where it is not expected. Names are kept."""
    return {
        name: _mask(name, value) if _SECRET_HEADER.search(name) else redact(value)
        for name, value in headers.items()
    }


def _safe_session(session_id: str | None) -> str:
    if not session_id:
        return "nosession"
    return re.sub(r"[^A-Za-z0-9_-]", "_", session_id)[:64]


def _stamp(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y%m%dT%H%M%S") + f"{moment.microsecond // 1000:03d}Z"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), _FILE_MODE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    if os.name == "posix" and stat.S_IMODE(path.stat().st_mode) != _FILE_MODE:
        path.chmod(_FILE_MODE)


class _Stop:
    """Queue sentinel that ends the worker."""


class DumpWriter:
    """Writes dumps to ``folder``; ``start()`` / ``stop(timeout)`` own the ``headway-dumps`` thread."""

    def __init__(
        self,
        folder: Path,
        max_bytes: int,
        include_sse: bool,
        *,
        max_sessions: int = 64,
        max_remembered_bytes: int = 64 * 1024 * 1024,
        max_pending: int = 256,
    ) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.include_sse = include_sse
        self._max_sessions = max_sessions
        self._max_remembered_bytes = max_remembered_bytes
        self._max_pending = max_pending
        self._previous: OrderedDict[str, bytes] = OrderedDict()
        self._remembered_bytes = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._queue: queue.Queue[DumpEntry | _Stop] = queue.Queue()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """Dumps refused by ``submit`` because the queue was full."""
        return self._dropped

    # -- worker ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._abort.clear()
        self._drop_stale_stops()
        self._thread = threading.Thread(target=self._run, name="headway-dumps", daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Write what is queued, then end the worker; give up after ``timeout`` seconds (returns False)."""
        thread = self._thread
        if thread is None:
            return True
        self._queue.put(_Stop())
        thread.join(timeout)
        if thread.is_alive():
            self._abort.set()
            logger.warning(
                "dump writer did not stop within %.1f s; discarding %d queued dumps",
                timeout,
                self._queue.qsize(),
            )
            return False
        self._thread = None
        return True

    def submit(self, entry: DumpEntry) -> bool:
        """Queue ``entry`` for the worker without blocking; False (and counted) when the queue is full."""
        if self._queue.qsize() >= self._max_pending:
            self._dropped += 1
            return False
        self._queue.put_nowait(entry)
        return True

    def _drop_stale_stops(self) -> None:
        """Remove sentinels left by a stop that timed out, keeping queued entries in order."""
        pending: list[DumpEntry] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if not isinstance(item, _Stop):
                pending.append(item)
        for item in pending:
            self._queue.put_nowait(item)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if isinstance(item, _Stop):
                return
            if self._abort.is_set():
                continue
            try:
                self.write(item)
            except Exception:
                logger.exception("could not write request dump to %s", self.folder)

    # -- writing --------------------------------------------------------------------------------------------

    def write(self, entry: DumpEntry) -> Path:
        """Write one dump group now; returns the path of its ``.request.json``."""
        with self._lock:
            self._ensure_folder()
            stem = self._claim_stem(entry)
            request_path = self.folder / f"{stem}.request.json"
            sse_name: str | None = None
            _write_private(request_path, entry.body)
            if self.include_sse and entry.sse is not None:
                sse_name = f"{stem}.sse.txt"
                _write_private(self.folder / sse_name, entry.sse)
            meta = self._meta(entry, request_path.name, sse_name)
            meta_bytes = json.dumps(meta, indent=2, ensure_ascii=False, default=str).encode("utf-8")
            _write_private(self.folder / f"{stem}.meta.json", meta_bytes)
            self._prune(keep=stem)
            return request_path

    def _ensure_folder(self) -> None:
        self.folder.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        if os.name == "posix" and stat.S_IMODE(self.folder.stat().st_mode) != _DIR_MODE:
            self.folder.chmod(_DIR_MODE)

    def _claim_stem(self, entry: DumpEntry) -> str:
        prefix, session = _stamp(entry.time), _safe_session(entry.session_id)
        while True:
            self._seq += 1
            stem = f"{prefix}-{self._seq:06d}-{session}"
            if not (self.folder / f"{stem}.request.json").exists():
                return stem

    def _meta(self, entry: DumpEntry, request_name: str, sse_name: str | None) -> dict[str, Any]:
        parsed: Any = _MISSING
        with contextlib.suppress(ValueError):
            parsed = json.loads(entry.body)
        obj: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        messages = obj.get("messages")
        first_message = messages[0] if isinstance(messages, list) and messages else _MISSING
        return {
            "time": _iso(entry.time),
            "session_id": entry.session_id,
            "parent_session_id": entry.parent_session_id,
            "account_id": entry.account_id,
            "route": entry.route,
            "model": entry.model,
            "body": {
                "size": len(entry.body),
                "sha256": hashlib.sha256(entry.body).hexdigest(),
                "json": isinstance(parsed, dict),
            },
            "parts_sha256": {
                "system": _canonical_sha256(obj.get("system", _MISSING)),
                "tools": _canonical_sha256(obj.get("tools", _MISSING)),
                "first_message": _canonical_sha256(first_message),
            },
            "breakpoints": [{"path": bp.path, "ttl": bp.effective_ttl} for bp in find_breakpoints(obj)],
            "cache_change": entry.cache_change,
            "diff": self._diff_with_previous(entry, parsed),
            "response": {"status": entry.status, "usage": entry.usage, "latency_ms": entry.latency_ms},
            "request_headers": _redact_headers(entry.request_headers),
            "files": {"request": request_name, "sse": sse_name},
        }

    def _diff_with_previous(self, entry: DumpEntry, parsed: Any) -> dict[str, Any] | None:
        if entry.session_id is None:
            return None
        previous = self._previous.get(entry.session_id)
        self._remember(entry.session_id, entry.body)
        if previous is None:
            return None
        diff = body_diff(previous, entry.body)
        part: str | None = None
        if not diff.identical:
            try:
                part = changed_part(json.loads(previous), parsed) if parsed is not _MISSING else "unparsed"
            except ValueError:
                part = "unparsed"
        return {
            "previous_size": diff.prev_size,
            "identical": diff.identical,
            "first_diff_offset": diff.first_diff_offset,
            "common_prefix": diff.common_prefix,
            "common_suffix": diff.common_suffix,
            "changed_bytes": diff.changed_bytes,
            "removed_bytes": diff.removed_bytes,
            "changed_part": part,
        }

    def _remember(self, session_id: str, body: bytes) -> None:
        old = self._previous.pop(session_id, None)
        if old is not None:
            self._remembered_bytes -= len(old)
        self._previous[session_id] = body
        self._remembered_bytes += len(body)
        while len(self._previous) > self._max_sessions or (
            self._remembered_bytes > self._max_remembered_bytes and len(self._previous) > 1
        ):
            _, evicted = self._previous.popitem(last=False)
            self._remembered_bytes -= len(evicted)

    def _prune(self, keep: str) -> None:
        groups: dict[str, list[tuple[Path, int]]] = {}
        with os.scandir(self.folder) as entries:
            for item in entries:
                match = _STEM.match(item.name)
                if match is None or not item.is_file(follow_symlinks=False):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    size = item.stat(follow_symlinks=False).st_size
                    groups.setdefault(match.group(1), []).append((Path(item.path), size))
        total = sum(size for files in groups.values() for _, size in files)
        for stem in sorted(groups):
            if total <= self.max_bytes:
                break
            if stem == keep:
                continue
            for path, size in groups[stem]:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                total -= size


class Dumps(Feature):
    """Request dumps (``dumps.enabled``): each finished request's upstream body and meta, written by a thread of
    its own; turned on, off or resized live."""

    name = "dumps"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.writer: DumpWriter | None = None
        self._config: tuple[bool, int, bool] | None = None

    def configure(self, settings: Settings) -> None:
        config = (settings.dumps.enabled, settings.dumps.max_mb, settings.dumps.include_sse)
        if config == self._config:
            return
        self._config = config
        old, self.writer = self.writer, None
        if old is not None:
            old.stop(1.0)
        if settings.dumps.enabled:
            writer = DumpWriter(self.folder, settings.dumps.max_mb * 1024 * 1024, settings.dumps.include_sse)
            writer.start()
            self.writer = writer
            logger.info("request dumps on: %s (sensitive: holds your prompts)", self.folder)

    def wants_transcript(self) -> bool:
        return self.writer is not None and self.writer.include_sse

    def on_complete(self, done: Completed) -> None:
        writer = self.writer
        if writer is None or done.upstream_body is None:
            return
        request = done.request
        writer.submit(
            DumpEntry(
                body=done.upstream_body,
                route=request.path,
                session_id=request.session.session_id,
                parent_session_id=request.session.parent_session_id,
                account_id=done.account.id if done.account else None,
                model=request.model,
                request_headers=request.headers,
                status=done.status,
                usage=asdict(done.usage) if done.usage is not None else None,
                latency_ms=done.latency_ms,
                sse=done.transcript,
                cache_change=request.cache_change,
            )
        )

    async def aclose(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            await asyncio.to_thread(writer.stop, 2.0)
