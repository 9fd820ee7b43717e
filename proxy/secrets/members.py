"""Member keys: one access key per team member, so a shared gateway knows who sent each request.

A member key is 32 random bytes (``hwm-…``), shown once when it is made and stored only as its SHA-256: a key
with 256 bits of entropy needs no slow password hash, and looking a presented key up by its hash never compares
secrets byte by byte (the hash of a guess says nothing about the stored keys). The original local access key
(``headway key``) keeps working next to them.

:class:`MemberBook` is what the gateway asks on every request (a dict lookup); the engine loop owns it.
:class:`MemberFile` keeps the members in ``members.json`` in the data folder (owner-only, written atomically under
a lock, never overwritten when it could not be read). In team mode Redis holds the members every replica serves
(:mod:`proxy.shared`), and the file is each replica's copy for starting while Redis is away.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.config.paths import ensure_private_dir, private_file_lock, write_private_file

__all__ = [
    "MEMBER_NAME",
    "MEMBER_SCOPE_KEY",
    "Member",
    "MemberBook",
    "MemberFile",
    "MembersError",
    "hash_key",
    "new_member_key",
]

# The ASGI scope key under which the gateway's LocalGuard tags a request with its member's name.
MEMBER_SCOPE_KEY = "headway.member"
MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
KEY_PREFIX = "hwm-"


class MembersError(Exception):
    """The members file cannot be read or written, or a member's name or cap is not acceptable."""


def new_member_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not MEMBER_NAME.match(name):
        raise MembersError(
            f"member name {name[:80]!r} is not valid: 1 to 64 letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_cap(daily_usd: float | None) -> float | None:
    if daily_usd is not None and (not math.isfinite(daily_usd) or daily_usd <= 0):
        raise MembersError(f"--daily-usd must be a positive number of dollars, not {daily_usd!r}")
    return daily_usd


@dataclass(frozen=True)
class Member:
    name: str
    key_hash: str
    created_at: float
    daily_usd: float | None = None

    @classmethod
    def create(cls, name: str, *, daily_usd: float | None = None) -> tuple[Member, str]:
        """A new member and its key (the only time the key exists outside the agent that uses it)."""
        key = new_member_key()
        member = cls(check_name(name), hash_key(key), time.time(), check_cap(daily_usd))
        return member, key

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key_sha256": self.key_hash,
            "created_at": self.created_at,
            "daily_usd": self.daily_usd,
        }

    @classmethod
    def from_json(cls, data: Any) -> Member:
        """A member from its JSON; :class:`MembersError` naming what is wrong."""
        if not isinstance(data, dict):
            raise MembersError("a member entry is not a JSON object")
        try:
            name = check_name(str(data["name"]))
            key_hash = str(data["key_sha256"])
            created = float(data.get("created_at") or 0.0)
            cap = data.get("daily_usd")
            daily = None if cap is None else check_cap(float(cap))
        except (KeyError, TypeError, ValueError) as exc:
            raise MembersError(f"a member entry is incomplete or malformed: {exc}") from None
        if not re.fullmatch(r"[0-9a-f]{64}", key_hash):
            raise MembersError(f"member {name!r}: key_sha256 is not a SHA-256 in hex")
        return cls(name, key_hash, created, daily)


class MemberBook:
    """The members a gateway serves, found by the hash of a presented key. Owned by the engine loop."""

    def __init__(self, members: Iterable[Member] = ()) -> None:
        self._by_name: dict[str, Member] = {}
        self._by_hash: dict[str, Member] = {}
        self.replace(members)

    def find(self, key: str) -> Member | None:
        if not key.startswith(KEY_PREFIX):
            return None
        return self._by_hash.get(hash_key(key))

    def get(self, name: str) -> Member | None:
        return self._by_name.get(name)

    def put(self, member: Member) -> None:
        old = self._by_name.pop(member.name, None)
        if old is not None:
            self._by_hash.pop(old.key_hash, None)
        self._by_name[member.name] = member
        self._by_hash[member.key_hash] = member

    def remove(self, name: str) -> Member | None:
        old = self._by_name.pop(name, None)
        if old is not None:
            self._by_hash.pop(old.key_hash, None)
        return old

    def replace(self, members: Iterable[Member]) -> None:
        self._by_name = {}
        self._by_hash = {}
        for member in members:
            self.put(member)

    def all(self) -> list[Member]:
        return sorted(self._by_name.values(), key=lambda m: m.name)

    def __len__(self) -> int:
        return len(self._by_name)


class MemberFile:
    """``members.json``: the members, owner-only. Missing means none yet; unreadable is an error, never 'none'."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def signature(self) -> tuple[int, int] | None:
        """What changes when the file does (mtime, size); None when there is no file."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def load(self) -> list[Member]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise MembersError(f"cannot read the members file {self.path}: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MembersError(f"the members file {self.path} is not valid JSON: {exc}") from exc
        entries = data.get("members") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise MembersError(f"the members file {self.path} has no 'members' list")
        try:
            return [Member.from_json(entry) for entry in entries]
        except MembersError as exc:
            raise MembersError(f"the members file {self.path}: {exc}") from exc

    def save(self, members: Iterable[Member]) -> None:
        data = {"version": 1, "members": [m.to_json() for m in sorted(members, key=lambda m: m.name)]}
        ensure_private_dir(self.path.parent)
        write_private_file(self.path, (json.dumps(data, indent=2) + "\n").encode())

    def change(self, fn: Callable[[dict[str, Member]], object]) -> list[Member]:
        """Read, let ``fn(dict name → Member)`` change it, write; under a lock across processes."""
        ensure_private_dir(self.path.parent)
        with private_file_lock(self.path.with_name(self.path.name + ".lock"), timeout=10):
            members = {m.name: m for m in self.load()}
            fn(members)
            self.save(members.values())
            return list(members.values())
