"""The request log's retention in a real `headway serve`: rows older than ``request_log.keep_days`` go when the
gateway starts, and a shorter keep written to the settings file applies while it runs."""

from __future__ import annotations

import json
import sqlite3
import time

from proxy.config.paths import Paths
from proxy.features.request_log import RequestLog
from tests.support.gateway import run_cli, start_gateway_process, wait_until
from tests.support.request_records import request_record

_DAY = 86400.0


def _ages_in_days(paths: Paths) -> list[int]:
    now = time.time()
    with sqlite3.connect(paths.request_log) as conn:
        return sorted(round((now - ts) / _DAY) for (ts,) in conn.execute("SELECT ts FROM requests"))


def test_old_requests_go_at_start_and_a_shorter_keep_applies_live(file_home: Paths) -> None:
    history = RequestLog(file_home.request_log, linger=0)
    history.start()
    now = time.time()
    for days in (500, 200, 100, 10):
        history.record(request_record(ts=now - days * _DAY))
    assert history.stop(timeout=5)

    gateway = start_gateway_process()
    try:
        assert wait_until(lambda: _ages_in_days(file_home) == [10, 100, 200], timeout=10)  # the default: 365
        settings = json.loads(file_home.settings_file.read_text())
        settings["request_log"] = {"keep_days": 150}
        file_home.settings_file.write_text(json.dumps(settings))
        assert wait_until(lambda: _ages_in_days(file_home) == [10, 100], timeout=10)
        settings["request_log"] = {"keep_days": 7}  # below a month: refused, the last good keep stays
        file_home.settings_file.write_text(json.dumps(settings))
        assert wait_until(lambda: "request_log.keep_days" in str(_settings_error()), timeout=10)
        time.sleep(0.5)
        assert _ages_in_days(file_home) == [10, 100]
        assert "removed 1 requests older than 365 days" in gateway.output()
    finally:
        assert gateway.stop() == 0


def _settings_error() -> object:
    return json.loads(run_cli("status", "--json").stdout).get("settings_error")
