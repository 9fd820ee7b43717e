"""The container recipe, tested without a container runtime (none runs here): the entry point configures Headway
from the environment and a mounted secrets file and execs `headway serve` on all interfaces; the health check
script; the Containerfile, compose file and Kubernetes example agree with them. What is NOT run here: building the
image and starting it under podman/docker/Kubernetes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from ruamel.yaml import YAML

from proxy.config.paths import Paths
from tests.fakes import FakeAnthropic
from tests.support.gateway import wait_until
from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
CONTAINER = ROOT / "packaging" / "container"
ACCESS_KEY = "hw-team-access-key-0123456789abcdef"


def entrypoint(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CONTAINER / "entrypoint.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        check=False,
    )


def test_check_configures_from_a_secrets_file_and_the_environment(tmp_path: Path) -> None:
    secrets = tmp_path / "headway.json"
    secrets.write_text(
        json.dumps(
            {"accounts": [{"label": "org-anthropic", "kind": "anthropic-api-key", "api_key": "sk-ant-org-1"}]}
        )
    )
    env = {
        "HEADWAY_HOME": str(tmp_path / "data"),
        "HEADWAY_ACCESS_KEY": ACCESS_KEY,
        "HEADWAY_SECRETS_FILE": str(secrets),
        "HEADWAY_OPENAI_API_KEY": "sk-proj-org-2",
        "HEADWAY_ALLOWED_HOSTS": "headway.example.com, gw.internal",
    }
    done = entrypoint(env, "--check")
    assert done.returncode == 0, done.stderr
    for secret in ("sk-ant-org-1", "sk-proj-org-2", ACCESS_KEY):
        assert secret not in done.stdout + done.stderr
    paths = Paths.from_env(env)
    settings = json.loads(paths.settings_file.read_text())
    assert settings["gateway"]["allow_remote"] is True
    assert settings["gateway"]["allowed_hosts"] == ["headway.example.com", "gw.internal"]
    assert [(a["label"], a["kind"]) for a in settings["accounts"]] == [
        ("org-anthropic", "anthropic-api-key"),
        ("openai", "openai-api-key"),
    ]
    stored = paths.secrets_file.read_text()
    assert "sk-ant-org-1" in stored and ACCESS_KEY in stored
    assert paths.secrets_file.stat().st_mode & 0o077 == 0
    # A restart with a rotated key updates the account instead of adding a second one.
    again = entrypoint({**env, "HEADWAY_OPENAI_API_KEY": "sk-proj-org-3"}, "--check")
    assert again.returncode == 0 and "account openai (openai-api-key): key updated" in again.stderr
    assert len(json.loads(paths.settings_file.read_text())["accounts"]) == 2


def test_bad_configuration_is_refused_with_the_reason(tmp_path: Path) -> None:
    home = {"HEADWAY_HOME": str(tmp_path / "data")}
    missing = entrypoint({**home, "HEADWAY_ANTHROPIC_API_KEY": "sk-ant-1"}, "--check")
    assert missing.returncode == 2 and "HEADWAY_ACCESS_KEY is required" in missing.stderr
    no_keys = entrypoint(
        {**home, "HEADWAY_ACCESS_KEY": ACCESS_KEY, "HEADWAY_SECRETS_FILE": "/nonexistent"}, "--check"
    )
    assert no_keys.returncode == 2 and "no API key" in no_keys.stderr
    secrets = tmp_path / "s.json"
    secrets.write_text(json.dumps({"accounts": [{"label": "me", "kind": "chatgpt", "api_key": "x"}]}))
    chatgpt = entrypoint(
        {**home, "HEADWAY_ACCESS_KEY": ACCESS_KEY, "HEADWAY_SECRETS_FILE": str(secrets)}, "--check"
    )
    assert chatgpt.returncode == 2 and "ChatGPT accounts cannot be shared" in chatgpt.stderr
    secrets.write_text("{broken")
    broken = entrypoint(
        {**home, "HEADWAY_ACCESS_KEY": ACCESS_KEY, "HEADWAY_SECRETS_FILE": str(secrets)}, "--check"
    )
    assert broken.returncode == 2 and "cannot read it as JSON" in broken.stderr


def test_the_entry_point_serves_on_all_interfaces_and_the_health_check_sees_it(
    tmp_path: Path, anthropic: FakeAnthropic, redis_server: RedisServer
) -> None:
    port = free_port()
    env = {
        "HEADWAY_HOME": str(tmp_path / "data"),
        "HEADWAY_ACCESS_KEY": ACCESS_KEY,
        "HEADWAY_ANTHROPIC_API_KEY": "sk-ant-org-1",
        "HEADWAY_ANTHROPIC_BASE_URL": anthropic.url,
        "HEADWAY_SHARED_STATE_URL": redis_server.url,
        "HEADWAY_PORT": str(port),
        "PYTHONPATH": str(ROOT),
    }
    health = [sys.executable, str(CONTAINER / "healthcheck.py")]
    assert subprocess.run(health, env={**os.environ, **env}, timeout=30, check=False).returncode == 1
    proc = subprocess.Popen(
        [sys.executable, str(CONTAINER / "entrypoint.py")],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert wait_until(
            lambda: (
                subprocess.run(health, env={**os.environ, **env}, timeout=30, check=False).returncode == 0
            ),
            timeout=30,
        )
        runtime = json.loads(Paths.from_env(env).runtime_file.read_text())
        assert (
            runtime["host"] == "0.0.0.0" and runtime["pid"] == proc.pid
        )  # exec: serve is the entry point's pid
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/messages",
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": ACCESS_KEY, "anthropic-version": "2023-06-01"},
            timeout=10,
        )
        assert response.status_code == 200
        assert anthropic.api_key(anthropic.last_request) == "sk-ant-org-1"
        status = httpx.get(
            f"http://127.0.0.1:{port}/status", headers={"x-api-key": ACCESS_KEY}, timeout=5
        ).json()
        assert wait_until(
            lambda: httpx.get(
                f"http://127.0.0.1:{port}/status", headers={"x-api-key": ACCESS_KEY}, timeout=5
            ).json()["team"]["shared_state"]["connected"]
        )
        assert status["team"]["shared_state"]["url"] == redis_server.url
    finally:
        proc.terminate()
        proc.wait(15)


def test_the_recipes_agree_with_the_entry_point() -> None:
    containerfile = (CONTAINER / "Containerfile").read_text()
    assert 'ENTRYPOINT ["python", "/app/entrypoint.py"]' in containerfile
    assert '"/app/healthcheck.py"' in containerfile and "USER headway" in containerfile
    yaml = YAML(typ="safe")
    compose = yaml.load((CONTAINER / "compose.yaml").read_text())
    replicas = [name for name in compose["services"] if name.startswith("headway")]
    assert len(replicas) == 2 and "redis" in compose["services"]
    for name in replicas:
        environment = compose["services"][name]["environment"]
        assert environment["HEADWAY_SHARED_STATE_URL"] == "redis://redis:6379/0"
        assert "HEADWAY_ACCESS_KEY" in environment
    documents = list(yaml.load_all((CONTAINER / "kubernetes.yaml").read_text()))
    deployment = next(
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "headway"
    )
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {e["name"] for e in container["env"]} >= {"HEADWAY_ACCESS_KEY", "HEADWAY_SHARED_STATE_URL"}
    assert container["readinessProbe"]["exec"]["command"] == ["python", "/app/healthcheck.py"]
