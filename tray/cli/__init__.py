"""The ``headway`` command.

``headway`` alone runs the tray app (headless when there is no display); ``headway serve`` runs the gateway without
a tray. Everything else manages settings, accounts and secrets, or asks the running instance for its status.
Secrets are read from a prompt or standard input, never from the command line (argv is visible to other users).
"""

from __future__ import annotations

import os
import sys

from proxy.config.paths import Paths

from .root import cli, env_paths  # the commands' modules load on first use (root.COMMAND_MODULES)

__all__ = ["cli", "main"]


def main() -> None:
    """The ``headway`` command. A known failure ends in one message with its fix; an unknown one in a short message
    and a crash report; never in a traceback (:mod:`tray.failures`)."""
    try:
        cli(prog_name="headway")
    except BrokenPipeError:  # `headway doctor | head -1`: the reader left; nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(1) from None
    except Exception as exc:
        from ..failures import handle

        try:
            paths: Paths | None = env_paths()
        except Exception:
            paths = None
        raise SystemExit(handle(exc, paths)) from None


if __name__ == "__main__":
    main()
