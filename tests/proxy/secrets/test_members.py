"""Member keys: found by hash, never stored in clear; the file is owner-only and never read as 'no members' when
it cannot be read."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.secrets.members import Member, MemberBook, MemberFile, MembersError, hash_key


def test_book_finds_by_key_and_forgets_a_replaced_key() -> None:
    alice, key = Member.create("alice")
    book = MemberBook([alice])
    assert book.find(key) == alice
    assert book.find("hw-" + key[4:]) is None and book.find("") is None and book.find(key + "x") is None
    again, new_key = Member.create("alice", daily_usd=2)
    book.put(again)
    assert book.find(key) is None and book.find(new_key) == again and len(book) == 1
    assert book.remove("alice") == again and book.find(new_key) is None


def test_file_round_trip_is_private_and_holds_only_hashes(tmp_path: Path) -> None:
    members = MemberFile(tmp_path / "data" / "members.json")
    assert members.load() == []
    alice, key = Member.create("alice", daily_usd=1.5)
    members.change(lambda m: m.__setitem__("alice", alice))
    text = members.path.read_text()
    assert key not in text and hash_key(key) in text
    assert members.path.stat().st_mode & 0o077 == 0
    assert members.load() == [alice]


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        '{"members": 3}',
        '{"members": [{"name": "a"}]}',
        '{"members": [{"name": "bad name", "key_sha256": "' + "0" * 64 + '"}]}',
        '{"members": [{"name": "a", "key_sha256": "short"}]}',
        '{"members": [{"name": "a", "key_sha256": "' + "0" * 64 + '", "daily_usd": -1}]}',
    ],
)
def test_an_unreadable_file_is_an_error_and_is_not_overwritten(tmp_path: Path, content: str) -> None:
    members = MemberFile(tmp_path / "members.json")
    members.path.write_text(content)
    with pytest.raises(MembersError, match="members file"):
        members.load()
    alice, _ = Member.create("alice")
    with pytest.raises(MembersError):
        members.change(lambda m: m.__setitem__("alice", alice))
    assert members.path.read_text() == content
