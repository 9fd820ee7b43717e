"""`headway keys add/list/revoke` as a user runs them (real subprocesses): the key is printed once and stored only
hashed; bad input is refused with a clear message and changes nothing; team mode writes to Redis or not at all."""

from __future__ import annotations

import json

from proxy.config.paths import Paths
from proxy.secrets.members import MemberFile, hash_key
from tests.support.gateway import run_cli
from tests.support.redis_server import RedisServer, free_port


def test_add_list_revoke() -> None:
    added = run_cli("keys", "add", "alice", "--daily-usd", "5")
    assert added.returncode == 0, added.stderr
    key = added.stdout.strip()
    assert key.startswith("hwm-") and len(key) > 40
    assert "shown only now" in added.stderr and "$5 a day" in added.stderr
    stored = Paths.from_env().members_file.read_text()
    assert key not in stored and hash_key(key) in stored
    assert oct(Paths.from_env().members_file.stat().st_mode & 0o777) == "0o600"

    listed = run_cli("keys", "list")
    assert "alice" in listed.stdout and "cap $5/day" in listed.stdout and key not in listed.stdout
    as_json = json.loads(run_cli("keys", "list", "--json").stdout)
    assert [(m["name"], m["daily_usd"]) for m in as_json] == [("alice", 5.0)]

    again = run_cli("keys", "add", "alice")
    assert again.returncode == 1 and "already has a key" in again.stderr
    assert [m.name for m in MemberFile(Paths.from_env().members_file).load()] == ["alice"]

    revoked = run_cli("keys", "revoke", "alice")
    assert revoked.returncode == 0 and "Revoked" in revoked.stdout
    assert MemberFile(Paths.from_env().members_file).load() == []
    unknown = run_cli("keys", "revoke", "alice")
    assert unknown.returncode == 1 and "no member named 'alice'" in unknown.stderr


def test_bad_names_and_caps_are_refused() -> None:
    for args, message in (
        (("keys", "add", "-x"), "No such option"),
        (("keys", "add", "a b"), "is not valid"),
        (("keys", "add", "bob", "--daily-usd", "-1"), "positive number of dollars"),
        (("keys", "add", "bob", "--daily-usd", "nan"), "positive number of dollars"),
    ):
        result = run_cli(*args)
        assert result.returncode != 0 and message in result.stderr, (args, result.stderr)
    assert not Paths.from_env().members_file.exists()


def test_an_unreadable_members_file_is_an_error_not_an_empty_list() -> None:
    paths = Paths.from_env()
    paths.ensure()
    paths.members_file.write_text('{"members": [{"name": "x"}]}')
    for args in (("keys", "list"), ("keys", "add", "bob"), ("keys", "revoke", "x")):
        result = run_cli(*args)
        assert result.returncode == 1 and "members file" in result.stderr, result.stderr
    assert paths.members_file.read_text() == '{"members": [{"name": "x"}]}'


def test_team_mode_writes_redis_or_nothing(redis_server: RedisServer) -> None:
    env = {"HEADWAY_SHARED_STATE_URL": redis_server.url}
    added = run_cli("keys", "add", "alice", env=env)
    assert added.returncode == 0, added.stderr
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        stored = client.hget("headway:members", "alice")
        assert stored is not None and json.loads(stored)["key_sha256"] == hash_key(added.stdout.strip())
    finally:
        client.close()
    down = {"HEADWAY_SHARED_STATE_URL": f"redis://127.0.0.1:{free_port()}/0"}
    refused = run_cli("keys", "add", "bob", env=down)
    assert refused.returncode == 1 and "cannot reach the shared state" in refused.stderr
    assert "nothing was changed" in refused.stderr
    assert [m.name for m in MemberFile(Paths.from_env().members_file).load()] == ["alice"]
    bad = run_cli("keys", "list", env={"HEADWAY_SHARED_STATE_URL": "http://nope"})
    assert bad.returncode == 1 and "HEADWAY_SHARED_STATE_URL" in bad.stderr


def test_status_shows_team_mode_at_a_glance() -> None:
    from tray.cli.status import _team_lines

    assert _team_lines({"members": 0, "members_error": None, "shared_state": None}) == []
    lines = _team_lines(
        {
            "members": 2,
            "members_error": None,
            "shared_state": {
                "url": "redis://r:6379/0",
                "connected": False,
                "last_error": "ConnectionError: refused",
            },
        }
    )
    assert lines == [
        "Shared state: redis://r:6379/0 NOT connected (ConnectionError: refused)",
        "Member keys: 2",
    ]
