"""Launch at login: the XDG entry (validated and run for real with dex), the LaunchAgent plist, the Run key."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from tray.autostart import APP_ID, AutostartError, for_platform, launch_command, launch_environment
from tray.autostart.linux import LinuxAutostart, desktop_entry, exec_line, parse_desktop_entry
from tray.autostart.macos import MacAutostart
from tray.autostart.windows import RUN_KEY, VALUE_NAME, WindowsAutostart
from tray.cli import cli


def need(tool: str) -> str:
    """The tool's path; skip without it locally, fail in CI (where scripts/install-test-deps installs it)."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (scripts/install-test-deps installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def unquote_exec(value: str) -> list[str]:
    """The Desktop Entry spec's reading of an Exec value (string escapes first, then quoting) — for round trips."""
    text, i = "", 0
    while i < len(value):  # string-level: \\ → \ (and \s \n \t \r)
        if value[i] == "\\" and i + 1 < len(value):
            text += {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(
                value[i + 1], "\\" + value[i + 1]
            )
            i += 2
        else:
            text += value[i]
            i += 1
    args: list[str] = []
    current, quoted, in_arg, i = "", False, False, 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\" and i + 1 < len(text) and text[i + 1] in '"`$\\':
                current += text[i + 1]
                i += 1
            elif c == '"':
                quoted = False
            else:
                current += c
        elif c == '"':
            quoted = in_arg = True
        elif c == " ":
            if in_arg:
                args.append(current)
            current, in_arg = "", False
        else:
            current += c
            in_arg = True
        i += 1
    assert not quoted
    if in_arg:
        args.append(current)
    return [a.replace("%%", "%") for a in args]


# --------------------------------------------------------------------------- Linux


def test_exec_quoting_round_trips_awkward_arguments() -> None:
    command = [
        "/opt/Head way/headway",
        "plain",
        "$HOME",
        'say "hi"',
        "back\\slash",
        "100%",
        "it's",
        "`tick`",
        "a=b",
    ]
    line = exec_line(command, {"HEADWAY_HOME": "/tmp/my home"})
    assert unquote_exec(line) == ["env", "HEADWAY_HOME=/tmp/my home", *command]
    assert exec_line(["/usr/bin/headway"], {}) == "/usr/bin/headway"
    with pytest.raises(AutostartError):
        exec_line(["bad\nline"], {})


def test_the_desktop_entry_is_valid(tmp_path: Path) -> None:
    validate = need("desktop-file-validate")
    entry = LinuxAutostart(
        ["/opt/Head way/headway", "100%"], {"HEADWAY_HOME": "/tmp/h w"}, config_home=tmp_path
    )
    entry.enable()
    result = subprocess.run([validate, str(entry.path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    keys = parse_desktop_entry(entry.path.read_text())
    assert keys["Type"] == "Application" and keys["Name"] == "Headway"
    assert keys["X-GNOME-Autostart-enabled"] == "true"
    assert unquote_exec(keys["Exec"]) == ["env", "HEADWAY_HOME=/tmp/h w", "/opt/Head way/headway", "100%"]


def test_linux_on_off_status(tmp_path: Path) -> None:
    entry = LinuxAutostart(["/usr/bin/headway"], config_home=tmp_path)
    assert entry.location() == str(tmp_path / "autostart" / "headway.desktop")
    assert not entry.is_enabled() and entry.registered_command() is None
    entry.set_enabled(True)
    assert entry.is_enabled() and entry.registered_command() == "/usr/bin/headway"
    assert entry.path.stat().st_mode & 0o077 == 0
    entry.path.write_text(entry.path.read_text() + "Hidden=true\n")
    assert not entry.is_enabled()  # the desktop's own "disable" wins
    entry.set_enabled(False)
    assert not entry.path.exists()
    entry.disable()  # twice is fine


def test_dex_runs_the_entry_for_real(tmp_path: Path) -> None:
    dex = need("dex")
    marker = tmp_path / "ran marker.txt"
    script = tmp_path / "mark er.py"
    script.write_text(
        "import os, pathlib, sys\n"
        "pathlib.Path(sys.argv[1]).write_text(os.environ.get('HEADWAY_HOME', '-') + '|' + '|'.join(sys.argv[2:]))\n"
    )
    config = tmp_path / "xdg config"
    entry = LinuxAutostart(
        [sys.executable, str(script), str(marker), "two words"],
        {"HEADWAY_HOME": str(tmp_path / "h w")},
        config_home=config,
    )
    entry.enable()
    env = {**os.environ, "XDG_CONFIG_HOME": str(config), "XDG_CONFIG_DIRS": str(tmp_path / "none")}
    result = subprocess.run(
        [dex, "--autostart", "--verbose"], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(entry.path) in result.stdout
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.read_text() == f"{tmp_path / 'h w'}|two words"


def test_desktop_entry_text() -> None:
    text = desktop_entry(["/usr/bin/headway"], {})
    assert text.startswith("[Desktop Entry]\nType=Application\n") and text.endswith("\n")
    assert "Exec=/usr/bin/headway\n" in text and "Terminal=false\n" in text


# --------------------------------------------------------------------------- macOS


def test_launch_agent_plist(tmp_path: Path) -> None:
    agent = MacAutostart(
        ["/Applications/Headway.app/Contents/MacOS/Headway"], {"HEADWAY_HOME": "/tmp/h"}, home=tmp_path
    )
    assert not agent.is_enabled()
    agent.enable()
    path = tmp_path / "Library" / "LaunchAgents" / f"{APP_ID}.plist"
    assert agent.location() == str(path)
    data = plistlib.loads(path.read_bytes())
    assert data == {
        "Label": APP_ID,
        "ProgramArguments": ["/Applications/Headway.app/Contents/MacOS/Headway"],
        "RunAtLoad": True,
        "KeepAlive": False,
        "ProcessType": "Interactive",
        "LimitLoadToSessionType": "Aqua",
        "EnvironmentVariables": {"HEADWAY_HOME": "/tmp/h"},
    }
    assert (
        agent.is_enabled()
        and agent.registered_command() == "/Applications/Headway.app/Contents/MacOS/Headway"
    )
    data["Disabled"] = True
    path.write_bytes(plistlib.dumps(data))
    assert not agent.is_enabled()
    agent.disable()
    assert not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a plist")
    with pytest.raises(AutostartError):
        agent.is_enabled()


# --------------------------------------------------------------------------- Windows


class FakeRunKey:
    """The Run key at the interface boundary: what WindowsAutostart reads and writes."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.fail = False

    def get(self, name: str) -> str | None:
        if self.fail:
            raise PermissionError("access denied")
        return self.values.get(name)

    def set(self, name: str, value: str) -> None:
        if self.fail:
            raise PermissionError("access denied")
        self.values[name] = value

    def delete(self, name: str) -> None:
        self.values.pop(name, None)


def test_windows_run_key() -> None:
    key = FakeRunKey()
    entry = WindowsAutostart([r"C:\Program Files\Headway\Headway.exe"], run_key=key)
    assert entry.location() == rf"HKEY_CURRENT_USER\{RUN_KEY}\{VALUE_NAME}"
    assert not entry.is_enabled()
    entry.enable()
    assert key.values == {"Headway": r'"C:\Program Files\Headway\Headway.exe"'}
    assert entry.is_enabled() and entry.registered_command() == r'"C:\Program Files\Headway\Headway.exe"'
    entry.disable()
    assert key.values == {} and not entry.is_enabled()
    key.fail = True
    with pytest.raises(AutostartError, match="access denied"):
        entry.enable()


def test_windows_refuses_what_a_run_key_cannot_carry() -> None:
    key = FakeRunKey()
    entry = WindowsAutostart(["Headway.exe"], {"HEADWAY_HOME": r"D:\portable"}, run_key=key)
    with pytest.raises(AutostartError, match="HEADWAY_HOME"):
        entry.enable()
    assert key.values == {}


def test_the_real_registry_is_only_touched_on_windows() -> None:
    if sys.platform == "win32":
        pytest.skip("this machine has a registry")
    with pytest.raises(AutostartError, match="only on Windows"):
        WindowsAutostart(["Headway.exe"]).is_enabled()


# --------------------------------------------------------------------------- choosing, commands, CLI


def test_each_platform_gets_its_mechanism() -> None:
    assert isinstance(for_platform("linux", ["x"], {}), LinuxAutostart)
    assert isinstance(for_platform("freebsd13", ["x"], {}), LinuxAutostart)
    assert isinstance(for_platform("darwin", ["x"], {}), MacAutostart)
    assert isinstance(for_platform("win32", ["x"], {}), WindowsAutostart)


def test_the_launch_command_starts_this_headway(monkeypatch: pytest.MonkeyPatch) -> None:
    assert launch_command() == [sys.executable, "-m", "tray"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert launch_command() == [sys.executable]
    assert launch_environment({"HEADWAY_HOME": "/tmp/x/../y"}) == {
        "HEADWAY_HOME": str(Path("/tmp/y").resolve())
    }
    assert launch_environment({}) == {}


def test_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    runner = CliRunner()
    off = runner.invoke(cli, ["autostart"])
    assert off.exit_code == 0 and off.output.startswith("off: XDG autostart entry ")
    on = runner.invoke(cli, ["autostart", "on"])
    assert on.exit_code == 0, on.output
    status = runner.invoke(cli, ["autostart", "status"])
    assert (
        status.output.splitlines()[0]
        == f"on: XDG autostart entry {tmp_path / 'cfg' / 'autostart' / 'headway.desktop'}"
    )
    assert status.output.splitlines()[1].startswith("runs: env HEADWAY_HOME=")
    assert runner.invoke(cli, ["autostart", "off"]).output == "off\n"
    assert not (tmp_path / "cfg" / "autostart" / "headway.desktop").exists()
