"""Deploy the relay Worker into the user's own Cloudflare account. The API token is used once and never stored.
(Once deployed: :mod:`proxy.relay.deployed` reports on it, makes it forget, turns the relay off.)

    verify the token         GET  /user/tokens/verify   (account-owned tokens: GET /accounts/{a}/tokens/verify)
    kv storage only:         GET  /accounts/{a}/storage/kv/namespaces, POST it {title} when "headway-relay" is missing
    migration state          GET  /accounts/{a}/workers/scripts                   (the script's migration_tag)
    upload the Worker        PUT  /accounts/{a}/workers/scripts/{name}             multipart: metadata + the modules
    expose it                POST /accounts/{a}/workers/scripts/{name}/subdomain   {"enabled": true}
    its address              GET  /accounts/{a}/workers/subdomain      → https://{name}.{subdomain}.workers.dev
    then: the relay secret to the keychain ("relay-secret"), the relay on in the settings, GET {url}/v1/info

Idempotent: re-running finds the KV namespace, applies the Durable Object migration only once, and uploads the
current Worker over the old one (an upgrade), keeping the secret already in the keychain unless asked to rotate it.
Errors say which step failed and why: :class:`InvalidToken` (the token itself), :class:`MissingPermission` (403 on a
step: the permission it needs is named), :class:`CloudflareError` (anything else the API said).

The API base is ``HEADWAY_CLOUDFLARE_API_URL`` (default https://api.cloudflare.com/client/v4), for tests and proxies.
Functions here are synchronous (the CLI and the settings page call them from their own threads).
"""

from __future__ import annotations

import json
import os
import re
import secrets as pysecrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Literal

import httpx

from proxy.config.settings import Settings
from proxy.config.store import SettingsStore
from proxy.relay.protocol import INFO_PATH, PROTOCOL_HEADER, PROTOCOL_VERSION, RELAY_SECRET, TOKEN_HEADER
from proxy.relay.upstreams import relay_origins
from proxy.secrets.keychain import Keychain

__all__ = [
    "API_URL_ENV",
    "COMPATIBILITY_DATE",
    "DEFAULT_API_URL",
    "CloudflareError",
    "InvalidToken",
    "MissingPermission",
    "RelayInfo",
    "RelaySetupError",
    "cloudflare_api_base",
    "probe_relay",
    "setup_relay",
    "worker_source",
    "worker_version",
]

DEFAULT_API_URL = "https://api.cloudflare.com/client/v4"
API_URL_ENV = "HEADWAY_CLOUDFLARE_API_URL"
COMPATIBILITY_DATE = "2025-09-01"
KV_TITLE = "headway-relay"
DO_CLASS = "RelaySession"
MIGRATION_TAG = "headway-v1"
_ACCOUNT_RE = re.compile(r"^[0-9a-f]{32}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_PERMISSION_CODES = frozenset(
    {10000, 9109, 10001}
)  # "Authentication error", "Unauthorized to access requested resource"

Storage = Literal["durable_object", "kv"]


class RelaySetupError(Exception):
    """Setup could not finish; the message says which step and what to do."""


class InvalidToken(RelaySetupError):
    """Cloudflare does not accept the API token at all."""


class MissingPermission(RelaySetupError):
    """The token works but may not do one of the steps (or the account id is not one it can use)."""


class CloudflareError(RelaySetupError):
    """The Cloudflare API answered with an error, or could not be reached."""


@dataclass(frozen=True)
class RelayInfo:
    url: str
    worker_name: str
    account_id: str
    storage: Storage
    namespace_id: str | None
    worker_version: str
    created: bool  # False: an existing Worker was upgraded
    secret_rotated: bool
    reachable: bool | None  # None: not probed
    detail: str | None = None
    upstreams: list[str] = field(default_factory=list)  # the origins the Worker may call
    ttl_seconds: int = 86400

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cloudflare_api_base(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return (env.get(API_URL_ENV) or DEFAULT_API_URL).rstrip("/")


MAIN_MODULE = "worker.js"


def worker_modules() -> dict[str, str]:
    """The Worker's JavaScript modules by name (``worker.js`` is the main one), shipped as package data."""
    folder = resources.files("proxy.relay.worker")
    return {
        item.name: item.read_text(encoding="utf-8")
        for item in sorted(folder.iterdir(), key=lambda item: item.name)
        if item.name.endswith(".js")
    }


def worker_source() -> str:
    """The Worker's main module."""
    return worker_modules()[MAIN_MODULE]


def worker_version(modules: Mapping[str, str] | None = None) -> str:
    """The WORKER_VERSION the modules declare (in common.js)."""
    sources = worker_modules() if modules is None else modules
    for source in sources.values():
        match = re.search(r'const WORKER_VERSION = "([^"]+)"', source)
        if match:
            return match.group(1)
    return "unknown"


_PERMISSIONS = {
    "kv": "Account · Workers KV Storage · Edit",
    "scripts": "Account · Workers Scripts · Edit",
    "subdomain": "Account · Workers Scripts · Edit",
}


class _API:
    """Cloudflare API v4 calls with the envelope checked and errors named after the step."""

    def __init__(self, http: httpx.Client, base: str, token: str, account_id: str) -> None:
        self._http = http
        self._base = base
        self._auth = {"authorization": f"Bearer {token}"}
        self.account_id = account_id

    def raw(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        try:
            response = self._http.request(method, f"{self._base}{path}", headers=self._auth, **kwargs)
        except httpx.HTTPError as exc:
            raise CloudflareError(f"cannot reach the Cloudflare API at {self._base}: {exc}") from exc
        try:
            data = response.json()
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return response.status_code, data

    def call(self, step: str, method: str, path: str, *, permission: str | None = None, **kwargs: Any) -> Any:
        status, data = self.raw(method, path, **kwargs)
        if 200 <= status < 300 and data.get("success") is True:
            return data.get("result")
        errors = [e for e in data.get("errors") or [] if isinstance(e, dict)]
        codes = {e.get("code") for e in errors}
        said = "; ".join(f"{e.get('code')} {e.get('message')}" for e in errors) or f"HTTP {status}"
        if status in (401, 403) and (codes & _PERMISSION_CODES or not codes):
            needs = f"the permission “{permission}”" if permission else "a permission it needs"
            raise MissingPermission(
                f"Cloudflare refused to {step} ({said}): the token lacks {needs} on account {self.account_id}, "
                "or the account id is not one this token can use. Edit the token at dash.cloudflare.com → "
                "My Profile → API Tokens, or use the account id shown on the Workers & Pages overview."
            )
        if 7003 in codes or (status == 404 and "/accounts/" in path and step.startswith("verify")):
            raise CloudflareError(
                f"Cloudflare does not know account {self.account_id} ({said}); check the account id"
            )
        raise CloudflareError(f"cannot {step}: Cloudflare answered {said} (HTTP {status})")


def _verify_token(api: _API) -> None:
    status, data = api.raw("GET", "/user/tokens/verify")
    if not (200 <= status < 300 and data.get("success") is True):
        # Account-owned tokens verify under the account instead.
        status, data = api.raw("GET", f"/accounts/{api.account_id}/tokens/verify")
    result = data.get("result")
    if 200 <= status < 300 and data.get("success") is True:
        state = result.get("status") if isinstance(result, dict) else None
        if state not in (None, "active"):
            raise InvalidToken(f"this Cloudflare API token is {state}; create a new one")
        return
    said = "; ".join(
        f"{e.get('code')} {e.get('message')}" for e in data.get("errors") or [] if isinstance(e, dict)
    )
    raise InvalidToken(
        f"Cloudflare rejected this API token ({said or f'HTTP {status}'}): it is mistyped, expired or revoked. "
        "Create one at dash.cloudflare.com → My Profile → API Tokens with the permission "
        f"“{_PERMISSIONS['scripts']}” (and “{_PERMISSIONS['kv']}” for KV storage)."
    )


def _kv_namespace(api: _API, progress: Callable[[str], None]) -> str:
    base = f"/accounts/{api.account_id}/storage/kv/namespaces"
    page = 1
    while True:
        found = api.call(
            "list KV namespaces",
            "GET",
            base,
            permission=_PERMISSIONS["kv"],
            params={"per_page": 100, "page": page},
        )
        if not isinstance(found, list):
            raise CloudflareError("cannot list KV namespaces: unexpected answer")
        for namespace in found:
            if isinstance(namespace, dict) and namespace.get("title") == KV_TITLE:
                progress(f"using KV namespace {KV_TITLE}")
                return str(namespace["id"])
        if len(found) < 100:
            break
        page += 1
    created = api.call(
        "create a KV namespace", "POST", base, permission=_PERMISSIONS["kv"], json={"title": KV_TITLE}
    )
    progress(f"created KV namespace {KV_TITLE}")
    return str(created["id"])


def _existing_script(api: _API, name: str) -> dict[str, Any] | None:
    scripts = api.call(
        "list Workers",
        "GET",
        f"/accounts/{api.account_id}/workers/scripts",
        permission=_PERMISSIONS["scripts"],
    )
    for script in scripts if isinstance(scripts, list) else []:
        if isinstance(script, dict) and script.get("id") == name:
            return script
    return None


def _metadata(
    storage: Storage,
    secret: str,
    namespace_id: str | None,
    migration_tag: str | None,
    name: str,
    *,
    upstreams: list[str],
    ttl_seconds: int,
) -> dict[str, Any]:
    bindings: list[dict[str, Any]] = [
        {"type": "secret_text", "name": "RELAY_TOKEN", "text": secret},
        {"type": "plain_text", "name": "RELAY_UPSTREAMS", "text": json.dumps(upstreams)},
        {"type": "plain_text", "name": "RELAY_TTL_SECONDS", "text": str(ttl_seconds)},
    ]
    metadata: dict[str, Any] = {
        "main_module": MAIN_MODULE,
        "compatibility_date": COMPATIBILITY_DATE,
        "bindings": bindings,
    }
    if storage == "kv":
        bindings.append({"type": "kv_namespace", "name": "RELAY_STATE", "namespace_id": namespace_id})
        return metadata
    bindings.append({"type": "durable_object_namespace", "name": "RELAY_SESSION", "class_name": DO_CLASS})
    if migration_tag is None:
        metadata["migrations"] = {"new_tag": MIGRATION_TAG, "new_sqlite_classes": [DO_CLASS]}
    elif migration_tag != MIGRATION_TAG:
        raise CloudflareError(
            f"the Worker {name!r} already exists with Durable Object migrations Headway did not make "
            f"(tag {migration_tag!r}); choose another name with --name"
        )
    return metadata


def probe_relay(
    url: str, secret: str, *, http: httpx.Client | None = None, timeout: float = 10.0
) -> dict[str, Any]:
    """GET {url}/v1/info with the secret: the Worker's protocol, version and storage. RelaySetupError if not."""
    own = http is None
    client = http or httpx.Client(timeout=timeout)
    try:
        started = time.perf_counter()
        try:
            response = client.get(
                f"{url.rstrip('/')}{INFO_PATH}",
                headers={TOKEN_HEADER: secret, PROTOCOL_HEADER: str(PROTOCOL_VERSION)},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise RelaySetupError(f"the relay at {url} is not reachable: {exc}") from exc
        if response.status_code == 401:
            raise RelaySetupError(
                "the relay refused the secret in the keychain; run `headway relay setup` again"
            )
        if response.status_code != 200:
            raise RelaySetupError(f"the relay at {url} answered HTTP {response.status_code}")
        try:
            info = response.json()
        except ValueError as exc:
            raise RelaySetupError(f"{url} did not answer like a Headway relay") from exc
        if not isinstance(info, dict) or "protocol" not in info:
            raise RelaySetupError(f"{url} did not answer like a Headway relay")
        info["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        if info.get("protocol") != PROTOCOL_VERSION:
            info["warning"] = (
                f"the Worker speaks protocol {info.get('protocol')}; run `headway relay setup` to upgrade it"
            )
        return info
    finally:
        if own:
            client.close()


def setup_relay(
    api_token: str,
    account_id: str,
    *,
    keychain: Keychain,
    store: SettingsStore,
    api_base: str | None = None,
    worker_name: str = "headway-relay",
    storage: Storage = "durable_object",
    transport: Literal["http", "websocket"] | None = None,
    rotate_secret: bool = False,
    probe: bool = True,
    probe_seconds: float = 20.0,
    progress: Callable[[str], None] | None = None,
    http: httpx.Client | None = None,
    environ: Mapping[str, str] | None = None,
) -> RelayInfo:
    """Deploy (or upgrade) the relay Worker, store its secret, turn the relay on. The token is not kept anywhere.

    The Worker is bound to the provider origins in force (settings and ``environ``'s HEADWAY_*_BASE_URL overrides,
    accounts' own base URLs) and to ``relay.ttl_hours``; ``rotate_secret`` replaces the secret, and the Worker
    refuses the old one as soon as the upload is done.
    """
    say = progress or (lambda message: None)
    api_token = api_token.strip()
    account_id = account_id.strip().lower()
    if not api_token:
        raise InvalidToken("no Cloudflare API token given")
    if not _ACCOUNT_RE.fullmatch(account_id):
        raise RelaySetupError(
            "the account id is 32 hexadecimal characters (Workers & Pages → overview, right side)"
        )
    if not _NAME_RE.fullmatch(worker_name):
        raise RelaySetupError("the Worker name is lowercase letters, digits and dashes, at most 63")
    base = (api_base or cloudflare_api_base()).rstrip("/")
    modules = worker_modules()
    settings = store.current
    upstreams = relay_origins(settings, os.environ if environ is None else environ)
    ttl_seconds = max(60, round(settings.relay.ttl_hours * 3600))
    own = http is None
    client = http or httpx.Client(timeout=httpx.Timeout(60.0, connect=15.0))
    try:
        api = _API(client, base, api_token, account_id)
        say("checking the API token")
        _verify_token(api)
        namespace_id = _kv_namespace(api, say) if storage == "kv" else None
        existing = _existing_script(api, worker_name)
        old_secret = keychain.get(RELAY_SECRET)
        secret = old_secret if (old_secret and not rotate_secret) else pysecrets.token_urlsafe(32)
        tag = existing.get("migration_tag") if existing is not None else None
        metadata = _metadata(
            storage,
            secret,
            namespace_id,
            tag if isinstance(tag, str) else None,
            worker_name,
            upstreams=upstreams,
            ttl_seconds=ttl_seconds,
        )
        say(
            ("upgrading" if existing else "deploying")
            + f" the Worker {worker_name} ({storage.replace('_', ' ')}) for {', '.join(upstreams)}"
        )
        api.call(
            "upload the Worker",
            "PUT",
            f"/accounts/{account_id}/workers/scripts/{worker_name}",
            permission=_PERMISSIONS["scripts"],
            files=[
                ("metadata", ("metadata.json", json.dumps(metadata).encode(), "application/json")),
                *(
                    (name, (name, source.encode(), "application/javascript+module"))
                    for name, source in modules.items()
                ),
            ],
        )
        # From here the deployed Worker knows this secret: keep it even if a later step fails.
        if secret != old_secret:
            keychain.set(RELAY_SECRET, secret)
        say("enabling its workers.dev address")
        api.call(
            "enable the Worker's workers.dev address",
            "POST",
            f"/accounts/{account_id}/workers/scripts/{worker_name}/subdomain",
            permission=_PERMISSIONS["subdomain"],
            json={"enabled": True},
        )
        try:
            sub = api.call(
                "read the account's workers.dev subdomain",
                "GET",
                f"/accounts/{account_id}/workers/subdomain",
                permission=_PERMISSIONS["subdomain"],
            )
        except CloudflareError as exc:
            if "10007" not in str(exc):
                raise
            sub = None
        subdomain = sub.get("subdomain") if isinstance(sub, dict) else None
        if not subdomain:
            raise CloudflareError(
                "this account has no workers.dev subdomain yet: open Workers & Pages in the Cloudflare dashboard "
                "once to choose one, then run setup again"
            )
        url = f"https://{worker_name}.{subdomain}.workers.dev"

        def enable(settings: Settings) -> None:
            relay = settings.relay
            relay.enabled = True
            relay.url = url
            relay.worker_name = worker_name
            relay.account_id = account_id
            relay.storage = storage
            relay.upstreams = list(upstreams)
            if transport is not None:
                relay.transport = transport

        store.update(enable)
        say(f"relay on: {url}")
        reachable: bool | None = None
        detail: str | None = None
        if probe:
            reachable, detail = _probe_until(url, secret, client, probe_seconds, say)
        return RelayInfo(
            url=url,
            worker_name=worker_name,
            account_id=account_id,
            storage=storage,
            namespace_id=namespace_id,
            worker_version=worker_version(modules),
            created=existing is None,
            secret_rotated=secret != old_secret,
            reachable=reachable,
            detail=detail,
            upstreams=upstreams,
            ttl_seconds=ttl_seconds,
        )
    finally:
        if own:
            client.close()


def _probe_until(
    url: str, secret: str, http: httpx.Client, seconds: float, say: Callable[[str], None]
) -> tuple[bool, str | None]:
    """A new workers.dev address takes a few seconds to answer everywhere: retry for a while."""
    deadline = time.monotonic() + seconds
    say("waiting for the Worker to answer")
    last = ""
    while True:
        try:
            info = probe_relay(
                url, secret, http=http, timeout=min(10.0, max(1.0, deadline - time.monotonic()))
            )
            return True, f"Worker {info.get('worker_version')} answered in {info.get('latency_ms')} ms"
        except RelaySetupError as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            return False, f"not reachable yet ({last}); `headway relay status` checks again"
        time.sleep(1.0)
