"""Smoke-test a frozen Headway bundle: does the binary we ship actually work?

    python packaging/smoke_test.py [BINARY] [--tray]

BINARY defaults to this OS's build output (dist/headway/headway on Linux). Run from the repository (it uses the
fake upstreams in tests/fakes). Every step has a time limit; the exit status is 0 only if all of them pass:

1. ``--version`` answers;
2. ``accounts add anthropic --api-key-stdin`` stores a key (temporary HEADWAY_HOME, the plain-file secrets backend);
3. ``serve --port 0`` starts headless; ``/health`` answers;
4. ``/v1/messages`` is proxied to a fake Anthropic upstream with the stored key, plain and zstd-compressed;
5. SIGTERM stops it cleanly: exit status 0 within 10 s, runtime file removed;
6. ``configure codex`` and ``configure aider`` edit existing files (tomlkit and ruamel.yaml are in the bundle);
7. with ``--tray`` (Linux, needs Xvfb and dbus-run-session): ``headway`` with no arguments shows its tray icon through
   the bundled GTK / AppIndicator backend on a virtual display, then stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from proxy.wire.content_coding import zstd_module  # noqa: E402
from tests.fakes import FakeAnthropic  # noqa: E402

API_KEY = "sk-ant-api03-smoke-" + "s" * 24
STOP_SECONDS = 10.0


def default_binary() -> Path:
    if sys.platform == "darwin":
        return ROOT / "dist" / "Headway.app" / "Contents" / "MacOS" / "Headway"
    if sys.platform == "win32":
        return ROOT / "dist" / "Headway" / "headway-cli.exe"
    return ROOT / "dist" / "headway" / "headway"


class SmokeFailure(Exception):
    pass


def step(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                result = fn(*args, **kwargs)
            except SmokeFailure as exc:
                print(f"FAIL  {name}: {exc}", flush=True)
                raise
            print(f"ok    {name} ({time.monotonic() - started:.2f}s)", flush=True)
            return result

        return run

    return wrap


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SmokeFailure(f"timed out after {timeout:.0f}s waiting for {what}")


class Smoke:
    def __init__(self, binary: Path, scratch: Path) -> None:
        self.binary = binary
        self.home = scratch / "home"
        self.env = {
            **{
                k: v for k, v in os.environ.items() if not k.startswith(("HEADWAY_", "ANTHROPIC_", "OPENAI_"))
            },
            "HEADWAY_HOME": str(self.home),
            "XDG_CONFIG_HOME": str(scratch / "xdg-config"),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("DISPLAY", None)
        self.env.pop("WAYLAND_DISPLAY", None)
        (self.home / "config").mkdir(parents=True)
        (self.home / "config" / "settings.json").write_text(
            json.dumps({"gateway": {"port": 0}, "secrets": {"backend": "file"}})
        )

    def run(
        self, *args: str, input: str | None = None, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                [str(self.binary), *args],
                env=self.env,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            raise SmokeFailure(f"`headway {' '.join(args)}` did not finish within {timeout:.0f}s") from exc
        if result.returncode != 0:
            raise SmokeFailure(
                f"`headway {' '.join(args)}` exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    @step("--version")
    def version(self) -> None:
        out = self.run("--version").stdout
        if "headway" not in out:
            raise SmokeFailure(f"unexpected --version output: {out!r}")

    @step("accounts add (file secrets backend)")
    def add_account(self) -> None:
        self.run("accounts", "add", "anthropic", "--label", "smoke", "--api-key-stdin", input=API_KEY + "\n")

    @step("autostart status")
    def autostart(self) -> None:
        out = self.run("autostart", "status").stdout
        if not out.startswith("off: "):
            raise SmokeFailure(f"unexpected autostart status: {out!r}")

    @step("configure codex and aider (tomlkit, ruamel.yaml)")
    def configure(self) -> None:
        """Runs after serve: configure needs a fixed port, which settings then get (the file is edited only here)."""
        settings = self.home / "config" / "settings.json"
        saved = settings.read_text()
        settings.write_text(json.dumps({**json.loads(saved), "gateway": {"port": 47999}}))
        codex = self.home / "codex.toml"
        codex.write_text('# mine\nmodel_providers = { other = { name = "o" } }\n')
        aider = self.home / "aider.yml"
        aider.write_text("# mine\nset-env: [A=1]\n")
        try:
            self.run("configure", "codex", "--file", str(codex))
            self.run("configure", "aider", "--file", str(aider))
        finally:
            settings.write_text(saved)
        data = tomllib.loads(codex.read_text())
        text = aider.read_text()
        if data.get("model_provider") != "headway" or "other" not in data.get("model_providers", {}):
            raise SmokeFailure(f"configure codex wrote {codex.read_text()!r}")
        if "# mine" not in text or '"A=1"' not in text or "127.0.0.1:47999" not in text:
            raise SmokeFailure(f"configure aider wrote {text!r}")

    def runtime(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads((self.home / "run" / "runtime.json").read_text())
            return data
        except (OSError, ValueError):
            return None

    @step("serve, health, one proxied request, clean stop")
    def serve(self, upstream: FakeAnthropic) -> None:
        self.env["HEADWAY_ANTHROPIC_BASE_URL"] = upstream.url
        log = self.home / "serve.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(self.binary), "serve", "--port", "0"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
            try:
                started = time.monotonic()
                runtime = wait_for(self.runtime, 30, "runtime.json (the gateway listening)")
                print(
                    f"      gateway ready in {time.monotonic() - started:.2f}s at {runtime['url']}",
                    flush=True,
                )
                health = httpx.get(f"{runtime['url']}/health", timeout=5)
                if health.status_code != 200:
                    raise SmokeFailure(f"/health answered {health.status_code}")
                key = self.run("key").stdout.strip()
                request = {
                    "model": "claude-sonnet-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": "hi"}],
                }
                headers = {
                    "x-api-key": key,
                    "anthropic-version": "2023-06-01",
                    "content-type": "application/json",
                }
                plain = json.dumps(request).encode()
                # the second time zstd-compressed, as Codex and pi send bodies: the bundle must hold the decoder
                for body, coding in ((plain, None), (zstd_module().compress(plain), "zstd")):
                    response = httpx.post(
                        f"{runtime['url']}/v1/messages",
                        headers={**headers, **({"content-encoding": coding} if coding else {})},
                        content=body,
                        timeout=15,
                    )
                    if response.status_code != 200:
                        raise SmokeFailure(
                            f"/v1/messages ({coding or 'plain'}) answered {response.status_code}: {response.text[:300]}"
                        )
                    if upstream.last_request.body != plain:
                        raise SmokeFailure(
                            f"the fake upstream did not get the plain JSON ({coding or 'plain'})"
                        )
                if upstream.request_count != 2 or upstream.last_request.headers.get("x-api-key") != API_KEY:
                    raise SmokeFailure(
                        "the fake upstream did not get exactly two requests with the stored key"
                    )
                process.send_signal(signal.SIGTERM)
                try:
                    code = process.wait(STOP_SECONDS)
                except subprocess.TimeoutExpired as exc:
                    raise SmokeFailure(f"did not stop within {STOP_SECONDS:.0f}s of SIGTERM") from exc
                if code != 0:
                    raise SmokeFailure(f"exited {code} after SIGTERM")
                if self.runtime() is not None:
                    raise SmokeFailure("runtime.json was left behind")
            except BaseException:
                if process.poll() is None:
                    process.kill()
                    process.wait(5)
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                raise

    @step("tray on a virtual display (bundled GTK backend), clean stop")
    def tray(self) -> None:
        for tool in ("Xvfb", "dbus-run-session"):
            if shutil.which(tool) is None:
                raise SmokeFailure(f"--tray needs {tool}")
        started: list[subprocess.Popen[Any]] = []
        bus_child = 0
        env = dict(self.env)
        try:
            # Ending dbus-run-session's child (not dbus-run-session) makes it stop its daemon and exit.
            bus = subprocess.Popen(
                [
                    "dbus-run-session",
                    "--",
                    "sh",
                    "-c",
                    'echo "$DBUS_SESSION_BUS_ADDRESS"; echo $$; exec sleep 120',
                ],
                stdout=subprocess.PIPE,
                env=env,
            )
            started.append(bus)
            assert bus.stdout is not None
            env["DBUS_SESSION_BUS_ADDRESS"] = bus.stdout.readline().decode().strip()
            bus_child = int(bus.stdout.readline().decode().strip() or 0)
            bus.stdout.close()
            read, write = os.pipe()
            xvfb = subprocess.Popen(
                ["Xvfb", "-displayfd", str(write), "-screen", "0", "640x200x24", "-nolisten", "tcp"],
                pass_fds=(write,),
                stderr=subprocess.DEVNULL,
            )
            started.append(xvfb)
            os.close(write)
            with os.fdopen(read) as displayfd:
                env["DISPLAY"] = ":" + displayfd.readline().strip()
            env["PYSTRAY_BACKEND"] = "appindicator"
            env["NO_AT_BRIDGE"] = "1"
            log_file = self.home / "logs" / "headway.log"
            tray = subprocess.Popen(
                [str(self.binary)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            started.append(tray)
            wait_for(
                lambda: (
                    log_file.exists()
                    and "tray running (pystray._appindicator backend)" in log_file.read_text()
                ),
                30,
                "the tray to start with the appindicator backend",
            )
            tray.send_signal(signal.SIGTERM)
            try:
                code = tray.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired as exc:
                raise SmokeFailure(f"the tray did not stop within {STOP_SECONDS:.0f}s of SIGTERM") from exc
            if code != 0:
                raise SmokeFailure(f"the tray exited {code} after SIGTERM:\n{log_file.read_text()[-2000:]}")
        finally:
            for process in reversed(started):
                if process is started[0] and bus_child and process.poll() is None:
                    os.kill(bus_child, signal.SIGTERM)
                    try:
                        process.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
                if process.poll() is None:
                    process.terminate()
                    try:
                        process.wait(5)
                    except subprocess.TimeoutExpired:
                        process.kill()
                        process.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binary", nargs="?", type=Path, default=default_binary())
    parser.add_argument(
        "--tray", action="store_true", help="also start the tray on a virtual display (Linux)"
    )
    args = parser.parse_args(argv)
    binary: Path = args.binary.resolve()
    if not binary.is_file():
        print(f"no binary at {binary}; build it first (packaging/build.sh)", file=sys.stderr)
        return 2
    print(f"smoke-testing {binary}", flush=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="headway-smoke-") as scratch:
        smoke = Smoke(binary, Path(scratch))
        try:
            smoke.version()
            smoke.add_account()
            smoke.autostart()
            with FakeAnthropic() as upstream:
                smoke.serve(upstream)
            smoke.configure()
            if args.tray:
                smoke.tray()
        except SmokeFailure:
            return 1
    print(f"smoke test passed in {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
