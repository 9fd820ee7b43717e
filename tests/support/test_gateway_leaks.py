"""A `headway serve` a test started never outlives the test (tests/conftest.py, `no_gateway_left_running`).

A test that timed out before its ``stop()`` left its gateway running for the rest of the session (five of them after
a local run; one produced a ResourceWarning in a later test in CI). Here a small suite, run by a separate pytest with
the real tests/conftest.py, starts gateways and does not stop them; each must be gone when that pytest ends.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.keyring_daemon import alive

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

INNER = """
import json
import time
from pathlib import Path

import pytest

from proxy.config.paths import Paths
from tests.support.gateway import GatewayProcess, start_gateway_process

PIDS = Path({pids!r})


def start(name: str, home: Path) -> GatewayProcess:
    paths = Paths.from_env({{"HEADWAY_HOME": str(home)}})
    paths.ensure()
    paths.settings_file.write_text(json.dumps({{"secrets": {{"backend": "file"}}}}))
    process = start_gateway_process(env={{"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}}, home=home)
    with PIDS.open("a") as out:
        out.write(f"{{name}}={{process.proc.pid}}\\n")
    return process


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    process = start("shared", tmp_path_factory.mktemp("shared"))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def never_stopped(tmp_path_factory: pytest.TempPathFactory) -> GatewayProcess:
    return start("session", tmp_path_factory.mktemp("session"))


def test_passes_and_leaves_its_gateway(headway_home: Path) -> None:
    start("leaked", headway_home)


def test_fails_and_leaves_its_gateway(headway_home: Path) -> None:
    start("failed", headway_home)
    assert False, "the test's own failure"


@pytest.mark.timeout(8)
def test_times_out_with_its_gateway(headway_home: Path) -> None:
    start("timed out", headway_home)
    time.sleep(60)


def test_uses_the_shared_gateway(shared: GatewayProcess) -> None:
    assert shared.proc.poll() is None


def test_uses_the_shared_gateway_after_another_test(shared: GatewayProcess) -> None:
    assert shared.proc.poll() is None, "a module-scoped gateway was ended after the test before"


def test_uses_a_session_gateway_nobody_stops(never_stopped: GatewayProcess) -> None:
    assert never_stopped.proc.poll() is None
"""


def _serving(pid: int) -> bool:
    """``pid`` is still a `headway serve` (not a process that has taken its PID since)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return alive(pid) and b"serve" in command


@pytest.mark.timeout(110)
def test_a_gateway_left_running_by_a_test_is_ended_and_the_test_errors(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids_file = pytester.path / "pids.txt"
    pytester.makeini(f"[pytest]\npythonpath = {ROOT}\ntimeout = 60\n")
    pytester.makeconftest('pytest_plugins = ["tests.conftest"]\n')
    pytester.makepyfile(test_inner=INNER.format(pids=str(pids_file)))
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    pids: dict[str, int] = {}
    try:
        result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", timeout=100)
        output = result.stdout.str()
        pids = {
            name: int(pid) for name, pid in (line.split("=") for line in pids_file.read_text().splitlines())
        }
        assert sorted(pids) == ["failed", "leaked", "session", "shared", "timed out"], output
        result.assert_outcomes(passed=4, failed=2, errors=1)
        # The test that passed errors in its teardown, naming its gateway ...
        assert "ERROR at teardown of test_passes_and_leaves_its_gateway" in output, output
        assert f"the test left `headway serve` (pid {pids['leaked']}) running; killed it" in output, output
        # ... those that failed or timed out have theirs ended without a second error for it.
        assert "Timeout (>8.0s)" in output, output
        for name in ("failed", "timed out"):
            assert f"pid {pids[name]})" not in output, output
        # Nothing outlives the run: not the leaked ones, nor the session-scoped one nobody stopped.
        assert {name: pid for name, pid in pids.items() if _serving(pid)} == {}
    finally:
        for pid in pids.values():  # this test's own failure must not leak them into the rest of the run
            if _serving(pid):
                os.killpg(pid, signal.SIGKILL)
