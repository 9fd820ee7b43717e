"""``python -m benchmarks [--quick] [--json]``: start the mock and the gateway, measure, print, stop everything.

``python -m benchmarks soak [--seconds N]`` runs the soak instead (see benchmarks/soak.py): minutes, not in CI.
``python -m benchmarks shared-state [--quick]`` measures team mode's shared state (see benchmarks/shared_state.py).

Exits 0 when the run completed (whether or not every aim was met; the aims are flagged in the output), 1 when it
could not run, or when requests failed and ``--strict`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .processes import Server, start_gateway, start_mock
from .report import check_aims, render
from .scenarios import DEFAULT, QUICK, run_all

_RUN_LIMIT = {"quick": 60.0, "default": 300.0}


def _version() -> str:
    try:
        from proxy import __version__
    except ImportError:
        return "unknown"
    return __version__


def _progress(enabled: bool, started: float) -> Any:
    def say(step: str) -> None:
        if enabled:
            print(f"[{time.monotonic() - started:6.1f}s] {step}", file=sys.stderr, flush=True)

    return say


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:
        from .soak import main as soak

        return soak(argv[1:])
    if argv[:1] == ["shared-state"]:
        from .shared_state import main as shared_state

        return shared_state(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small counts (under 30 s), as the smoke test runs it"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any request failed")
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else DEFAULT
    started = time.monotonic()
    say = _progress(not args.json, started)

    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="headway-bench-") as tmp:
        workdir = Path(tmp)
        try:
            say("starting the mock upstream")
            mock = start_mock(workdir)
            servers.append(mock)
            say("starting `headway serve`")
            gateway = start_gateway(workdir, mock.url)
            servers.append(gateway)
            result: dict[str, Any] = {"benchmark": "headway-gateway-overhead", "mode": profile.name}
            measured = asyncio.run(
                asyncio.wait_for(run_all(mock, gateway, profile, say), _RUN_LIMIT[profile.name])
            )
            for server in servers:
                if not server.alive():
                    raise RuntimeError(
                        f"the {server.name} process exited during the run:\n{server.log_tail()}"
                    )
        except (RuntimeError, OSError, TimeoutError) as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            for server in servers:
                print(f"--- {server.name} output ---\n{server.log_tail()}", file=sys.stderr)
            return 1
        finally:
            for server in reversed(servers):
                server.stop()

    result.update(measured)
    result.update(
        {
            "elapsed_s": round(time.monotonic() - started, 1),
            "headway_version": _version(),
            "python": platform.python_version(),
        }
    )
    result["aims"] = check_aims(result)
    result["aims_met"] = all(aim["ok"] for aim in result["aims"])
    line = json.dumps(result, separators=(",", ":"))
    if args.json:
        print(line)
    else:
        print(render(result))
        print()
        print(line)
    failed = result["errors"]["direct"] + result["errors"]["via"]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
