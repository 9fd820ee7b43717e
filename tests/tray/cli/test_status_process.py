"""`headway status` and `headway usage` as real subprocesses: offline from the files, online from a running gateway."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from proxy.config.accounts import set_account_enabled
from proxy.config.paths import Paths
from proxy.config.store import SettingsStore
from proxy.features.budgets import day_start
from proxy.features.request_log import RequestLog, RequestRecord
from proxy.routing.quota import Window
from proxy.routing.state import RuntimeState
from proxy.secrets.keychain import ACCESS_KEY
from proxy.wire.usage import Usage
from tests.fakes import Behavior, FakeAnthropic, anthropic_ratelimit_headers
from tests.support.gateway import start_gateway_process, wait_until
from tests.tray.cli.harness import (
    ANTHROPIC_KEY,
    cli,
    cli_parallel,
    files_under,
    ok,
    read_secrets,
    seed_accounts,
)

# --------------------------------------------------------------------------- status and usage


def test_status_offline_from_settings_and_persisted_state(file_home: Paths) -> None:
    seed_accounts(file_home)
    set_account_enabled(SettingsStore(file_home.settings_file), "spare", False)
    now = time.time()
    state = RuntimeState()
    state.quota.update("work", [Window("tokens", limit=100_000, remaining=25_000, resets_at=now + 3600)], now)
    state.health.cool_down("personal", now + 600, "429 rate_limit_error")
    state.save(file_home.state_file)

    as_json, text = cli_parallel(["status", "--json"], ["status"])
    data = json.loads(ok(as_json))
    assert data["running"] is False and data["url"] is None
    summary = data["summary"]  # offline: the same computation over the saved state
    assert (summary["state"], summary["ready"], summary["total"]) == ("healthy", 1, 2)
    assert 500 < summary["next_reset"] - now <= 600
    assert data["settings_file"] == str(file_home.settings_file)
    accounts = {a["id"]: a for a in data["accounts"]}
    assert [a["id"] for a in data["accounts"]] == ["work", "personal", "spare"]
    assert accounts["work"]["health"] == "healthy"
    (window,) = accounts["work"]["quota"]["windows"]
    assert (window["name"], window["remaining"], window["limit"], window["remaining_percent"]) == (
        "tokens", 25_000, 100_000, 25.0,
    )  # fmt: skip
    assert 3500 < window["resets_in_seconds"] <= 3600
    assert accounts["personal"]["health"] == "cooling_down"
    assert accounts["personal"]["detail"] == "429 rate_limit_error"
    assert 500 < accounts["personal"]["blocked_for_seconds"] <= 600
    assert accounts["spare"]["health"] == "disabled"

    out = ok(text)
    assert "not running" in out
    assert out.splitlines()[0].startswith(
        "● OpenAI blocked · 1/2 ready · 25% left · next back in"
    )  # the summary first
    assert (
        "      tokens   ██░░░░░░░░  25% (25000/100000)  resets in 59m" in out
        or "      tokens   ██░░░░░░░░  25% (25000/100000)  resets in 1h" in out
    )
    assert "  ○ Personal (openai-api-key): rate-limited, back in" in out
    assert "  ○ Spare (anthropic-api-key): disabled" in out


def test_status_offline_shows_the_spend_against_each_budget_from_the_request_log(file_home: Paths) -> None:
    seed_accounts(file_home)
    ok(cli("accounts", "budget", "Work", "--daily", "2", "--monthly", "10"))
    log = RequestLog(file_home.request_log)
    log.start()
    try:
        now = time.time()
        for cost in (0.5, 1.25):  # today: $1.75 of $2 → a warning
            log.record(
                RequestRecord(
                    ts=max(now - 60, day_start(now)),  # today, also a minute after midnight
                    route="/v1/messages",
                    family="anthropic",
                    account_id="work",
                    status=200,
                    latency_ms=1.0,
                    usage=Usage(output_tokens=10),
                    cost_usd=cost,
                )
            )
        assert log.flush(5.0)
    finally:
        log.stop(5.0)

    as_json, text = cli_parallel(["status", "--json"], ["status"])
    data = json.loads(ok(as_json))
    assert data["running"] is False
    budget = next(a for a in data["accounts"] if a["id"] == "work")["budget"]
    assert (budget["spent_today_usd"], budget["spent_month_usd"], budget["state"]) == (1.75, 1.75, "warning")
    assert "budget: $1.75 of $2 today" in ok(text)


def test_status_offline_with_an_unreadable_request_log_says_so_and_shows_the_rest(file_home: Paths) -> None:
    seed_accounts(file_home)
    ok(cli("accounts", "budget", "Work", "--daily", "2"))
    file_home.request_log.write_bytes(b"not a database" * 100)
    result = cli("status", "--json")
    data = json.loads(ok(result))
    assert data["running"] is False and [a["id"] for a in data["accounts"]] == ["work", "personal", "spare"]
    assert data["accounts"][0].get("budget") is None
    assert "Budgets not shown" in result.stderr and str(file_home.request_log) in result.stderr


def test_status_online_usage_and_headway_home(file_home: Paths, tmp_path: Path) -> None:
    headers = anthropic_ratelimit_headers(
        requests_limit=50, requests_remaining=40, tokens_limit=100_000, tokens_remaining=25_000, reset_in=600
    )
    with FakeAnthropic(default=Behavior(headers=headers)) as upstream:
        ok(
            cli(
                "accounts",
                "add",
                "anthropic",
                "--label",
                "Work",
                "--api-key-stdin",
                input=ANTHROPIC_KEY + "\n",
            )
        )
        gateway = start_gateway_process(env={"HEADWAY_ANTHROPIC_BASE_URL": upstream.url})
        try:
            assert gateway.key == read_secrets(file_home)[ACCESS_KEY]
            response = httpx.post(
                f"{gateway.url}/v1/messages",
                headers={"x-api-key": gateway.key, "anthropic-version": "2023-06-01"},
                json={
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                timeout=10,
            )
            assert response.status_code == 200, response.text
            assert upstream.last_request.headers["x-api-key"] == ANTHROPIC_KEY
            # /status is behind the access key: the CLI must be presenting it
            assert httpx.get(f"{gateway.url}/status", timeout=5).status_code == 401

            log = RequestLog(file_home.request_log)
            assert wait_until(lambda: bool(log.summary(since=0)), timeout=5), (
                "the request never reached the log"
            )

            as_json, text, usage, usage_json = cli_parallel(
                ["status", "--json"], ["status"], ["usage"], ["usage", "--json"]
            )
            data = json.loads(ok(as_json))
            assert data["running"] is True
            summary = data["summary"]  # the running engine's one judgement of health
            assert (summary["state"], summary["ready"], summary["total"], summary["percent"]) == (
                "healthy",
                1,
                1,
                25.0,
            )
            assert ok(text).splitlines()[0] == f"● {summary['headline']}"
            assert data["pid"] == gateway.proc.pid
            assert data["url"] == gateway.url
            (account,) = data["accounts"]
            assert account["id"] == "work" and account["health"] == "healthy"
            windows = {w["name"]: w for w in account["quota"]["windows"]}
            assert windows["tokens"]["remaining"] == 25_000 and windows["tokens"]["remaining_percent"] == 25.0
            assert windows["requests"]["remaining"] == 40 and windows["requests"]["remaining_percent"] == 80.0
            assert 500 < windows["tokens"]["resets_in_seconds"] <= 600

            out = ok(text)
            assert f"running at {gateway.url} (pid {gateway.proc.pid})" in out
            assert "      requests ████████░░  80% (40/50)  resets in" in out
            assert "      tokens   ██░░░░░░░░  25% (25000/100000)  resets in" in out

            table = ok(usage)
            row = next(line for line in table.splitlines() if "claude-sonnet-4-5" in line)
            assert row.split()[:3] == ["Work", "claude-sonnet-4-5", "1"]
            (summary,) = json.loads(ok(usage_json))
            assert (summary["account_id"], summary["model"], summary["requests"]) == (
                "work",
                "claude-sonnet-4-5",
                1,
            )
        finally:
            code = gateway.stop()
        assert code == 0, gateway.output()

    # Stopped: the quota it saw was persisted, and status falls back to it.
    data = json.loads(ok(cli("status", "--json")))
    assert data["running"] is False
    (account,) = data["accounts"]
    assert {w["name"] for w in account["quota"]["windows"]} == {"requests", "tokens"}

    # Everything Headway wrote is under HEADWAY_HOME: config, data, logs, lock.
    home = file_home.home
    assert home is not None
    assert file_home.settings_file.is_file() and file_home.request_log.is_file()
    assert file_home.state_file.is_file() and file_home.lock_file.exists()
    assert files_under(file_home.log_dir), "no log file in HEADWAY_HOME/logs"
    outside = [
        p
        for folder in ("xdg-config", "xdg-data", "xdg-state", "home")
        for p in files_under(tmp_path / folder)
    ]
    assert outside == [], f"written outside HEADWAY_HOME: {outside}"
