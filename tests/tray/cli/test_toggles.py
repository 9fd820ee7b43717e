"""`headway cache mode` and `headway dumps` change the one settings file, and refuse to overwrite a broken one."""

from __future__ import annotations

import json

from proxy.config.paths import Paths
from tests.support.gateway import run_cli


def test_cache_mode_and_dumps_write_the_settings_file() -> None:
    settings = Paths.from_env().settings_file
    assert run_cli("cache", "mode").stdout.strip() == "off"
    changed = run_cli("cache", "mode", "hybrid")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(settings.read_text())["cache"]["anthropic_mode"] == "hybrid"
    assert run_cli("cache", "mode").stdout.strip() == "hybrid"
    assert run_cli("cache", "mode", "forever").returncode == 2

    on = run_cli("dumps", "on")
    assert on.returncode == 0 and "dumps on" in on.stdout
    assert json.loads(settings.read_text())["dumps"]["enabled"] is True
    assert str(Paths.from_env().dumps_dir) in run_cli("dumps").stdout
    run_cli("dumps", "off")
    assert json.loads(settings.read_text())["dumps"]["enabled"] is False


def test_toggles_refuse_a_broken_settings_file() -> None:
    settings = Paths.from_env().settings_file
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text('{"routing": {"mode": "round-robin"}}')
    refused = run_cli("dumps", "on")
    assert refused.returncode == 1
    assert "routing.mode" in refused.stderr and "nothing was changed" in refused.stderr
    assert settings.read_text() == '{"routing": {"mode": "round-robin"}}'
