"""tray/ stays in small modules named for what they own (issue 13): none over 600 lines, the `headway` command one
module per command group behind the same entry point, and no private copy of a duration formatter."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 600


def test_no_module_in_tray_is_over_600_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in sorted((ROOT / "tray").rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_headway_script_is_tray_cli_main_with_every_command_group() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["headway"] == "tray.cli:main"
    import tray.cli

    assert callable(tray.cli.main)
    assert isinstance(tray.cli.cli, click.Group)
    ctx = click.Context(tray.cli.cli)
    names = tray.cli.cli.list_commands(
        ctx
    )  # commands load when they run (tray/cli/root.py): list, then load each
    assert set(names) == {
        "accounts", "analyze", "autostart", "cache", "configure", "doctor", "dumps", "key", "keys", "login", "models",
        "relay",
        "secrets", "serve", "settings", "status", "usage",
    }  # fmt: skip
    assert all(isinstance(tray.cli.cli.get_command(ctx, name), click.Command) for name in names)


def test_python_dash_m_tray_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tray", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("headway, version ")


def test_durations_are_formatted_only_by_proxy_durations() -> None:
    """A function named like a duration formatter anywhere in tray/ or proxy/ but proxy/durations.py is a copy."""
    copies = []
    for package in ("tray", "proxy"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "proxy" / "durations.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.FunctionDef)
                    and node.name.endswith("duration")
                    and "parse" not in node.name
                ):
                    copies.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert copies == []
