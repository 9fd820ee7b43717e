"""`headway settings path|schema|check` as real subprocesses."""

from __future__ import annotations

import json

from proxy.config.paths import Paths
from proxy.config.settings import json_schema
from tests.tray.cli.harness import ANTHROPIC_KEY, cli, cli_parallel, fails, ok

# --------------------------------------------------------------------------- settings


def test_settings_path_schema_and_check(file_home: Paths) -> None:
    path, schema, check = cli_parallel(["settings", "path"], ["settings", "schema"], ["settings", "check"])
    assert ok(path).strip() == str(file_home.settings_file)
    assert json.loads(ok(schema)) == json_schema()
    assert ok(check).strip() == f"{file_home.settings_file}: valid"

    file_home.settings_file.write_text(
        '{"secrets": {"backend": "file"}, "routing": {"mode": "random"}, "gatway": {}}'
    )
    check, status = cli_parallel(["settings", "check"], ["status", "--json"])
    err = fails(check)
    assert f"{file_home.settings_file}: routing.mode: Input should be" in err and "(got 'random')" in err
    assert f"{file_home.settings_file}: gatway: unknown setting" in err
    data = json.loads(ok(status))
    assert data["running"] is False
    assert any(p.startswith("routing.mode:") for p in data["settings_error"])

    # commands that write refuse to overwrite a broken file
    err = fails(
        cli("accounts", "add", "anthropic", "--label", "W", "--api-key-stdin", input=ANTHROPIC_KEY + "\n")
    )
    assert "the settings file cannot be used, so nothing was changed" in err and "routing.mode" in err
    assert "gatway" in file_home.settings_file.read_text()
