"""The container's entry point: configure Headway from the environment and mounted secrets, then run
``headway serve`` in its place (exec: signals reach it directly).

Configuration (every replica of a deployment gets the same):

- ``HEADWAY_ACCESS_KEY`` (required): the gateway's own key — the same on every replica, so agents and /metrics
  scrapers use one key whichever replica answers. Member keys (``headway keys add``) come on top, from Redis.
- API keys, from a mounted file ``HEADWAY_SECRETS_FILE`` (default ``/run/secrets/headway.json``) and/or the
  environment. The file: ``{"accounts": [{"label": "org-anthropic", "kind": "anthropic-api-key",
  "api_key": "sk-ant-…"}, …]}``. The environment: ``HEADWAY_ANTHROPIC_API_KEY`` and ``HEADWAY_OPENAI_API_KEY``
  (labels ``anthropic`` and ``openai``). Accounts are matched by label, so every replica has the same account ids
  and shares their health through Redis. ChatGPT accounts are not offered: a shared gateway never uses them.
- ``HEADWAY_SHARED_STATE_URL``: the Redis all replicas share (read by Headway itself).
- ``HEADWAY_ALLOWED_HOSTS``: comma-separated public names the reverse proxy forwards (gateway.allowed_hosts).
- ``HEADWAY_PORT`` (default 7337).

Secrets go to Headway's file keychain under ``HEADWAY_HOME`` (default ``/data``; owner-only, not encrypted: a
container has no OS keychain — keep ``/data`` on a volume only this container mounts, or tmpfs). Nothing here
prints a secret. With ``--check`` it configures, prints what it did, and exits instead of serving.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from proxy.config.accounts import AccountError, add_api_key_account, set_api_key
from proxy.config.paths import Paths
from proxy.config.settings import SettingsError
from proxy.config.store import SettingsStore
from proxy.secrets.keychain import ACCESS_KEY, Keychain

KINDS = ("anthropic-api-key", "openai-api-key")
ENV_KEYS = {
    "HEADWAY_ANTHROPIC_API_KEY": ("anthropic", "anthropic-api-key"),
    "HEADWAY_OPENAI_API_KEY": ("openai", "openai-api-key"),
}


class ConfigError(Exception):
    pass


def wanted_accounts(environ: dict[str, str]) -> list[tuple[str, str, str]]:
    """(label, kind, api key) from the mounted secrets file, then the environment."""
    found: list[tuple[str, str, str]] = []
    path = Path(environ.get("HEADWAY_SECRETS_FILE", "/run/secrets/headway.json"))
    if path.is_file():
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read it as JSON ({exc})") from None
        entries = data.get("accounts") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise ConfigError(f'{path}: expected {{"accounts": [...]}}')
        for index, entry in enumerate(entries):
            where = f"{path}: accounts[{index}]"
            if not isinstance(entry, dict):
                raise ConfigError(f"{where} is not an object")
            label, kind, key = entry.get("label"), entry.get("kind"), entry.get("api_key")
            if kind not in KINDS:
                raise ConfigError(
                    f"{where}.kind must be one of {', '.join(KINDS)} (ChatGPT accounts cannot be shared)"
                )
            if not isinstance(label, str) or not label.strip() or not isinstance(key, str) or not key.strip():
                raise ConfigError(f"{where} needs a non-empty label and api_key")
            found.append((label.strip(), kind, key.strip()))
    for variable, (label, kind) in ENV_KEYS.items():
        key = environ.get(variable, "").strip()
        if key:
            found.append((label, kind, key))
    return found


def configure(environ: dict[str, str]) -> tuple[Paths, list[str]]:
    """Write settings and secrets for ``headway serve``; what was done, one line each (no secrets)."""
    access_key = environ.get("HEADWAY_ACCESS_KEY", "").strip()
    if len(access_key) < 20:
        raise ConfigError(
            "HEADWAY_ACCESS_KEY is required (at least 20 characters; the same on every replica)"
        )
    accounts = wanted_accounts(environ)
    if not accounts:
        raise ConfigError(
            "no API key: mount HEADWAY_SECRETS_FILE or set HEADWAY_ANTHROPIC_API_KEY / HEADWAY_OPENAI_API_KEY"
        )
    environ.setdefault("HEADWAY_HOME", "/data")
    paths = Paths.from_env(environ)
    paths.ensure()
    store = SettingsStore.for_paths(paths)
    store.load(create=True)
    if store.error is not None:
        raise ConfigError(str(store.error))
    hosts = [h.strip() for h in environ.get("HEADWAY_ALLOWED_HOSTS", "").split(",") if h.strip()]

    def container(settings: Any) -> None:
        settings.secrets.backend = "file"
        settings.gateway.allow_remote = True
        settings.gateway.allowed_hosts = hosts

    store.update(container)
    keychain = Keychain(paths.keychain_service, backend="file", file_path=paths.secrets_file)
    done = [f"settings: {paths.settings_file} (allowed hosts: {', '.join(hosts) or 'loopback only'})"]
    if keychain.get(ACCESS_KEY) != access_key:
        keychain.set(ACCESS_KEY, access_key)
    done.append("access key: from HEADWAY_ACCESS_KEY")
    for label, kind, key in accounts:
        if store.current.account(label) is not None:
            set_api_key(store, keychain, label, key)
            done.append(f"account {label} ({kind}): key updated")
        else:
            add_api_key_account(store, keychain, kind, label, key)  # type: ignore[arg-type]
            done.append(f"account {label} ({kind}): added")
    return paths, done


def main(argv: list[str]) -> int:
    environ = dict(os.environ)
    try:
        paths, done = configure(environ)
    except (ConfigError, AccountError, SettingsError, ValueError, OSError) as exc:
        print(f"headway container: {exc}", file=sys.stderr)
        return 2
    for line in done:
        print(f"headway container: {line}", file=sys.stderr)
    if "--check" in argv:
        return 0
    port = environ.get("HEADWAY_PORT", "7337")
    command = [sys.executable, "-m", "tray", "serve", "--host", "0.0.0.0", "--port", port, "--allow-remote"]
    os.environ["HEADWAY_HOME"] = str(paths.home)
    os.execv(sys.executable, command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
