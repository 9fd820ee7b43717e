"""What a Headway process imports depends on what it does: team-mode libraries only when team mode is on.

`redis` (and the OpenTelemetry SDK it pulls in when installed) load only when a shared-state URL is configured or
a `headway keys` command reaches Redis — so `headway`, `headway serve` and every other command start without them
(and keep working where they cannot be imported: a CLI run under another Python).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_cli_and_the_engine_start_without_team_mode_libraries() -> None:
    code = (
        "import sys, tray.cli, proxy.engine, proxy.shared.admin;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'redis', 'opentelemetry'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
