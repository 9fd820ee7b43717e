"""Fixtures shared by the request-log tests (test_request_log writes it, test_request_history reads it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.features.request_log import RequestLog


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the request log's SQLite database goes (not created yet)."""
    return tmp_path / "data" / "requests.sqlite3"


@pytest.fixture
def log(db_path: Path) -> Iterator[RequestLog]:
    """A started request log on ``db_path``; it must stop cleanly at the end."""
    request_log = RequestLog(db_path)
    request_log.start()
    yield request_log
    assert request_log.stop(timeout=5)
