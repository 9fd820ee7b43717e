"""`headway serve --host 0.0.0.0`: refused without --allow-remote; with it, the access key is always required, Host
headers must be loopback or configured, and the log says TLS belongs to a reverse proxy."""

from __future__ import annotations

import httpx

from proxy.config.paths import Paths
from proxy.config.store import SettingsStore
from tests.support.gateway import run_cli, start_gateway_process


def test_a_remote_host_is_refused_without_allow_remote() -> None:
    result = run_cli("serve", "--host", "0.0.0.0", "--port", "0", timeout=60)
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0" in result.stderr and "--allow-remote" in result.stderr
    assert not Paths.from_env().runtime_file.exists()


def test_a_remote_host_in_the_settings_is_refused_too() -> None:
    paths = Paths.from_env()
    paths.ensure()
    store = SettingsStore.for_paths(paths)
    store.load(create=True)
    store.update(lambda s: setattr(s.gateway, "host", "0.0.0.0"))
    result = run_cli("serve", "--port", "0", timeout=60)
    assert result.returncode == 1 and "--allow-remote" in result.stderr


def test_allow_remote_serves_with_the_key_always_required_and_hosts_checked() -> None:
    paths = Paths.from_env()
    paths.ensure()
    store = SettingsStore.for_paths(paths)
    store.load(create=True)

    def team(settings: object) -> None:
        gateway = settings.gateway  # type: ignore[attr-defined]
        gateway.allowed_hosts = ["0.0.0.0", "gateway.team.example"]
        gateway.require_access_key = False  # only counts on loopback: a remote bind requires the key anyway

    store.update(team)
    process = start_gateway_process(args=("--host", "0.0.0.0", "--allow-remote"))
    try:
        port = process.url.rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}/status"
        key = {"authorization": f"Bearer {process.key}"}
        host = {"host": "gateway.team.example"}
        assert httpx.get(url, headers=host, timeout=5).status_code == 401
        assert httpx.get(url, headers={**host, **key}, timeout=5).status_code == 200
        foreign = httpx.get(url, headers={"host": "evil.example", **key}, timeout=5)
        assert foreign.status_code == 403 and "gateway.allowed_hosts" in foreign.text
        assert "put a reverse proxy with TLS in front" in (paths.log_dir / "headway.log").read_text()
    finally:
        process.stop()
