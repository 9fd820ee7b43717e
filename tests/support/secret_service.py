"""The real Secret Service (gnome-keyring on the session bus, as scripts/test starts one) for the keychain tests:
whether it can be used, skip-or-fail when not, and what `secret-tool` (libsecret-tools) reads back from it."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

__all__ = ["require_secret_service", "secret_service_problem", "secret_tool_lookup"]


def secret_service_problem() -> str | None:
    """Why the real Secret Service cannot be used here, or None when it can."""
    try:
        from keyring.backends import SecretService
    except ImportError as exc:  # pragma: no cover - secretstorage is a Linux dependency
        return f"keyring's SecretService backend is unavailable: {exc}"
    try:
        SecretService.Keyring.priority  # noqa: B018 - raises when no daemon is reachable
    except Exception as exc:
        return f"no Secret Service reachable on D-Bus: {exc}"
    if shutil.which("secret-tool") is None:
        return "secret-tool (libsecret-tools) is not installed"
    return None


def require_secret_service() -> None:
    """Skip the test when the real Secret Service cannot be used; in CI, fail it instead."""
    problem = secret_service_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the keychain tests against a real Secret Service (scripts/test): {problem}")
    pytest.skip(problem)


def secret_tool_lookup(service: str, name: str) -> str | None:
    """The secret stored for (``service``, ``name``) as `secret-tool lookup` finds it, or None."""
    result = subprocess.run(
        ["secret-tool", "lookup", "service", service, "username", name],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return result.stdout if result.returncode == 0 else None
