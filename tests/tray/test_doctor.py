"""`headway doctor` against real things: a running `headway serve`, agent config files written by `headway configure`,
an exported variable that overrides one, a rotated key, a missing secret, a broken autostart entry; and the account
and agent checks in process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from proxy.auth import TokenSet
from proxy.config.paths import Paths, write_private_file
from proxy.config.settings import Account, Settings
from proxy.secrets.keychain import Keychain, account_secret_name
from tests.support.gateway import GatewayProcess, start_gateway_process
from tray.doctor import Check, exit_code, format_checks
from tray.doctor import accounts as account_checks
from tray.doctor.desktop import autostart_check

ROOT = Path(__file__).resolve().parents[2]
ANTHROPIC_KEY = "sk-ant-api03-" + "d" * 30


def run(
    *args: str, env: Mapping[str, str] | None = None, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tray", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
        start_new_session=True,
        check=False,
        input=input,
    )


def doctor(env: Mapping[str, str] | None = None) -> tuple[int, dict[str, list[dict[str, str]]]]:
    result = run("doctor", "--json", env=env)
    assert "Traceback" not in result.stderr, result.stderr
    by_name: dict[str, list[dict[str, str]]] = {}
    for check in json.loads(result.stdout):
        by_name.setdefault(check["check"], []).append(check)
    return result.returncode, by_name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def home_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def running(headway_home: Path, home_dir: Path) -> Iterator[GatewayProcess]:
    paths = Paths.from_env()
    paths.ensure()
    port = _free_port()
    write_private_file(
        paths.settings_file, json.dumps({"secrets": {"backend": "file"}, "gateway": {"port": port}}).encode()
    )
    process = start_gateway_process(port=port)
    try:
        yield process
    finally:
        process.stop()


def test_doctor_with_a_running_instance_and_agents_set_up(running: GatewayProcess, home_dir: Path) -> None:
    pi_dir = home_dir / "pi"
    env = {"PI_CODING_AGENT_DIR": str(pi_dir)}
    for agent in ("claude-code", "pi"):
        configured = run("configure", agent, env=env)
        assert configured.returncode == 0, configured.stderr
        assert "warning:" not in configured.stderr

    code, checks = doctor(env)
    assert checks["running instance"][0]["status"] == "ok"
    assert f"running at {running.url}" in checks["running instance"][0]["detail"]
    assert "version" in checks["running instance"][0]["detail"]
    assert (
        checks["gateway port"][0]["status"] == "ok"
        and "served by this Headway" in checks["gateway port"][0]["detail"]
    )
    for agent in ("agent claude-code", "agent pi"):
        assert [c["status"] for c in checks[agent]] == ["ok"], checks[agent]
    assert "agent codex" not in checks  # not set up: not listed

    # Claude Code with ANTHROPIC_API_KEY exported sends that key (and retries its 401s for minutes): say so.
    exported = {**env, "ANTHROPIC_API_KEY": ANTHROPIC_KEY}
    code, checks = doctor(exported)
    assert code == 1
    claude = checks["agent claude-code"]
    assert [c["status"] for c in claude] == ["fail"]
    assert "ANTHROPIC_API_KEY" in claude[0]["detail"] and claude[0]["fix"].startswith(
        "unset ANTHROPIC_API_KEY"
    )
    assert any("ANTHROPIC_API_KEY" in c["detail"] for c in checks["agent pi"])
    assert ANTHROPIC_KEY not in json.dumps(checks)
    warned = run("configure", "claude-code", env=exported)
    assert warned.returncode == 0
    assert "warning: ANTHROPIC_API_KEY is set in this environment" in warned.stderr

    # A variable holding Headway's own key (what the tray's "Connect Pi" text exports) is fine.
    own = {**env, "ANTHROPIC_API_KEY": running.key}
    _, checks = doctor(own)
    assert [c["status"] for c in checks["agent pi"]] == ["ok"]

    # A rotated key: the files hold the old one.
    assert run("key", "--rotate").returncode == 0
    code, checks = doctor(env)
    assert code == 1
    assert checks["agent claude-code"][0]["status"] == "fail"
    assert "current access key" in checks["agent claude-code"][0]["detail"]
    assert checks["agent claude-code"][0]["fix"] == "headway configure claude-code"


def test_doctor_names_an_account_without_its_secret(headway_home: Path, home_dir: Path) -> None:
    paths = Paths.from_env()
    paths.ensure()
    write_private_file(paths.settings_file, b'{"secrets": {"backend": "file"}}\n')
    added = run(
        "accounts", "add", "anthropic", "--label", "main", "--api-key-stdin", input=ANTHROPIC_KEY + "\n"
    )
    assert added.returncode == 0, added.stderr
    _, checks = doctor()
    assert checks["account main"][0]["status"] == "ok"
    assert "secret present" in checks["account main"][0]["detail"]
    Keychain(paths.keychain_service, backend="file", file_path=paths.secrets_file).delete(
        account_secret_name("main")
    )
    code, checks = doctor()
    assert code == 1
    assert checks["account main"][0]["status"] == "fail"
    assert "no API key in the keychain" in checks["account main"][0]["detail"]
    assert checks["account main"][0]["fix"] == "headway accounts set-key main"


def test_doctor_finds_an_autostart_entry_that_runs_nothing(headway_home: Path, home_dir: Path) -> None:
    assert autostart_check().detail.startswith("off")
    assert run("autostart", "on").returncode == 0
    check = autostart_check()
    assert check.status == "ok", check
    entry = Path(os.environ["XDG_CONFIG_HOME"]) / "autostart" / "headway.desktop"
    entry.write_text(entry.read_text().replace(sys.executable, "/nonexistent/python3"))
    check = autostart_check()
    assert check.status == "fail" and "/nonexistent/python3" in check.detail
    assert "headway autostart on" in check.fix


def _tokens(expires_at: float) -> str:
    return TokenSet(
        access_token="eyJaccess.token.x", refresh_token="rt_" + "r" * 20, id_token=None, expires_at=expires_at
    ).to_json()


def test_chatgpt_accounts_token_expiry_and_needed_login(headway_home: Path) -> None:
    paths = Paths.from_env()
    paths.ensure()
    keychain = Keychain(paths.keychain_service)
    settings = Settings(
        accounts=[
            Account(id="plus", kind="chatgpt", label="plus", chatgpt_account_id="a1"),
            Account(id="gone", kind="chatgpt", label="gone", chatgpt_account_id="a2"),
        ]
    )
    keychain.set(account_secret_name("plus"), _tokens(time.time() + 5 * 3600))
    checks = {c.check: c for c in account_checks.checks(paths, settings, keychain)}
    assert checks["account plus"].status == "ok"
    detail = checks["account plus"].detail
    assert "access token valid for 5h " in detail or "access token valid for 4h 59m " in detail
    assert checks["account gone"].status == "fail"
    assert "no login in the keychain" in checks["account gone"].detail
    assert checks["account gone"].fix == "headway login chatgpt"


def test_output_format_and_exit_code() -> None:
    checks = [
        Check("keychain", "ok", "fine"),
        Check("tray menu", "warn", "no menu", "install PyGObject"),
    ]
    assert exit_code(checks) == 0
    text = format_checks(checks)
    assert "[ok  ] keychain" in text and "[warn] tray menu" in text and "fix: install PyGObject" in text
    assert exit_code([*checks, Check("gateway port", "fail", "busy", "stop it")]) == 1


def test_doctor_network_reaches_each_upstream_or_says_why(headway_home: Path, home_dir: Path) -> None:
    from tests.fakes import FakeAnthropic, FakeOpenAI

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with FakeAnthropic() as anthropic, FakeOpenAI() as openai:
        env = {
            "HEADWAY_ANTHROPIC_BASE_URL": anthropic.url,
            "HEADWAY_OPENAI_BASE_URL": openai.url,
            "HEADWAY_CHATGPT_BASE_URL": dead,
            "HEADWAY_OPENAI_AUTH_URL": "https://headway-doctor-test.invalid",
        }
        result = run("doctor", "--json", "--network", env=env)
    checks = {c["check"]: c for c in json.loads(result.stdout)}
    assert checks["upstream anthropic"]["status"] == "ok"
    assert "answered HTTP" in checks["upstream anthropic"]["detail"]
    assert checks["upstream openai"]["status"] == "ok"
    assert (
        checks["upstream chatgpt"]["status"] == "fail"
        and "cannot connect" in checks["upstream chatgpt"]["detail"]
    )
    assert checks["upstream openai_auth"]["status"] == "fail"
    assert "does not resolve" in checks["upstream openai_auth"]["detail"]
    assert result.returncode == 1
    assert "upstream anthropic" not in run("doctor", "--json", env=env).stdout  # only with --network


def test_doctor_names_an_upstream_url_serve_would_refuse(headway_home: Path, home_dir: Path) -> None:
    """Before, `doctor` said nothing (and `doctor --network` "the check itself failed") where `serve` refused."""
    env = {"HEADWAY_OPENAI_BASE_URL": "http://llm-gateway.example"}
    for args in (("doctor", "--json"), ("doctor", "--json", "--network")):
        result = run(*args, env=env)
        found = {c["check"]: c for c in json.loads(result.stdout)}
        for name in ("upstream URLs", "network") if "--network" in args else ("upstream URLs",):
            assert found[name]["status"] == "fail", found[name]
            assert (
                "HEADWAY_OPENAI_BASE_URL: http:// to llm-gateway.example would send" in found[name]["detail"]
            )
            assert "unset it" in found[name]["fix"]
        assert result.returncode == 1


def test_doctor_says_out_loud_when_keys_cross_the_network_unencrypted(paths: Paths) -> None:
    from tray.doctor.upstreams import url_check

    assert url_check(Settings(), {}) == Check("upstream URLs", "ok", "the providers' own, over https")
    local = url_check(Settings(), {"HEADWAY_ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    assert local.status == "ok" and local.detail == "anthropic changed; encrypted or local"
    trusted = Settings.model_validate(
        {
            "upstreams": {"allow_insecure_http": True, "openai": "http://llm-gateway.example"},
            "accounts": [
                {"id": "lan", "kind": "anthropic-api-key", "label": "lan", "base_url": "http://10.0.0.5:4000"}
            ],
        }
    )
    warned = url_check(trusted, {})
    assert warned.status == "warn"
    assert warned.detail.startswith("account lan, openai: plain http:// to another machine")
    assert "allow_insecure_http off" in warned.fix


def test_doctor_checks_the_certificates_upstreams_are_verified_with(
    headway_home: Path, home_dir: Path, tmp_path: Path
) -> None:
    """`headway serve` stops at start when SSL_CERT_FILE cannot be loaded; doctor says so (before: nothing, and
    `--network` crashed into "the check itself failed")."""
    from tests.support.tls import self_signed

    missing = tmp_path / "company-root.pem"
    env = {"SSL_CERT_FILE": str(missing), "SSL_CERT_DIR": ""}
    result = run("doctor", "--json", "--network", env=env)
    found = {c["check"]: c for c in json.loads(result.stdout)}
    assert found["certificates"] == {
        "check": "certificates",
        "status": "fail",
        "detail": f"cannot load the certificates to trust from SSL_CERT_FILE={missing}: No such file or directory",
        "fix": found["certificates"]["fix"],
    }
    assert found["certificates"]["fix"].startswith("point SSL_CERT_FILE at a readable PEM file")
    assert found["network"]["status"] == "fail" and found["network"]["detail"].startswith("no upstream asked")
    assert result.returncode == 1 and "Traceback" not in result.stderr

    certificate = self_signed(tmp_path / "tls")
    _, checks = doctor({"SSL_CERT_FILE": str(certificate.cert_file), "SSL_CERT_DIR": ""})
    assert checks["certificates"] == [
        {
            "check": "certificates",
            "status": "ok",
            "detail": f"1 trusted root from SSL_CERT_FILE={certificate.cert_file}",
            "fix": "",
        }
    ]
