"""``python -m benchmarks --peer litellm``: a LiteLLM proxy measured side by side with Headway (a third column).

Optional and never in CI: LiteLLM is not a dependency of the project. Install it in a venv of its own, e.g.
``python3 -m venv /tmp/litellm && /tmp/litellm/bin/pip install 'litellm[proxy]'``, and pass its executable with
``--peer-command /tmp/litellm/bin/litellm`` (or have ``litellm`` on PATH, or importable by this Python).

The proxy gets a generated config: one model, ``claude-sonnet-4-5``, routed as ``anthropic/claude-sonnet-4-5`` to
the mock (``api_base``), a master key that the benchmark sends as ``x-api-key``, one worker, no database. Requests
go to its Anthropic-compatible ``/v1/messages``. LiteLLM rebuilds requests and drops the ``bench`` field, so the mock
reads the same instructions from the end of the message text (see benchmarks/load.py ``body_for``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .processes import Server, clean_env
from .startup import Launcher

__all__ = ["find_litellm", "litellm_launcher", "start_litellm"]

_MASTER_KEY = "sk-bench-peer-master"
_START_TIMEOUT = 120.0


def find_litellm(explicit: str | None) -> list[str] | None:
    """The command that starts LiteLLM's proxy: ``explicit``, else ``litellm`` on PATH, else this Python's
    ``litellm`` package; None when there is none."""
    if explicit:
        path = Path(explicit).expanduser()
        return [str(path)] if path.is_file() and os.access(path, os.X_OK) else None
    found = shutil.which("litellm")
    if found:
        return [found]
    if importlib.util.find_spec("litellm") is not None:
        return [sys.executable, "-c", "from litellm.proxy.proxy_cli import run_server; run_server()"]
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _config(workdir: Path, mock_url: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="litellm-", dir=workdir))
    path = folder / "config.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: claude-sonnet-4-5\n"
        "    litellm_params:\n"
        "      model: anthropic/claude-sonnet-4-5\n"
        f'      api_base: "{mock_url}"\n'
        '      api_key: "sk-ant-bench-peer"\n'
        "general_settings:\n"
        f'  master_key: "{_MASTER_KEY}"\n'
    )
    return path


def _spawn(command: list[str], config: Path, port: int, output: Path) -> subprocess.Popen[bytes]:
    with open(output, "wb") as out:
        return subprocess.Popen(
            [
                *command,
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env({"LITELLM_LOG": "ERROR", "PYTHONUNBUFFERED": "1"}),
            cwd=config.parent,
            start_new_session=True,
        )


def start_litellm(command: list[str], workdir: Path, mock_url: str) -> Server:
    """LiteLLM's proxy on a free port with a config pointing at the mock; returns once Uvicorn listens."""
    config = _config(workdir, mock_url)
    port = _free_port()
    output = workdir / "litellm.out"
    proc = _spawn(command, config, port, output)
    deadline = time.monotonic() + _START_TIMEOUT
    while not _accepts(port):  # Uvicorn binds once the app has started
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait(5)
            raise RuntimeError(f"LiteLLM did not start:\n{output.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)
    return Server("peer", proc, f"http://127.0.0.1:{port}", output, key=_MASTER_KEY)


def litellm_launcher(command: list[str], workdir: Path, mock_url: str) -> Launcher:
    """Cold starts of LiteLLM's proxy: each spawn on a fresh free port, known in advance."""
    config = _config(workdir, mock_url)
    ports: list[int] = []

    def spawn(output: Path) -> subprocess.Popen[bytes]:
        ports.append(_free_port())
        return _spawn(command, config, ports[-1], output)

    def url_from(text: str) -> str | None:
        return f"http://127.0.0.1:{ports[-1]}"

    return Launcher("litellm", spawn, url_from, _MASTER_KEY)
