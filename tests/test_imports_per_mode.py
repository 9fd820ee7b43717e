"""What a Headway process imports depends on what it does; each library loads when its mode first needs it.

- Team mode: `redis` (and the OpenTelemetry SDK it pulls in when installed) load only when a shared-state URL is
  configured or a `headway keys` command reaches Redis — so `headway`, `headway serve` and every other command start
  without them (and keep working where they cannot be imported: a CLI run under another Python).
- `headway serve` (headless, secrets in a file): the engine built and serving, one request proxied, imports no tray
  (Pillow, pystray), no settings page (Flask, werkzeug, Jinja — until the page serves its first request), no
  Prometheus client (until /metrics is scraped), no agent-config editors (tomlkit, ruamel), no relay client (until
  the relay is on), no analyzer, no keyring (the file backend; with the system keychain, keyring without the
  backends it does not use), no price table (until the first cost), no wsproto (until an agent opens a WebSocket).

Each check runs a fresh interpreter (a subprocess) and reads its ``sys.modules`` at each step, and every "not yet"
is paired with the step that does load it, so a check cannot pass because the module is simply never imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeAnthropic
from tests.support.gateway import secret_service_available
from tests.support.python_json import run_python_json

ROOT = Path(__file__).resolve().parents[1]

#: What a headless gateway should not carry until it is used (module names and their submodules).
HEAVY = (
    "PIL",
    "pystray",
    "flask",
    "werkzeug",
    "jinja2",
    "prometheus_client",
    "tomlkit",
    "ruamel",
    "wsproto",
    "keyring",
    "secretstorage",
    "jeepney",
    "gi",
    "keyrings",
    "redis",
    "opentelemetry",
    "proxy.relay.client",
    "proxy.analyzer",
    "proxy.features.price_table",
    "web_ui.app",
    "web_ui.views",
    "web_ui.callback",
    "web_ui.agents",
)

# Runs in a fresh interpreter: `headway serve`'s composition (tray.app.build_services → Services.start, headless),
# then one step at a time, printing which HEAVY modules are loaded after each.
_DRIVER = r"""
import http.client, json, socket, sys
from urllib.parse import urlsplit

HEAVY = tuple(json.loads(sys.argv[1]))
def heavy():
    return sorted({h for h in HEAVY for m in list(sys.modules) if m == h or m.startswith(h + ".")})

def call(url, method="GET", body=None, headers=None):
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=20)
    conn.request(method, parts.path or "/", body, headers or {})
    response = conn.getresponse()
    text = response.read().decode(errors="replace")
    conn.close()
    if response.status >= 400:
        print(url, response.status, text[:500], file=sys.stderr)
    return response.status

from proxy.config.paths import Paths
from proxy.engine import EngineOptions
from proxy.secrets.keychain import ensure_access_key
from tray.app import build_services

steps = {"imported": heavy()}
services = build_services(Paths.from_env(), EngineOptions(port=0))
services.start()
try:
    steps["serving"] = heavy()
    key = ensure_access_key(services.keychain)
    base = services.engine.base_url
    body = json.dumps({"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]})
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
    steps["proxied_status"] = call(base + "/v1/messages", "POST", body, headers)
    steps["proxied"] = heavy()
    steps["metrics_status"] = call(base + "/metrics", headers={"authorization": "Bearer " + key})
    steps["scraped"] = heavy()
    steps["page_status"] = call(services.web.url + "/")
    steps["page"] = heavy()
    where = urlsplit(base)
    with socket.create_connection((where.hostname, where.port), timeout=20) as ws:
        ws.sendall(("GET /v1/responses HTTP/1.1\r\nHost: " + where.netloc + "\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    "Authorization: Bearer " + key + "\r\n\r\n").encode())
        steps["upgrade_status"] = ws.recv(64).split(b" ")[1].decode()
    steps["upgraded"] = heavy()
finally:
    services.stop()
print(json.dumps(steps))
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HEADWAY_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    return {**env, "HEADWAY_HOME": str(home), **extra}


def _home(tmp_path: Path, backend: str, settings: dict[str, Any] | None = None) -> Path:
    """A HEADWAY_HOME with one Anthropic API-key account, added by the real CLI (the test process's own keyring
    is an in-memory double; a subprocess sees the real one)."""
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True, mode=0o700)
    body = {"secrets": {"backend": backend}, **(settings or {})}
    (home / "config" / "settings.json").write_text(json.dumps(body))
    subprocess.run(
        [sys.executable, "-m", "tray", "accounts", "add", "anthropic", "--label", "main", "--api-key-stdin"],
        input="sk-ant-main-0000\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(home),
        timeout=60,
        check=True,
    )
    return home


def _serve(home: Path, upstream: str) -> dict[str, Any]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HEADWAY_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update({"HEADWAY_HOME": str(home), "HEADWAY_ANTHROPIC_BASE_URL": upstream, "HEADWAY_WEB_PORT": "0"})
    steps = run_python_json(_DRIVER, json.dumps(HEAVY), env=env, timeout=120)
    assert steps["proxied_status"] == 200 and steps["metrics_status"] == 200, steps
    return steps


def test_the_cli_and_the_engine_start_without_team_mode_libraries() -> None:
    code = (
        "import sys, tray.cli, proxy.engine, proxy.shared.admin;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'redis', 'opentelemetry'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.timeout(150)
def test_serve_imports_each_library_when_its_mode_first_needs_it(
    tmp_path: Path, anthropic: FakeAnthropic
) -> None:
    steps = _serve(_home(tmp_path, "file"), anthropic.url)
    assert steps["imported"] == [] and steps["serving"] == [], steps
    # A finished request's cost is estimated (the price table) right after its last byte: maybe not yet here.
    assert set(steps["proxied"]) <= {"proxy.features.price_table"}, steps
    assert set(steps["scraped"]) == {"proxy.features.price_table", "prometheus_client"}, steps
    # The page's first request builds the Flask app (its views bring the analyzer and the agent-config editors).
    assert {"flask", "werkzeug", "jinja2", "web_ui.app", "web_ui.views"} <= set(steps["page"]), steps
    # Never, in a headless gateway whose relay is off: the tray, the relay client, a keyring (file backend).
    # An agent's WebSocket (the Responses API) brings uvicorn's wsproto protocol.
    assert steps["upgrade_status"] == "101" and "wsproto" not in steps["page"], steps
    assert "wsproto" in steps["upgraded"], steps
    for never in ("PIL", "pystray", "proxy.relay.client", "keyring", "secretstorage", "redis"):
        assert never not in steps["upgraded"], (never, steps)


@pytest.mark.timeout(150)
def test_the_relay_client_loads_with_the_relay_on(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    relay = {"relay": {"enabled": True, "url": "https://relay.example.workers.dev"}}
    steps = _serve(_home(tmp_path, "file", relay), anthropic.url)
    assert "proxy.relay.client" not in steps["serving"], steps
    assert "proxy.relay.client" in steps["proxied"], (
        steps
    )  # no relay secret: built, then the request went direct


@pytest.mark.timeout(150)
def test_the_system_keychain_loads_keyring(tmp_path: Path, anthropic: FakeAnthropic) -> None:
    if not secret_service_available():
        if os.environ.get("CI") == "true":
            pytest.fail("no Secret Service in CI (scripts/test starts gnome-keyring)")
        pytest.skip("no Secret Service on this session bus (run through scripts/test)")
    steps = _serve(_home(tmp_path, "system"), anthropic.url)
    assert "keyring" in steps["serving"], steps
    # The Secret Service backend is chosen without keyring's discovery, which loads every backend: libsecret's
    # PyGObject (gi) and keyrings.alt among them (proxy/secrets/system_keyring.py).
    assert "gi" not in steps["upgraded"] and "keyrings" not in steps["upgraded"], steps


def test_a_command_imports_only_its_own_module() -> None:
    """`headway serve` resolves its command without importing the other commands' modules (tray.cli.root's
    COMMAND_MODULES); and that map names every command the modules register, and nothing else."""
    code = """
import importlib, json, sys, click
from tray.cli import cli
from tray.cli.root import COMMAND_MODULES
with click.Context(cli) as ctx:
    assert cli.get_command(ctx, "serve") is not None
loaded = sorted(m for m in sys.modules if m.startswith("tray.cli.") and m != "tray.cli.root")
for module in set(COMMAND_MODULES.values()):
    importlib.import_module("tray.cli." + module)
print(json.dumps({"loaded": loaded, "registered": sorted(cli.commands)}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    from tray.cli.root import COMMAND_MODULES

    found = json.loads(out.stdout)
    assert found["loaded"] == ["tray.cli.serve"]
    assert found["registered"] == sorted(COMMAND_MODULES)


def test_bare_headway_imports_the_tray_only_to_show_it() -> None:
    """`headway` without a display runs headless from tray.launch, which does not import the tray's own modules;
    tray.tray (what a display gets) does import Pillow."""
    code = """
import json, sys
import tray.launch
before = sorted(m for m in ("PIL", "pystray", "tray.tray", "tray.icon", "tray.menu") if m in sys.modules)
import tray.tray
print(json.dumps({"launch": before, "tray": "PIL" in sys.modules}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert json.loads(out.stdout) == {"launch": [], "tray": True}
