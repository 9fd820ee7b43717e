"""`headway relay setup` as a user runs it against the fake Cloudflare API (tests/fakes/cloudflare.py): a real CLI
subprocess, the API token typed on stdin, no probe of the deployed Worker."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from tests.fakes.cloudflare import CF_ACCOUNT, CF_TOKEN
from tests.support.gateway import run_cli

__all__ = ["run_relay_setup"]


def run_relay_setup(
    env: Mapping[str, str],
    *args: str,
    token: str = CF_TOKEN,
    account_id: str | None = CF_ACCOUNT,
) -> subprocess.CompletedProcess[str]:
    """`headway relay setup [--account-id ACCOUNT] --api-token-stdin --no-probe ARGS` with ``token`` on stdin;
    ``account_id=None`` leaves the account id to what the settings remember."""
    account = ["--account-id", account_id] if account_id is not None else []
    return run_cli(
        "relay",
        "setup",
        *account,
        "--api-token-stdin",
        "--no-probe",
        *args,
        input=token + "\n",
        env=dict(env),
    )
