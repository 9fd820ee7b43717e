"""``python -m benchmarks [--quick] [--json]``: start the mock and the gateway, measure, print, stop everything.

``python -m benchmarks soak [--seconds N]`` runs the soak instead (see benchmarks/soak.py): minutes, not in CI.
``python -m benchmarks imports [--quick]`` measures what each mode imports (see benchmarks/imports.py).
``python -m benchmarks shared-state [--quick]`` measures team mode's shared state (see benchmarks/shared_state.py).
``python -m benchmarks clients [--quick]`` compares upstream HTTP client candidates (see benchmarks/clients.py).
``python -m benchmarks --peer litellm`` adds a third column: a LiteLLM proxy on the same mock (see benchmarks/peer.py).

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

from .load import Target
from .processes import Server, start_floor, start_gateway, start_mock
from .report import check_aims, render
from .scenarios import DEFAULT, QUICK, Gateway, Profile, run_all
from .startup import Launcher, cold_start, headway_launcher, keychain_idle_rss

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


async def _measure(
    workdir: Path,
    mock: Server,
    floor: Server,
    gateways: list[Gateway],
    launchers: dict[str, Launcher],
    profile: Profile,
    say: Any,
) -> dict[str, Any]:
    """The load figures (scenarios.run_all, with the bare relay as the floor), then the start-up ones: idle RSS with
    the system keychain, and cold start to the first proxied 200 for each gateway."""
    result = await run_all(mock, gateways, profile, say, floor)
    say("idle memory with the system keychain as the secrets backend")
    keychain = await keychain_idle_rss(workdir, mock.url)
    result["rss_mb"]["via"]["idle_keychain"] = keychain["mb"]
    result["rss_mb"]["via"]["keychain"] = keychain["status"]
    result["errors"]["via"] += keychain.get("errors", 0)
    result["cold_start_s"] = {}
    for side, launcher in launchers.items():
        spawns = profile.cold_starts if side == "via" else 1
        say(f"{side}: cold start to the first proxied 200, {spawns} spawn(s)")
        result["cold_start_s"][side] = await cold_start(launcher, workdir, spawns)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["soak"]:
        from .soak import main as soak

        return soak(argv[1:])
    if argv[:1] == ["clients"]:
        from .clients import main as clients

        return clients(argv[1:])
    if argv[:1] == ["imports"]:
        from .imports import main as imports

        return imports(argv[1:])
    if argv[:1] == ["shared-state"]:
        from .shared_state import main as shared_state

        return shared_state(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small counts (under 40 s), as the smoke test runs it"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any request failed")
    parser.add_argument(
        "--peer",
        choices=["litellm"],
        help="measure another gateway side by side (a third column); needs it installed, never in CI",
    )
    parser.add_argument(
        "--peer-command", metavar="PATH", help="the peer's executable (default: `litellm` on PATH)"
    )
    args = parser.parse_args(argv)
    profile = QUICK if args.quick else DEFAULT
    started = time.monotonic()
    say = _progress(not args.json, started)
    peer_command: list[str] | None = None
    if args.peer:
        from .peer import find_litellm

        peer_command = find_litellm(args.peer_command)
        if peer_command is None:
            print(
                "--peer litellm: LiteLLM is not installed (no `litellm` on PATH, no --peer-command); "
                "install 'litellm[proxy]' in a venv of its own and pass its `litellm` with --peer-command",
                file=sys.stderr,
            )
            return 1

    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="headway-bench-") as tmp:
        workdir = Path(tmp)
        try:
            say("starting the mock upstream")
            mock = start_mock(workdir)
            servers.append(mock)
            say("starting the bare relay (the floor)")
            floor = start_floor(workdir, mock.url)
            servers.append(floor)
            say("starting `headway serve`")
            gateway = start_gateway(workdir, mock.url)
            servers.append(gateway)
            gateways = [Gateway("via", gateway, Target.of("via", gateway, gateway.key))]
            launchers = {"via": headway_launcher(workdir, mock.url)}
            result: dict[str, Any] = {"benchmark": "headway-gateway-overhead", "mode": profile.name}
            if peer_command is not None:
                from .peer import litellm_launcher, start_litellm

                say("starting the LiteLLM proxy (the peer)")
                peer = start_litellm(peer_command, workdir, mock.url)
                servers.append(peer)
                gateways.append(Gateway("peer", peer, Target.of("peer", peer, peer.key)))
                launchers["peer"] = litellm_launcher(peer_command, workdir, mock.url)
                result["peer_name"] = "LiteLLM"
            limit = _RUN_LIMIT[profile.name] + (300.0 if peer_command else 0.0)
            measured = asyncio.run(
                asyncio.wait_for(_measure(workdir, mock, floor, gateways, launchers, profile, say), limit)
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
    result["aims_met"] = all(aim["ok"] is not False for aim in result["aims"])
    line = json.dumps(result, separators=(",", ":"))
    if args.json:
        print(line)
    else:
        print(render(result))
        print()
        print(line)
    failed = sum(result["errors"].values())
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
