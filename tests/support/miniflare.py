"""Run the relay Worker in Cloudflare's workerd runtime, locally, through the npm `miniflare` package.

    with start_worker(token="…", storage="durable_object") as worker:
        httpx.get(f"{worker.url}/v1/info", headers={"x-relay-token": "…"})

A small Node script (below) starts `new Miniflare({modules: true, scriptPath, host: "127.0.0.1", port: 0,
cf: false, …})` with the Worker's bindings — RELAY_TOKEN, and a Durable Object namespace (RELAY_SESSION, SQLite-backed)
or a KV namespace (RELAY_STATE) — prints the URL it listens on, and disposes of Miniflare when its standard input
closes. Start and stop are bounded; the Node process gets its own process group so that workerd (its child) goes with
it even when it has to be killed.

Miniflare and Node 22 come from scripts/install-test-deps (`$HEADWAY_TEST_CACHE/npm`). `require_miniflare()` skips
the test when they are missing, and fails it when CI=true.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from tests.support.agents import node22_bin, npm_bin_dir

__all__ = [
    "WORKER_SCRIPT",
    "MiniflareWorker",
    "launch_deployed",
    "launch_worker",
    "miniflare_module",
    "require_miniflare",
    "start_worker",
]

WORKER_SCRIPT = Path(__file__).resolve().parents[2] / "proxy" / "relay" / "worker" / "worker.js"

_RUNNER = r"""
const opts = JSON.parse(process.env.HEADWAY_MF_OPTIONS);
const { Miniflare } = await import(process.env.HEADWAY_MF_MODULE);
const config = {
  modules: true,
  // Every .js module is an ES module, as the upload's content type (application/javascript+module) says.
  modulesRules: [{ type: "ESModule", include: ["**/*.js"] }],
  scriptPath: opts.scriptPath,
  host: "127.0.0.1",
  port: 0,
  cf: false,
  compatibilityDate: opts.compatibilityDate,
  bindings: opts.bindings,
};
if (opts.storage === "kv") config.kvNamespaces = ["RELAY_STATE"];
else config.durableObjects = { RELAY_SESSION: { className: "RelaySession", useSQLite: true } };
const mf = new Miniflare(config);
let url;
try {
  url = await mf.ready;
} catch (err) {
  console.error(String(err && err.stack || err));
  process.exit(3);
}
process.stdout.write(JSON.stringify({ url: url.href }) + "\n");
let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => process.exit(4), 5000);
  try { await mf.dispose(); } finally { clearTimeout(timer); process.exit(0); }
};
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.on("SIGTERM", stop);
process.stdin.resume();
"""


def miniflare_module() -> Path | None:
    path = npm_bin_dir().parent / "miniflare" / "dist" / "src" / "index.js"
    return path if path.is_file() else None


def require_miniflare() -> tuple[Path, Path]:
    """(node 22, miniflare's entry module); SKIP when missing, FAIL when CI=true."""
    node, module = node22_bin(), miniflare_module()
    if node is not None and module is not None:
        return node, module
    message = (
        f"miniflare / Node 22 are not installed (looked in {npm_bin_dir().parent}); run scripts/install-test-deps "
        "or set HEADWAY_TEST_NPM_BIN"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@dataclass
class MiniflareWorker:
    proc: subprocess.Popen[bytes]
    url: str
    token: str
    storage: str
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 8.0) -> None:
        """Close stdin (Miniflare disposes of workerd), wait; then SIGTERM, then SIGKILL the process group."""
        if self._stopped:
            return
        self._stopped = True
        proc = self.proc
        if proc.stdin is not None:
            try:
                proc.stdin.close()
            except OSError:
                pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(3)
        # workerd may outlive a Node that died abruptly: it is in the same group we created.
        _signal_group(proc.pid, signal.SIGKILL)
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> MiniflareWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def launch_worker(
    *,
    token: str,
    storage: Literal["durable_object", "kv"] = "durable_object",
    script: Path = WORKER_SCRIPT,
    bindings: Mapping[str, str] | None = None,
    upstreams: Sequence[str] = (),
    log_dir: Path,
    timeout: float = 30.0,
    compatibility_date: str = "2025-09-01",
) -> MiniflareWorker:
    """``upstreams``: the origins bound as RELAY_UPSTREAMS (the Worker refuses every other upstream)."""
    node, module = require_miniflare()
    options = {
        "scriptPath": str(script),
        "storage": storage,
        "compatibilityDate": compatibility_date,
        "bindings": {
            "RELAY_TOKEN": token,
            "RELAY_UPSTREAMS": json.dumps(list(upstreams)),
            **(bindings or {}),
        },
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"miniflare-{time.monotonic_ns()}.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("HEADWAY_", "CLOUDFLARE_"))},
        "HEADWAY_MF_OPTIONS": json.dumps(options),
        "HEADWAY_MF_MODULE": module.as_uri(),
        "WRANGLER_SEND_METRICS": "false",
        "CLOUDFLARE_CF_FETCH_ENABLED": "false",
        "NO_COLOR": "1",
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(node), "--input-type=module", "-e", _RUNNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=str(script.parent),
            start_new_session=True,
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            break
        ready, _, _ = select.select([proc.stdout], [], [], min(remaining, 0.2))
        if ready:
            byte = os.read(proc.stdout.fileno(), 1)
            if not byte:
                break
            line += byte
    worker = MiniflareWorker(proc=proc, url="", token=token, storage=storage, log_path=log_path)
    try:
        url = json.loads(line)["url"].rstrip("/")
    except (ValueError, KeyError):
        worker.stop(timeout=3)
        raise RuntimeError(
            f"miniflare did not start within {timeout:.0f}s:\n{worker.output()[-3000:]}"
        ) from None
    worker.url = url
    return worker


def launch_deployed(
    metadata: Mapping[str, Any],
    modules: Mapping[str, tuple[str, bytes]],
    *,
    log_dir: Path,
    timeout: float = 30.0,
) -> MiniflareWorker:
    """The Worker exactly as `relay setup` uploaded it: its modules (name → (content type, bytes), as the fake
    Cloudflare API keeps them), its metadata's bindings and compatibility date."""
    folder = log_dir / f"deployed-{time.monotonic_ns()}"
    folder.mkdir(parents=True)
    for name, (content_type, data) in modules.items():
        assert content_type == "application/javascript+module" and "/" not in name, name
        (folder / name).write_bytes(data)
    script = folder / str(metadata["main_module"])
    texts: dict[str, str] = {}
    storage: Literal["durable_object", "kv"] = "durable_object"
    for binding in metadata["bindings"]:
        if binding["type"] in ("secret_text", "plain_text"):
            texts[binding["name"]] = binding["text"]
        elif binding["type"] == "kv_namespace":
            assert binding["name"] == "RELAY_STATE"
            storage = "kv"
        elif binding["type"] == "durable_object_namespace":
            assert binding["name"] == "RELAY_SESSION" and binding["class_name"] == "RelaySession"
        else:
            raise AssertionError(f"a binding the test runner does not know: {binding}")
    token = texts.pop("RELAY_TOKEN")
    upstreams = json.loads(texts.pop("RELAY_UPSTREAMS")) if "RELAY_UPSTREAMS" in texts else ()
    return launch_worker(
        token=token,
        storage=storage,
        script=script,
        bindings=texts,
        upstreams=upstreams,
        log_dir=log_dir,
        timeout=timeout,
        compatibility_date=str(metadata["compatibility_date"]),
    )


@contextmanager
def start_worker(
    *,
    token: str,
    storage: Literal["durable_object", "kv"] = "durable_object",
    script: Path = WORKER_SCRIPT,
    bindings: Mapping[str, str] | None = None,
    upstreams: Sequence[str] = (),
    log_dir: Path,
) -> Iterator[MiniflareWorker]:
    worker = launch_worker(
        token=token, storage=storage, script=script, bindings=bindings, upstreams=upstreams, log_dir=log_dir
    )
    try:
        yield worker
    finally:
        worker.stop()
