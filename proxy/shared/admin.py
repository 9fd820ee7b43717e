"""Member keys in team mode, for the CLI: written to Redis (the members' authority) and announced at once.

Synchronous (a CLI command is short-lived). Redis unreachable is an error the user sees — an admin change is never
silently kept on one replica only.
"""

from __future__ import annotations

import json
import time

from proxy.secrets.members import Member, MembersError
from proxy.shared.records import Names, encode_message, redacted_url

__all__ = ["MemberAdmin", "SharedStateUnreachable"]


class SharedStateUnreachable(Exception):
    """The shared state (Redis) cannot be reached: nothing was changed."""


class MemberAdmin:
    def __init__(self, url: str, names: Names, *, replica: str = "cli") -> None:
        self.url = url
        self.names = names
        self.replica = replica
        import redis  # only the commands that reach Redis import it: the CLI starts without it

        self._redis_error: type[Exception] = redis.exceptions.RedisError
        self._client = redis.Redis.from_url(url, socket_connect_timeout=3.0, socket_timeout=5.0)

    def close(self) -> None:
        self._client.close()

    def _fail(self, exc: Exception) -> SharedStateUnreachable:
        return SharedStateUnreachable(
            f"cannot reach the shared state at {redacted_url(self.url)} ({exc}); nothing was changed"
        )

    def members(self) -> list[Member]:
        try:
            raw = self._client.hgetall(self.names.members)
        except self._redis_error as exc:
            raise self._fail(exc) from exc
        found = []
        for value in raw.values():
            try:
                found.append(Member.from_json(_load(value)))
            except MembersError:
                continue
        return sorted(found, key=lambda m: m.name)

    def seeded(self) -> bool:
        try:
            return bool(self._client.exists(self.names.members_written))
        except self._redis_error as exc:
            raise self._fail(exc) from exc

    def put(self, member: Member) -> None:
        self._change(member.name, member.to_json())

    def put_many(self, members: list[Member]) -> None:
        for member in members:
            self.put(member)

    def remove(self, name: str) -> None:
        self._change(name, None)

    def _change(self, name: str, value: dict[str, object] | None) -> None:
        pipe = self._client.pipeline(transaction=True)
        if value is None:
            pipe.hdel(self.names.members, name)
        else:
            pipe.hset(self.names.members, name, json.dumps(value))
        pipe.set(self.names.members_written, str(time.time()))
        pipe.publish(self.names.channel, encode_message(self.replica, "member", name, value))
        try:
            pipe.execute()
        except self._redis_error as exc:
            raise self._fail(exc) from exc


def _load(value: bytes | str) -> object:
    try:
        return json.loads(value)
    except ValueError:
        return None
