"""Crash points: kill -9 of real `headway` processes at random moments never loses settings, accounts or secrets.

Each point starts a real CLI process (`.venv/bin/headway` in a temporary HEADWAY_HOME) doing an account add, remove,
reorder, enable/disable or a settings write — or a `headway serve` with traffic, so that it saves its runtime state —
and kills it with SIGKILL after a random delay. After every kill:

- the settings file parses and validates (a fresh store loads it with no error);
- every account that existed before is still there (unless it was the one being removed) with its own secret;
- no account is without its secret except the one being added at that instant: `status --json` names it (its label
  says "(being added)") and `accounts remove` cleans it up;
- the local access key and the runtime state file (serve points) still parse / match.

The keychain is a real Secret Service: a gnome-keyring-daemon on a D-Bus session bus of the test's own
(tests/support/private_keyring.py), not the run's. gnome-keyring 42 can abort, or keep running with a broken default
alias, when a client is killed in the middle of a call; that is its bug, not Headway's, and it must not take the
rest of the run's keychain tests with it. When a keychain read or a command fails here, the daemon is checked: one
that is gone or broken is restarted on the same keyring files, unlocked, and the read or command runs again (what
is on disk is what Headway stored); on a sound daemon the failure stands. The restarts are printed at the end.
Without gnome-keyring (outside CI) the opt-in file backend is used. Sizing and replay:

    HEADWAY_CRASH_POINTS=1000 HEADWAY_CRASH_SEED=12345 scripts/test tests/reliability/test_crash_points.py -s
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from proxy.config.accounts import PENDING_MARK
from proxy.config.paths import Paths
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import ACCESS_KEY, Keychain, KeychainError, account_secret_name
from tests.fakes import FakeAnthropic
from tests.support.gateway import e2e_keychain
from tests.support.private_keyring import (
    PrivateSecretService,
    private_secret_service_available,
    used_by_this_process,
)

ROOT = Path(__file__).resolve().parents[2]
HEADWAY = ROOT / ".venv" / "bin" / "headway"
POINTS = int(os.environ.get("HEADWAY_CRASH_POINTS", "200"))
SEED = os.environ.get("HEADWAY_CRASH_SEED")  # read at import: the autouse fixtures scrub HEADWAY_* per test
WORKERS = max(1, int(os.environ.get("HEADWAY_CRASH_WORKERS", "2")))  # independent homes killed side by side
SERVE_EVERY = 40  # one point in this many kills a `headway serve` instead of a CLI command

pytestmark = [pytest.mark.crash, pytest.mark.keychain]


@dataclass
class Op:
    kind: str
    args: list[str]
    stdin: str | None = None
    label: str | None = None
    key: str | None = None
    target: str | None = None


@dataclass
class Home:
    paths: Paths
    env: dict[str, str]
    keychain: Keychain
    rng: random.Random
    seed: int
    accounts: dict[str, str] = field(default_factory=dict)  # id -> the secret it must have
    access_key: str | None = None
    counter: int = 0
    kills: int = 0
    unfinished_adds: int = 0
    durations: dict[str, float] = field(default_factory=dict)
    service: PrivateSecretService | None = None  # the test's own gnome-keyring (None: the file backend)

    def cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """A command run to its end; run again (twice at most) if it failed because the keyring daemon had gone
        wrong."""
        for _ in range(2):
            done = self._run(args, stdin)
            if done.returncode == 0 or self.service is None or not self.service.mend(f"`headway {args[0]}`"):
                return done
        return self._run(args, stdin)

    def _run(self, args: tuple[str, ...], stdin: str | None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HEADWAY), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )

    def where(self, point: int, op: Op | None = None) -> str:
        return f"[seed {self.seed}, {self.paths.home.name if self.paths.home else ''}, point {point}{', ' + op.kind + ' ' + ' '.join(op.args) if op else ''}]"


@pytest.fixture
def crash_keychain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateSecretService | None]:
    """The test's own gnome-keyring, which this process and every `headway` it starts use; None without one."""
    if not private_secret_service_available():  # (fails in CI)
        yield None  # homes falls back to the opt-in file backend
        return
    with used_by_this_process(tmp_path / "secret-service", monkeypatch) as service:
        yield service
        for mend in service.mends:
            print(f"crash points: gnome-keyring went wrong and was restarted: {mend}", flush=True)


@pytest.fixture
def homes(tmp_path: Path, crash_keychain: PrivateSecretService | None) -> Iterator[list[Home]]:
    seed = int(SEED or random.SystemRandom().randrange(1 << 32))
    print(
        f"\ncrash points: seed {seed} (replay with HEADWAY_CRASH_SEED={seed} HEADWAY_CRASH_WORKERS={WORKERS}), "
        f"{POINTS} points in {WORKERS} homes",
        flush=True,
    )
    made = []
    for i in range(WORKERS):
        paths = Paths.from_env({"HEADWAY_HOME": str(tmp_path / f"crash-home-{i}")})
        paths.ensure()
        keychain = Keychain(paths.keychain_service) if crash_keychain is not None else e2e_keychain(paths)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWAY_")}
        env["HEADWAY_HOME"] = str(paths.home)
        env["HEADWAY_WEB_PORT"] = "0"  # the settings page on a free port, never a developer's 7338
        made.append(
            Home(
                paths=paths,
                env=env,
                keychain=keychain,
                rng=random.Random(f"{seed}-{i}"),
                seed=seed,
                service=crash_keychain,
            )
        )
    yield made  # the secrets go with the test's keyring files


def _next_op(h: Home) -> Op:
    ids = list(h.accounts)
    choices = ["add"] * 4 + ["setting"] * 2
    if ids:
        choices += ["remove"] * (4 if len(ids) > 5 else 1 if len(ids) < 3 else 2) + ["order", "toggle"]
    kind = h.rng.choice(choices)
    h.counter += 1
    n = h.counter
    if kind == "add":
        provider = h.rng.choice(["anthropic", "openai"])
        key = (
            "sk-ant-api03-" if provider == "anthropic" else "sk-proj-"
        ) + f"crash{n}-{h.rng.randrange(1 << 30)}"
        label = f"acct {n}"
        return Op(
            "add", ["accounts", "add", provider, "--label", label, "--api-key-stdin"], key + "\n", label, key
        )
    if kind == "remove":
        target = h.rng.choice(ids)
        return Op("remove", ["accounts", "remove", target, "--yes"], target=target)
    if kind == "order":
        return Op("order", ["accounts", "order", *h.rng.sample(ids, k=min(len(ids), h.rng.randint(1, 3)))])
    if kind == "toggle":
        return Op("toggle", ["accounts", h.rng.choice(["enable", "disable"]), h.rng.choice(ids)])
    return Op(
        "setting",
        h.rng.choice(
            [
                ["cache", "mode", h.rng.choice(["off", "hybrid", "explicit"])],
                ["dumps", h.rng.choice(["on", "off"])],
            ]
        ),
    )


def _delay(h: Home) -> float:
    """A random moment in a command's run, biased to its end where the writes are (the start is Python importing).

    The run time is learned from the commands that finished before their kill (a loaded CI machine is slower)."""
    if "cli" not in h.durations:
        start = time.monotonic()
        assert h.cli("accounts", "list").returncode == 0
        h.durations["cli"] = time.monotonic() - start
    total = h.durations["cli"]
    if h.rng.random() < 0.7:
        return total * h.rng.uniform(0.4, 1.0)
    return total * h.rng.uniform(0.0, 1.0)


def _kill_cli(h: Home, op: Op) -> bool:
    start = time.monotonic()
    proc = subprocess.Popen(
        [str(HEADWAY), *op.args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=h.env,
    )
    if op.stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(op.stdin.encode())
        proc.stdin.flush()
    try:
        proc.wait(timeout=_delay(h))  # the crash moment, unless the command is done first
        landed = False
        h.durations["cli"] = 0.7 * h.durations["cli"] + 0.3 * (time.monotonic() - start)
    except subprocess.TimeoutExpired:
        landed = True
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    return landed


def _secret(h: Home, name: str, where: str) -> str | None:
    """The secret as the keychain has it; read again after a restart when the daemon had gone wrong (see the
    module's docstring)."""
    try:
        return h.keychain.get(name)
    except KeychainError:
        if h.service is None or not h.service.mend(f"{where} reading {name}"):
            raise
        return h.keychain.get(name)


def _check(h: Home, point: int, op: Op | None) -> None:
    where = h.where(point, op)
    store = SettingsStore.for_paths(h.paths)
    settings = store.load()
    assert store.error is None, f"{where} the settings file does not load after a kill: {store.error}"
    present = {a.id: a for a in settings.accounts}
    for account_id, secret in h.accounts.items():
        if op is not None and op.kind == "remove" and op.target == account_id:
            continue
        assert account_id in present, f"{where} account {account_id} was lost"
        got = _secret(h, account_secret_name(account_id), where)
        assert got == secret, f"{where} account {account_id} lost its secret (got {got!r})"
    new = [a for a in settings.accounts if a.id not in h.accounts]
    assert len(new) <= (1 if op is not None and op.kind == "add" else 0), f"{where} unexpected accounts {new}"
    for account in new:
        assert op is not None and op.label is not None
        assert account.label in (op.label, op.label + PENDING_MARK), f"{where} {account}"
        got = _secret(h, account_secret_name(account.id), where)
        if got is None:
            # Killed between reserving the id and storing the key: named by status, cleaned by remove.
            assert account.label.endswith(PENDING_MARK), f"{where} a finished account {account.id} has no key"
            status = json.loads(h.cli("status", "--json").stdout)
            named = [a for a in status["accounts"] if a["id"] == account.id]
            assert named and named[0]["label"].endswith(PENDING_MARK), (
                f"{where} status does not name {account.id}"
            )
            r = h.cli("accounts", "remove", account.id, "--yes")
            assert r.returncode == 0, f"{where} remove of the unfinished add failed: {r.stderr}"
            assert _secret(h, account_secret_name(account.id), where) is None
            h.unfinished_adds += 1
            continue
        assert got == op.key, f"{where} account {account.id} has another account's key"
        h.accounts[account.id] = got
    if op is not None and op.kind == "remove" and op.target not in present:
        h.accounts.pop(op.target or "", None)
    if h.access_key is not None:
        assert _secret(h, ACCESS_KEY, where) == h.access_key, f"{where} the local access key changed"


def _kill_serve(h: Home, point: int, upstream: FakeAnthropic) -> bool:
    env = {**h.env, "HEADWAY_ANTHROPIC_BASE_URL": upstream.url}
    runtime = h.paths.runtime_file
    runtime.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [str(HEADWAY), "serve", "--port", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    stop = threading.Event()

    def traffic() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                data = json.loads(runtime.read_text())
                key = _secret(h, ACCESS_KEY, h.where(point))
                break
            except (OSError, ValueError, KeychainError):
                stop.wait(0.05)
        else:
            return
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    client.post(
                        f"{data['url']}/v1/messages",
                        json={
                            "model": "claude-sonnet-4-5",
                            "max_tokens": 8,
                            "messages": [{"role": "user", "content": "x"}],
                        },
                        headers={"x-api-key": key or "", "anthropic-version": "2023-06-01"},
                    )
                except httpx.HTTPError:
                    return

    worker = threading.Thread(target=traffic, name="crash-traffic")
    worker.start()
    time.sleep(h.rng.uniform(0.3, 4.0))  # the crash moment: startup, serving, or a state save
    landed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=30)
    stop.set()
    assert landed, f"{h.where(point)} headway serve exited by itself: {err.decode(errors='replace')[-2000:]}"
    worker.join(10)
    if h.access_key is None:
        h.access_key = _secret(h, ACCESS_KEY, h.where(point))
    state = h.paths.state_file
    if state.exists():
        json.loads(state.read_text())  # never torn
    return landed


def _run(h: Home, points: int, upstream: FakeAnthropic) -> None:
    # Seed a few accounts so removes and reorders have something to work on.
    for i in range(3):
        r = h.cli(
            "accounts",
            "add",
            "anthropic",
            "--label",
            f"seed {i}",
            "--api-key-stdin",
            stdin=f"sk-ant-seed-{i}\n",
        )
        assert r.returncode == 0, r.stderr
    for account in SettingsStore.for_paths(h.paths).load().accounts:
        h.accounts[account.id] = _secret(h, account_secret_name(account.id), "seeding") or ""
    assert len(h.accounts) == 3

    point = 0
    while h.kills < points:
        point += 1
        assert point < points * 3, (
            f"{h.where(point)} too few kills landed ({h.kills}); the delays need tuning"
        )
        if point % SERVE_EVERY == 5:
            h.kills += _kill_serve(h, point, upstream)
            _check(h, point, None)
            continue
        if len(h.accounts) < 2:  # killed adds rarely finish: top up so removes and reorders have work
            h.counter += 1
            key = f"sk-ant-fill{h.counter}"
            r = h.cli(
                "accounts",
                "add",
                "anthropic",
                "--label",
                f"fill {h.counter}",
                "--api-key-stdin",
                stdin=key + "\n",
            )
            assert r.returncode == 0, f"{h.where(point)} a full add after kills failed: {r.stderr}"
            filled = SettingsStore.for_paths(h.paths).load().account(f"fill {h.counter}")
            assert filled is not None
            h.accounts[filled.id] = key
        op = _next_op(h)
        h.kills += _kill_cli(h, op)
        _check(h, point, op)

    # Everything still works afterwards: a full add and a settings write.
    r = h.cli("accounts", "add", "openai", "--label", "after", "--api-key-stdin", stdin="sk-proj-after\n")
    assert r.returncode == 0, r.stderr
    assert h.cli("cache", "mode", "hybrid").returncode == 0
    leftovers = [p.name for p in h.paths.config_dir.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"{h.where(point)} stale temp files pile up: {leftovers}"
    print(
        f"crash points: {h.paths.home.name if h.paths.home else ''}: {h.kills} kills landed in {point} points; "
        f"{h.unfinished_adds} unfinished adds cleaned up; {len(h.accounts)} accounts at the end",
        flush=True,
    )


@pytest.mark.timeout(max(300, POINTS * 4))
def test_kill_9_at_random_points_loses_nothing(homes: list[Home]) -> None:
    failures: list[BaseException] = []
    share = -(-POINTS // len(homes))
    with FakeAnthropic() as upstream:

        def stream(h: Home) -> None:
            try:
                _run(h, share, upstream)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=stream, args=(h,), name=f"crash-{i}") for i, h in enumerate(homes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if failures:
        raise failures[0]
    assert sum(h.kills for h in homes) >= POINTS


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s"]))
