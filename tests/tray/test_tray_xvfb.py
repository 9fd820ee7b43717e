"""The real tray on a real (virtual) desktop: Xvfb + trayer (the tray host) + dunst (notifications), on a D-Bus
session bus of its own from ``dbus-run-session``.

``headway`` runs as a subprocess with a pystray GTK backend. The test looks at the screen with ``import -window
root`` and acts with ``xdotool``: the icon docks and shows the quota, a real right-click opens the menu, a real click
on "Record request dumps" writes the settings file, a second launch exits and makes the first open the settings page,
and "Quit Headway" ends the process with status 0. Screenshots go to ``test-artifacts/tray/``.

Opening pages and files is observed, not performed: ``BROWSER`` and ``xdg-open`` point at a script that writes
its argument to a file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from proxy.config.settings import Settings
from tray.icon import COLORS, Level
from tray.menu import MenuView, build

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "tray"
TOOLS = ("Xvfb", "xdpyinfo", "trayer", "dunst", "xdotool", "import", "dbus-run-session")
WIDTH, HEIGHT = 800, 600
TRAY_HEIGHT = 32
MENU_BG = (255, 255, 255)

pytestmark = pytest.mark.timeout(120)


def missing(what: str) -> None:
    message = f"{what} (scripts/install-test-deps installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_desktop_stack() -> None:
    if sys.platform != "linux":
        pytest.skip("the Xvfb desktop runs on Linux")
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        missing("missing: " + ", ".join(absent))
    probe = (
        "import gi; gi.require_version('Gtk', '3.0'); gi.require_version('AyatanaAppIndicator3', '0.1'); "
        "from gi.repository import Gtk, AyatanaAppIndicator3"
    )
    if subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30).returncode != 0:
        missing("PyGObject<3.51 with the Gtk 3 and AyatanaAppIndicator3 typelibs is not importable")


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def stop(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)


@dataclass
class Session:
    """A virtual desktop: its environment, and every process started in it (stopped by pid at the end)."""

    env: dict[str, str]
    tmp: Path
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)
    logs: list[Any] = field(default_factory=list)
    artifacts: Path = ARTIFACTS
    bus_child: int = 0

    def start(self, *args: str, log: str | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
        out: Any = subprocess.DEVNULL
        if log:
            out = open(self.tmp / log, "wb")
            self.logs.append(out)
        process = subprocess.Popen(
            args, env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
        )
        self.processes.append(process)
        return process

    def xdotool(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], env=self.env, check=True, timeout=10)

    def screenshot(self, name: str) -> Image.Image:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], env=self.env, check=True, timeout=20)
        with Image.open(path) as image:
            return image.convert("RGB")


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    require_desktop_stack()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opened = tmp_path / "opened.txt"
    for tool in ("xdg-open", "fake-browser"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{opened}"\n')
        script.chmod(0o755)
    runtime = tmp_path / "desktop-runtime"
    runtime.mkdir(mode=0o700)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(tmp_path / "home"),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
        "XDG_DATA_HOME": str(tmp_path / "xdg-data"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "HEADWAY_HOME": str(tmp_path / "headway"),
        "HEADWAY_WEB_PORT": "0",  # the settings page on a free port, never a developer's 7338
        "BROWSER": str(bin_dir / "fake-browser"),
        "NO_AT_BRIDGE": "1",
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
    }
    (tmp_path / "home").mkdir()
    s = Session(env=env, tmp=tmp_path)
    try:
        # The bus lives as long as dbus-run-session's child; ending that child (not dbus-run-session itself, which
        # would orphan the daemon) makes dbus-run-session stop the daemon and exit.
        bus = subprocess.Popen(
            [
                "dbus-run-session",
                "--",
                "sh",
                "-c",
                'echo "$DBUS_SESSION_BUS_ADDRESS"; echo $$; exec sleep 600',
            ],
            env=env,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        s.processes.append(bus)
        assert bus.stdout is not None
        env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().decode().strip()
        s.bus_child = int(bus.stdout.readline().decode().strip() or 0)
        bus.stdout.close()
        assert env["DBUS_SESSION_BUS_ADDRESS"], "dbus-run-session gave no address"

        read, write = os.pipe()
        xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{WIDTH}x{HEIGHT}x24", "-nolisten", "tcp"],
            env=env,
            pass_fds=(write,),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        s.processes.append(xvfb)
        os.close(write)
        with os.fdopen(read) as displayfd:
            display = displayfd.readline().strip()
        assert display, "Xvfb did not report a display"
        env["DISPLAY"] = f":{display}"
        assert wait_for(
            lambda: subprocess.run(["xdpyinfo"], env=env, capture_output=True).returncode == 0, 10
        )

        dunstrc = tmp_path / "dunstrc"
        dunstrc.write_text('[global]\n    origin = bottom-left\n    offset = 10x10\n    font = "Sans 9"\n')
        s.start(
            "trayer",
            "--edge",
            "top",
            "--align",
            "right",
            "--widthtype",
            "request",
            "--height",
            str(TRAY_HEIGHT),
            "--SetDockType",
            "true",
        )
        s.start("dunst", "-config", str(dunstrc))
        yield s
    finally:
        for process in reversed(s.processes):
            if process.args[0] == "dbus-run-session" and s.bus_child and process.poll() is None:
                os.kill(s.bus_child, signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            stop(process)
        for out in s.logs:
            out.close()


# --------------------------------------------------------------------------- Headway's home and what to look for


def seed_home(home: Path) -> None:
    """Settings with two accounts and a quota snapshot for one: the icon shows 38 (% left) in green."""
    (home / "config").mkdir(parents=True)
    (home / "data").mkdir(parents=True)
    settings = {
        "gateway": {"port": 0},
        "secrets": {"backend": "file"},
        "accounts": [
            {"id": "work", "kind": "openai-api-key", "label": "work"},
            {"id": "api", "kind": "anthropic-api-key", "label": "api"},
        ],
    }
    (home / "config" / "settings.json").write_text(json.dumps(settings))
    secrets = {"account:work": "sk-proj-" + "w" * 24, "account:api": "sk-ant-api03-" + "a" * 24}
    (home / "data" / "secrets.json").write_text(json.dumps(secrets))
    (home / "data" / "secrets.json").chmod(0o600)
    now = time.time()
    state = {
        "version": 1,
        "quota": [
            {
                "account_id": "work",
                "updated_at": now,
                "plan_type": "plus",
                "windows": [
                    {"name": "5h", "used_percent": 62.0, "resets_at": now + 4330, "window_minutes": 300},
                    {
                        "name": "weekly",
                        "used_percent": 29.0,
                        "resets_at": now + 3 * 86400,
                        "window_minutes": 10080,
                    },
                ],
            }
        ],
        "health": {"work": {"last_ok_at": now - 30, "last_used_at": now - 30}},
        "pins": {},
    }
    (home / "data" / "state.json").write_text(json.dumps(state))


def settings_on_disk(home: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((home / "config" / "settings.json").read_text())
    return data


def near(pixel: tuple[int, ...], rgb: tuple[int, int, int], tolerance: int = 30) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel[:3], rgb, strict=False))


def region_pixels(
    image: Image.Image, box: tuple[int, int, int, int]
) -> list[tuple[int, int, tuple[int, ...]]]:
    crop = image.crop(box)
    data = crop.tobytes()
    width = crop.width
    return [
        (box[0] + (i // 3) % width, box[1] + (i // 3) // width, tuple(data[i : i + 3]))
        for i in range(0, len(data), 3)
    ]


def docked_icon(image: Image.Image) -> tuple[int, int] | None:
    """The centre of the icon in the tray (top right), found by its green ring."""
    green = [
        (x, y)
        for x, y, p in region_pixels(image, (WIDTH - 200, 0, WIDTH, TRAY_HEIGHT))
        if near(p, COLORS[Level.HEALTHY], 40)
    ]
    if len(green) < 10:
        return None
    xs, ys = [x for x, _ in green], [y for _, y in green]
    return ((min(xs) + max(xs)) // 2, (min(ys) + max(ys)) // 2)


def menu_box(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The open menu's bounding box: the big white area under the tray."""
    white = [(x, y) for x, y, p in region_pixels(image, (0, TRAY_HEIGHT, WIDTH, HEIGHT)) if p == MENU_BG]
    if len(white) < 20000:
        return None
    xs, ys = [x for x, _ in white], [y for _, y in white]
    return (min(xs), min(ys), max(xs), max(ys))


def highlighted_row(image: Image.Image, box: tuple[int, int, int, int]) -> int | None:
    """The y of the keyboard-selected menu item: the band of rows that are mostly one non-white colour."""
    left, top, right, bottom = box
    rows = []
    for y in range(top, bottom):
        line = image.crop((left + 4, y, right - 4, y + 1)).tobytes()
        pixels = [tuple(line[i : i + 3]) for i in range(0, len(line), 3)]
        common = max(set(pixels), key=pixels.count)
        if common != MENU_BG and pixels.count(common) > 0.6 * len(pixels) and max(common) - min(common) > 60:
            rows.append(y)
    return (min(rows) + max(rows)) // 2 if rows else None


def selectable_index(text: str) -> int:
    """Keyboard position of a top-level menu item (GTK skips separators and insensitive items)."""
    view = MenuView(
        status={"url": "x", "summary": {"headline": "h", "accounts": [{"id": "work"}, {"id": "api"}]}},
        settings=Settings(),
        autostart=False,
        paused=text.startswith("Resume"),
    )
    names: Any = type("A", (), {"__getattr__": lambda self, name: lambda *a: None})()
    selectable = [
        e
        for e in build(view, names)
        if (not e.is_separator and e.enabled and e.action is not None) or e.submenu
    ]
    return next(i for i, e in enumerate(selectable) if e.text.startswith(text))


# --------------------------------------------------------------------------- the test


def open_menu(session: Session, icon: tuple[int, int], name: str) -> tuple[int, int, int, int]:
    session.xdotool("mousemove", str(icon[0]), str(icon[1]), "click", "3")
    box: tuple[int, int, int, int] | None = wait_for(lambda: menu_box(session.screenshot(name)), 10, 0.2)
    assert box, f"the menu did not open (see {session.artifacts / name}.png)"
    return box


def click_item(session: Session, icon: tuple[int, int], text: str, name: str) -> None:
    """Open the menu, select ``text`` with the keyboard, then click the highlighted row with the mouse."""
    box = open_menu(session, icon, f"{name}-menu")
    for _ in range(selectable_index(text) + 1):
        session.xdotool("key", "Down")
    row = wait_for(lambda: highlighted_row(session.screenshot(f"{name}-selected"), box), 5, 0.2)
    assert row, f"no highlighted row for {text!r}"
    session.xdotool("mousemove", str((box[0] + box[2]) // 2), str(row), "click", "1")


@pytest.mark.parametrize("backend", ["appindicator", "gtk"])
def test_the_tray_on_a_real_desktop(session: Session, backend: str) -> None:
    session.artifacts = ARTIFACTS / backend
    home = Path(session.env["HEADWAY_HOME"])
    seed_home(home)
    session.env["PYSTRAY_BACKEND"] = backend
    started = time.monotonic()
    tray = session.start(sys.executable, "-m", "tray", log="headway.log", cwd=str(ROOT))
    log = session.tmp / "headway.log"

    runtime = home / "run" / "runtime.json"
    assert wait_for(runtime.exists, 20), log.read_text()
    icon = wait_for(lambda: docked_icon(session.screenshot("1-docked")), 20, 0.3)
    assert icon, f"the icon did not dock; see {session.artifacts}/1-docked.png\n{log.read_text()}"
    docked_after = time.monotonic() - started

    # A real right-click opens the menu; a real click on "Record request dumps" writes the settings file.
    assert settings_on_disk(home).get("dumps", {}).get("enabled") is not True
    click_item(session, icon, "Record request dumps", "2-dumps")
    assert wait_for(lambda: settings_on_disk(home).get("dumps", {}).get("enabled") is True, 5), (
        log.read_text()
    )

    # The menu shows the change: reopen it and look (the check box is drawn ticked).
    open_menu(session, icon, "3-menu-after-toggle")
    session.xdotool("key", "Escape")

    # Pausing the gateway turns the icon grey with a pause sign within seconds; resuming brings the quota back.
    click_item(session, icon, "Pause gateway", "3-pause")
    assert wait_for(lambda: settings_on_disk(home).get("gateway", {}).get("paused") is True, 5), (
        log.read_text()
    )
    assert wait_for(lambda: docked_icon(session.screenshot("3-paused")) is None, 5), "the icon stayed green"
    paused = region_pixels(session.screenshot("3-paused"), (WIDTH - 40, 0, WIDTH, TRAY_HEIGHT))
    assert sum(1 for _, _, p in paused if p == (255, 255, 255)) > 20  # the pause bars on the dark disc
    click_item(session, icon, "Resume gateway", "3-resume")
    assert wait_for(lambda: docked_icon(session.screenshot("3-resumed")), 5), "the quota did not come back"

    # A second launch exits at once and makes the first open the settings page.
    second = subprocess.run(
        [sys.executable, "-m", "tray"],
        env=session.env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 0, second.stderr
    assert "already running" in second.stderr and "opening its settings page" in second.stderr
    opened = session.tmp / "opened.txt"
    assert wait_for(opened.exists, 5), log.read_text()
    target = opened.read_text().splitlines()[-1]
    assert _opens_the_page_signed_in(target) or target.endswith("settings.json")

    # "Connect an agent" without a clipboard tool: the settings go to a file and a notification says where.
    click_item(session, icon, "Connect an agent", "4-connect")
    session.xdotool("key", "Right", "Down", "Down", "Down", "Return")  # Claude Code
    snippet = home / "config" / "connect-claude.txt"
    assert wait_for(snippet.exists, 5), log.read_text()
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:" in snippet.read_text()
    time.sleep(0.5)
    session.screenshot("5-notification")

    # Hover: GTK status icons show the tooltip (labeled numbers); AppIndicator has no tooltips by design.
    session.xdotool("mousemove", str(icon[0]), str(icon[1]))
    if backend == "gtk":

        def tooltip() -> bool:
            shot = session.screenshot("6-hover")
            text = [p for _, _, p in region_pixels(shot, (0, TRAY_HEIGHT + 2, WIDTH, 140)) if min(p) > 200]
            return len(text) > 150

        assert wait_for(tooltip, 5, 0.3), f"no tooltip; see {session.artifacts}/6-hover.png"
    else:
        time.sleep(1.0)
        session.screenshot("6-hover")

    # Quit from the menu: the process ends cleanly and removes its runtime file.
    box = open_menu(session, icon, "7-quit-menu")
    assert box
    session.xdotool("key", "Up", "Return")
    assert wait_for(lambda: tray.poll() is not None, 15), log.read_text()
    assert tray.returncode == 0, log.read_text()
    assert not runtime.exists()
    assert docked_after < 15


def test_without_a_display_it_says_so_and_runs_headless(tmp_path: Path) -> None:
    home = tmp_path / "headway"
    seed_home(home)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(HEADWAY_HOME=str(home), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "tray"],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for((home / "run" / "runtime.json").exists, 20)
        process.terminate()
        out, err = process.communicate(timeout=15)
    finally:
        stop(process)
    assert process.returncode == 0, err
    assert "No display found: running headless" in err
    assert "Headway gateway on http://127.0.0.1:" in out


def _opens_the_page_signed_in(target: str) -> bool:
    """The browser got an opener page (web_ui/opener.py), never the token itself: a private file that forwards to
    the page's one-time sign-in link."""
    if "token=" in target or not target.startswith("file://"):
        return False
    page = Path(urllib.parse.unquote(urllib.parse.urlsplit(target).path))
    return (
        page.parent.name == "web-open"
        and page.stat().st_mode & 0o077 == 0
        and "/login?token=" in page.read_text()
    )


def test_a_second_launch_next_to_headless_serve_opens_its_page(tmp_path: Path) -> None:
    """No tray to take the request: the second launch signs a browser in to the running page itself."""
    home = tmp_path / "headway"
    seed_home(home)
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "fake-browser"
    browser.write_text(f'#!/bin/sh\nprintf "%s\\n" "$1" >> "{opened}"\n')
    browser.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(HEADWAY_HOME=str(home), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    serve = subprocess.Popen(
        [sys.executable, "-m", "tray", "serve", "--port", "0"],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for((home / "run" / "web.json").exists, 20)
        second = subprocess.run(
            [sys.executable, "-m", "tray"],
            env={
                **env,
                "DISPLAY": ":4242",
                "BROWSER": str(browser),
            },  # a display only in name: the browser is fake
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        stop(serve, timeout=10)
    assert second.returncode == 0, second.stderr
    assert "without a tray; opened its settings page" in second.stderr
    assert _opens_the_page_signed_in(opened.read_text().splitlines()[-1])
    assert serve.returncode == 0


# --------------------------------------------------------------------------- health changes reach the tray at once


def seed_single_anthropic(home: Path, upstream: str) -> None:
    """One Anthropic key with fresh, healthy quota (90 % left) and its upstream a fake on 127.0.0.1."""
    (home / "config").mkdir(parents=True)
    (home / "data").mkdir(parents=True)
    settings = {
        "gateway": {"port": 0},
        "secrets": {"backend": "file"},
        "upstreams": {"anthropic": upstream},
        "accounts": [{"id": "api", "kind": "anthropic-api-key", "label": "api"}],
    }
    (home / "config" / "settings.json").write_text(json.dumps(settings))
    (home / "data" / "secrets.json").write_text(json.dumps({"account:api": "sk-ant-api03-" + "a" * 24}))
    (home / "data" / "secrets.json").chmod(0o600)
    now = time.time()
    window = {"name": "tokens", "limit": 100000, "remaining": 90000, "resets_at": now + 3600}
    state = {
        "version": 1,
        "quota": [{"account_id": "api", "updated_at": now, "windows": [window]}],
        "health": {"api": {"last_ok_at": now - 30, "last_used_at": now - 30}},
        "pins": {},
    }
    (home / "data" / "state.json").write_text(json.dumps(state))


def logged_at(log: Path, needle: str) -> float | None:
    """The time of the first log line containing ``needle`` (the log's asctime, local time, milliseconds)."""
    from datetime import datetime

    for line in log.read_text(errors="replace").splitlines():
        if needle in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()
    return None


def red_in_tray(image: Image.Image) -> int:
    return sum(
        1
        for _, _, p in region_pixels(image, (WIDTH - 200, 0, WIDTH, TRAY_HEIGHT))
        if near(p, COLORS[Level.EXHAUSTED], 30)
    )


def test_a_health_change_reaches_icon_tooltip_and_menu_within_2_seconds(session: Session) -> None:
    """A real request the fake answers 429: the only account cools down, the pool is exhausted — and the icon, its
    tooltip and the menu header say so on the tray's next tick (logged by the tray), well within 2 s."""
    import httpx

    from tests.fakes.anthropic import FakeAnthropic
    from tests.fakes.server import Behavior

    session.artifacts = ARTIFACTS / "health"
    home = Path(session.env["HEADWAY_HOME"])
    with FakeAnthropic() as fake:
        seed_single_anthropic(home, fake.url)
        session.env["PYSTRAY_BACKEND"] = "gtk"
        session.start(sys.executable, "-m", "tray", log="headway.log", cwd=str(ROOT))
        log = session.tmp / "headway.log"
        runtime = home / "run" / "runtime.json"
        assert wait_for(runtime.exists, 20), log.read_text()
        icon = wait_for(lambda: docked_icon(session.screenshot("1-healthy")), 20, 0.3)
        assert icon, f"the icon did not dock; see {session.artifacts}/1-healthy.png\n{log.read_text()}"
        assert wait_for(lambda: logged_at(log, "tray: Healthy · 1/1 ready · 90% left"), 5), log.read_text()
        open_menu(session, icon, "2-menu-healthy")
        session.xdotool("key", "Escape")

        url = json.loads(runtime.read_text())["url"]
        key = json.loads((home / "data" / "secrets.json").read_text())["local-access-key"]
        fake.enqueue(Behavior(status=429, retry_after=600))
        body = {
            "model": "claude-sonnet-4-5",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": "hi"}],
        }
        response = httpx.post(f"{url}/v1/messages", json=body, headers={"x-api-key": key}, timeout=30)
        answered = time.time()
        assert response.status_code == 429, response.text

        changed = wait_for(
            lambda: logged_at(log, "tray: All blocked · 0/1 ready · next back in 10m"), 5, 0.05
        )
        assert changed, log.read_text()
        assert changed - answered < 2.0, f"the tray took {changed - answered:.2f} s"
        print(f"\nthe tray showed the change {changed - answered:+.2f} s after the agent got its 429")
        assert wait_for(lambda: red_in_tray(session.screenshot("3-exhausted")) > 20, 2, 0.1), (
            "the icon stayed"
        )
        box = open_menu(session, icon, "4-menu-exhausted")
        before = Image.open(session.artifacts / "2-menu-healthy.png").convert("RGB")
        after = session.screenshot("4-menu-exhausted")
        header = (box[0], box[1], box[2], box[1] + 30)
        assert before.crop(header).tobytes() != after.crop(header).tobytes(), "the menu header did not change"
        session.xdotool("key", "Escape")
        session.xdotool("mousemove", str(icon[0]), str(icon[1]))
        time.sleep(1.0)
        session.screenshot("5-tooltip-exhausted")
