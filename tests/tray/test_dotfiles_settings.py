"""A settings file that is a link into a dotfiles checkout, with a real `headway serve`: an edit of the file in the
checkout, and a command that writes the settings through the link, both apply to the running gateway.

Before, the gateway watched only the config folder, where nothing changes when the linked file does: the edit
waited for a restart, and `headway accounts add` printed success while the running gateway went on without the
account."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from proxy.config.paths import Paths
from tests.support.gateway import run_cli, start_gateway_process, wait_until


def _status() -> dict[str, Any]:
    out = run_cli("status", "--json")
    assert out.returncode == 0, out.stderr
    status: dict[str, Any] = json.loads(out.stdout)
    return status


def test_edits_in_a_dotfiles_checkout_apply_to_the_running_gateway(file_home: Paths, tmp_path: Path) -> None:
    checkout = tmp_path / "dotfiles" / "headway"
    checkout.mkdir(parents=True)
    real = checkout / "settings.json"
    real.write_bytes(file_home.settings_file.read_bytes())
    file_home.settings_file.unlink()
    file_home.settings_file.symlink_to(real)

    gateway = start_gateway_process()
    try:
        assert _status()["routing"] == "main-first"
        settings = json.loads(real.read_text())
        settings["routing"] = {"mode": "sticky"}
        real.write_text(json.dumps(settings))  # the user edits the file in the checkout
        assert wait_until(lambda: _status()["routing"] == "sticky", timeout=10), gateway.output()

        added = run_cli(
            "accounts", "add", "anthropic", "--label", "work", "--api-key-stdin", input="sk-ant-x\n"
        )
        assert added.returncode == 0, added.stderr
        assert file_home.settings_file.is_symlink(), "the command replaced the link with a file"
        assert "work" in real.read_text()
        assert wait_until(lambda: [a["id"] for a in _status()["accounts"]] == ["work"], timeout=10), (
            gateway.output()
        )
    finally:
        assert gateway.stop() == 0
