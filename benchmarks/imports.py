"""``python -m benchmarks imports [--quick] [--json] [--runs N] [--top N]``: what each mode imports, and what it costs.

Per mode, as real subprocesses in a throwaway ``HEADWAY_HOME`` (one Anthropic API-key account, the lean mock
upstream of ``benchmarks.mock_upstream``, proxy variables removed):

- ``serve-file``: ``headway serve`` with secrets in a plain file (``secrets.backend = "file"``).
- ``serve-keychain``: the same with the system keychain; skipped, with the reason, when adding the account fails
  (no Secret Service reachable). Its two entries are deleted from the keychain afterwards.
- ``status``: ``headway status`` against a running ``serve-file`` gateway.
- ``tray``: ``headway`` with no arguments, when a display exists (``DISPLAY`` / ``WAYLAND_DISPLAY``); else skipped.

Figures per mode, medians of ``--runs`` fresh starts (5; 2 with ``--quick``):

- ``cold_start_s``: spawn → the first proxied request answered 200 (the gateway modes: the client retries every
  2 ms until the port accepts); for ``status``: spawn → exit.
- ``idle_rss_mb``: ``VmRSS`` after the first 200, three more requests and a second of idleness (``status``: the
  peak RSS of the finished process, ``ru_maxrss``).
- ``packages``: one more start with ``PYTHONPROFILEIMPORTTIME=1``; per package (first-party ones per subpackage:
  ``proxy.engine``, ``proxy.config``…), ``self_us`` (the sum of its modules' own import time) and ``cum_us`` (the
  cumulative time of its imports that another package did not already cover: what importing it cost, its
  dependencies loaded first included), and ``rss_kb``: in a fresh interpreter, every module of that start is imported
  in the order the mode finished importing it, and each module's ``VmRSS`` growth is charged to its package. Largest
  first.
- ``not_in_bundle``: packages the mode imported here that the app's bundle does not carry (pygments, which httpx
  imports for its command line when the test extras installed it: about 0.5 MB of ``serve``'s idle RSS, charged to
  httpx in ``packages``).
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .processes import Server, _headway_command, clean_env, cli, compile_headway, rss_mb, start_mock

__all__ = ["main", "parse_importtime"]

_ROOT = Path(__file__).resolve().parents[1]
_FIRST_PARTY = ("proxy", "tray", "web_ui")
_BODY = json.dumps(
    {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
).encode()
_API_KEY = "sk-ant-bench-0000000000"
#: Packages a mode may import here that the app's bundle does not carry: httpx imports its command line (pygments,
#: rich) when they are installed, and the test extras install pygments. Reported per mode as ``not_in_bundle``.
_NOT_IN_BUNDLE = ("pygments", "rich")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _group(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] in _FIRST_PARTY else parts[0]


def parse_importtime(text: str) -> list[tuple[str, int, int, int]]:
    """``-X importtime`` lines as (module, self µs, cumulative µs, depth), in the order imports finished."""
    rows: list[tuple[str, int, int, int]] = []
    for line in text.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue
        name = fields[2].rstrip()
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((name.strip(), int(fields[0]), int(fields[1]), depth))
    return rows


def _budget(rows: list[tuple[str, int, int, int]]) -> dict[str, dict[str, int]]:
    """Self and cumulative µs per package; a package's cumulative counts only its imports made by another package."""
    parent: list[int | None] = [None] * len(rows)
    waiting: list[int] = []
    for index, (_, _, _, depth) in enumerate(rows):
        while waiting and rows[waiting[-1]][3] > depth:
            parent[waiting.pop()] = index
        waiting.append(index)
    budget: dict[str, dict[str, int]] = {}
    for index, (module, own, cumulative, _) in enumerate(rows):
        entry = budget.setdefault(_group(module), {"self_us": 0, "cum_us": 0, "modules": 0})
        entry["self_us"] += own
        entry["modules"] += 1
        up = parent[index]
        if up is None or _group(rows[up][0]) != _group(module):
            entry["cum_us"] += cumulative
    return budget


# Runs in a fresh interpreter that has imported nothing else: imports the modules (argv[1], a JSON list) in order and
# prints the VmRSS growth, in kB, after each.
_WALK = """
import importlib, json, sys
def rss_kb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
with open(sys.argv[1]) as names:
    modules = json.load(names)
before = start = rss_kb()
grown = []
for module in modules:
    if module in sys.modules or module.endswith("__main__"):
        continue
    try:
        importlib.import_module(module)
    except BaseException:  # a module that only imports in its own context: not charged
        continue
    now = rss_kb()
    grown.append([module, now - before])
    before = now
print(json.dumps({"baseline_kb": start, "grown": grown}))
"""


def _rss_budget(rows: list[tuple[str, int, int, int]]) -> tuple[dict[str, int], float]:
    """VmRSS growth in kB per package when the modules are imported in the order the mode imported them, and the
    bare interpreter's VmRSS in MB."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as names:
        json.dump([module for module, *_ in rows], names)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _WALK, names.name],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
            env=clean_env({}),
        )
    finally:
        os.unlink(names.name)
    data = json.loads(done.stdout.strip().splitlines()[-1])
    grown: dict[str, int] = {}
    for module, kb in data["grown"]:
        grown[_group(module)] = grown.get(_group(module), 0) + kb
    return grown, data["baseline_kb"] / 1024


def _request(port: int, key: str, timeout: float = 10.0) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            "POST",
            "/v1/messages",
            _BODY,
            {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"},
        )
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def _until_first_200(proc: subprocess.Popen[bytes], port: int, key: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the gateway exited ({proc.returncode}) before answering")
        try:
            status = _request(port, key)
        except OSError:  # not listening yet
            time.sleep(0.002)
            continue
        if status != 200:
            raise RuntimeError(f"the first proxied request answered {status}")
        return
    raise RuntimeError(f"no proxied 200 within {limit:.0f}s")


class _Home:
    """A HEADWAY_HOME with one account on the mock; ``backend`` is ``file`` or ``system``."""

    def __init__(
        self,
        workdir: Path,
        backend: str,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=f"headway-{backend}-", dir=workdir))
        self.backend = backend
        self.extra_env = env or {}
        config = self.path / "config"
        config.mkdir(mode=0o700)
        body = {"secrets": {"backend": backend}, **(settings or {})}
        (config / "settings.json").write_text(json.dumps(body))
        cli(
            self.path,
            "accounts",
            "add",
            "anthropic",
            "--label",
            "bench",
            "--api-key-stdin",
            stdin=_API_KEY + "\n",
        )
        self.key = cli(self.path, "key").strip()

    def env(self, mock: Server, **extra: str) -> dict[str, str]:
        return clean_env(
            {
                "HEADWAY_HOME": str(self.path),
                "HEADWAY_ANTHROPIC_BASE_URL": mock.url,
                "HEADWAY_WEB_PORT": "0",
                **extra,
            }
        )

    def forget(self) -> None:
        """Delete this home's keychain entries (the account's key and the access key)."""
        if self.backend != "system":
            return
        cli(self.path, "accounts", "remove", "bench", "--yes")
        import keyring.errors

        from proxy.config.paths import Paths
        from proxy.secrets.keychain import ACCESS_KEY

        service = Paths.from_env({"HEADWAY_HOME": str(self.path)}).keychain_service
        try:
            keyring.delete_password(service, ACCESS_KEY)
        except keyring.errors.PasswordDeleteError:
            pass


def _start(command: list[str], env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    with open(output, "wb") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _gateway_mode(
    home: _Home, mock: Server, workdir: Path, runs: int, idle_s: float, *, tray: bool = False
) -> dict[str, Any]:
    starts: list[float] = []
    rss: list[float] = []
    for run in range(runs + 1):  # the last one profiles imports
        port = _free_port()
        profile = run == runs
        if tray:
            settings = json.loads((home.path / "config" / "settings.json").read_text())
            settings.setdefault("gateway", {})["port"] = port
            (home.path / "config" / "settings.json").write_text(json.dumps(settings))
            command = _headway_command()
        else:
            command = [*_headway_command(), "serve", "--port", str(port)]
        env = home.env(mock, **({"PYTHONPROFILEIMPORTTIME": "1"} if profile else {}))
        output = workdir / f"{home.path.name}-{run}.out"
        began = time.perf_counter()
        proc = _start(command, env, output)
        try:
            _until_first_200(proc, port, home.key)
            took = time.perf_counter() - began
            if profile:
                rows = parse_importtime(output.read_text(errors="replace"))
                break
            starts.append(took)
            for _ in range(3):
                _request(port, home.key)
            time.sleep(idle_s)
            rss.append(rss_mb(proc.pid))
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{output.read_text(errors='replace')[-3000:]}") from exc
        finally:
            _stop(proc)
    return {"cold_start_s": _spread(starts), "idle_rss_mb": _spread(rss), "rows": rows}


def _status_mode(home: _Home, mock: Server, workdir: Path, runs: int) -> dict[str, Any]:
    port = _free_port()
    gateway = _start(
        [*_headway_command(), "serve", "--port", str(port)], home.env(mock), workdir / "status-gw.out"
    )
    try:
        _until_first_200(gateway, port, home.key)
        starts: list[float] = []
        peaks: list[float] = []
        rows: list[tuple[str, int, int, int]] = []
        for run in range(runs + 1):  # the last one profiles imports
            profile = run == runs
            env = home.env(mock, **({"PYTHONPROFILEIMPORTTIME": "1"} if profile else {}))
            output = workdir / f"status-{run}.err"
            began = time.perf_counter()
            with open(output, "wb") as err:
                proc = subprocess.Popen(
                    [*_headway_command(), "status"], stdout=subprocess.DEVNULL, stderr=err, env=env
                )
                _, code, usage = os.wait4(proc.pid, 0)  # the peak RSS comes with the exit status
            took = time.perf_counter() - began
            proc.returncode = os.waitstatus_to_exitcode(code)
            if proc.returncode != 0:
                raise RuntimeError(
                    f"`headway status` failed ({proc.returncode}):\n{output.read_text()[-2000:]}"
                )
            if profile:
                rows = parse_importtime(output.read_text(errors="replace"))
            else:
                starts.append(took)
                peaks.append(usage.ru_maxrss / 1024)  # kB on Linux
        return {"cold_start_s": _spread(starts), "idle_rss_mb": _spread(peaks), "rows": rows}
    finally:
        _stop(gateway)


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


def _finish(mode: dict[str, Any]) -> dict[str, Any]:
    rows = mode.pop("rows")
    budget = _budget(rows)
    grown, baseline = _rss_budget(rows)
    for group, kb in grown.items():
        budget.setdefault(group, {"self_us": 0, "cum_us": 0, "modules": 0})["rss_kb"] = kb
    packages: list[dict[str, Any]] = sorted(
        ({"package": name, "rss_kb": 0, **entry} for name, entry in budget.items()),
        key=lambda entry: (-int(entry["cum_us"]), -int(entry["rss_kb"])),
    )
    mode["modules"] = len(rows)
    imported = {module.split(".")[0] for module, *_ in rows}
    mode["not_in_bundle"] = [
        name for name in _NOT_IN_BUNDLE if name in imported and importlib.util.find_spec(name) is not None
    ]
    mode["import_self_ms"] = round(sum(own for _, own, _, _ in rows) / 1000, 1)
    mode["import_rss_mb"] = round(sum(grown.values()) / 1024, 1)
    mode["interpreter_rss_mb"] = round(baseline, 1)
    mode["packages"] = packages[:40]  # the rest cost under a millisecond or two each
    return mode


def _render(result: dict[str, Any], top: int) -> str:
    lines = [f"Headway imports per mode ({result['python']}, {result['runs']} runs per figure, medians)", ""]
    for name, mode in result["modes"].items():
        if "skipped" in mode:
            lines += [f"## {name}: skipped ({mode['skipped']})", ""]
            continue
        start, rss = mode["cold_start_s"], mode["idle_rss_mb"]
        what = "spawn → exit" if name == "status" else "cold start to first proxied 200"
        lines.append(
            f"## {name}: {what} {start['median']:.3f} s (min {start['min']:.3f}), "
            f"{'peak' if name == 'status' else 'idle'} RSS {rss['median']:.1f} MB"
        )
        lines.append(
            f"   {mode['modules']} modules, {mode['import_self_ms']:.0f} ms importing (under -X importtime), "
            f"imports add ≈ {mode['import_rss_mb']:.1f} MB RSS to a bare interpreter's {mode['interpreter_rss_mb']:.1f}"
        )
        if mode["not_in_bundle"]:
            lines.append(
                f"   includes {', '.join(mode['not_in_bundle'])}: installed here, not in the app's bundle "
                "(httpx imports its command line when it can)"
            )
        lines.append(f"   {'package':<28}{'cum ms':>9}{'self ms':>9}{'RSS MB':>9}{'modules':>9}")
        for entry in mode["packages"][:top]:
            lines.append(
                f"   {entry['package']:<28}{entry['cum_us'] / 1000:>9.1f}{entry['self_us'] / 1000:>9.1f}"
                f"{entry['rss_kb'] / 1024:>9.1f}{entry['modules']:>9}"
            )
        lines.append("")
    return "\n".join(lines)


def _measure(workdir: Path, runs: int, idle_s: float, say: Any) -> dict[str, Any]:
    modes: dict[str, Any] = {}
    compile_headway()  # as installed: with its bytecode written
    say("starting the mock upstream")
    mock = start_mock(workdir)
    try:
        say("serve-file")
        file_home = _Home(workdir, "file")
        modes["serve-file"] = _finish(_gateway_mode(file_home, mock, workdir, runs, idle_s))
        say("serve-keychain")
        try:
            system_home = _Home(workdir, "system")
        except RuntimeError as exc:
            reason = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
            modes["serve-keychain"] = {"skipped": f"no system keychain: {reason[:200]}"}
        else:
            try:
                modes["serve-keychain"] = _finish(_gateway_mode(system_home, mock, workdir, runs, idle_s))
            finally:
                system_home.forget()
        say("status")
        modes["status"] = _finish(_status_mode(file_home, mock, workdir, runs))
        if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
            say("tray")
            tray_env = {
                k: os.environ[k] for k in ("DISPLAY", "WAYLAND_DISPLAY", "XAUTHORITY") if k in os.environ
            }
            tray_home = _Home(workdir, "file", env=tray_env)
            modes["tray"] = _finish(_gateway_mode(tray_home, mock, workdir, runs, idle_s, tray=True))
        else:
            modes["tray"] = {"skipped": "no display (DISPLAY and WAYLAND_DISPLAY unset)"}
    finally:
        mock.stop()
    return modes


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks imports", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 runs per figure and a shorter idle wait")
    parser.add_argument("--runs", type=int, default=None, help="fresh starts per figure (default 5, quick 2)")
    parser.add_argument("--top", type=int, default=15, help="packages listed per mode (default 15)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 5)
    started = time.monotonic()

    def say(step: str) -> None:
        if not args.json:
            print(f"[{time.monotonic() - started:6.1f}s] {step}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="headway-bench-imports-") as tmp:
        try:
            modes = _measure(Path(tmp), runs, 0.3 if args.quick else 1.0, say)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
    result = {
        "benchmark": "headway-imports",
        "runs": runs,
        "python": f"Python {sys.version.split()[0]}",
        "modes": modes,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    line = json.dumps(result, separators=(",", ":"))
    if not args.json:
        print(_render(result, args.top))
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
