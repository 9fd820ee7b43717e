"""Each agent set up for Headway: its config file points at this gateway with the current key, and no variable of
this shell overrides it."""

from __future__ import annotations

from collections.abc import Mapping

from proxy.config.paths import Paths
from proxy.config.settings import Settings
from proxy.secrets.keychain import ACCESS_KEY, Keychain, KeychainError

from . import Check

__all__ = ["checks"]


def _gateway_url(paths: Paths, settings: Settings) -> str | None:
    from tray.app import read_runtime

    runtime = read_runtime(paths)
    if runtime and isinstance(runtime.get("url"), str):
        return str(runtime["url"])
    gateway = settings.gateway
    if gateway.port == 0:
        return None
    host = f"[{gateway.host}]" if ":" in gateway.host else gateway.host
    return f"http://{host}:{gateway.port}"


def checks(paths: Paths, settings: Settings, keychain: Keychain, environ: Mapping[str, str]) -> list[Check]:
    from web_ui.agents import (
        AGENTS,
        PROVIDER_ID,
        AgentConfigError,
        config_path,
        endpoint_for,
        env_overrides,
        plan,
    )

    try:
        key = keychain.get(ACCESS_KEY)
    except KeychainError:
        key = None
    url = _gateway_url(paths, settings)
    out: list[Check] = []
    for name, info in AGENTS.items():
        path = config_path(name, environ)
        if path is None or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            out.append(Check(f"agent {name}", "warn", f"cannot read {path}: {exc}", f"check {path}"))
            continue
        looks_configured = (
            (key is not None and key in text)
            or (url is not None and url in text)
            or f"model_providers.{PROVIDER_ID}" in text
            or "hw-" in text
        )
        if not looks_configured:
            continue
        check_name = f"agent {name}"
        problems: list[Check] = []
        if key is None or url is None:
            why = (
                "the access key cannot be read (see the keychain check)"
                if key is None
                else "gateway.port is 0"
            )
            problems.append(Check(check_name, "warn", f"{path}: cannot compare with this gateway: {why}", ""))
        else:
            try:
                wanted = plan(name, endpoint_for(url, key), environ=environ, path=path)
            except AgentConfigError as exc:
                problems.append(Check(check_name, "fail", str(exc), f"headway configure {name} --print"))
            else:
                if wanted.changed:
                    problems.append(
                        Check(
                            check_name,
                            "fail",
                            f"{path} does not point at {url} with the current access key",
                            f"headway configure {name}",
                        )
                    )
        for override in env_overrides(name, key, environ):
            problems.append(
                Check(
                    check_name,
                    "fail",
                    f"{override.variable} is set in this environment: {info.title} {override.effect}",
                    f"unset {override.variable} (and remove it from your shell profile)",
                )
            )
        out.extend(problems or [Check(check_name, "ok", f"{path} points at {url} with the current key")])
    if not out:
        out.append(
            Check("agents", "ok", "no agent is set up for Headway yet (`headway configure <agent>` does it)")
        )
    return out
