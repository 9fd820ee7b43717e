"""A fake Cloudflare API v4 for the relay setup: a real HTTP server on 127.0.0.1 that checks each call's shape.

    with FakeCloudflare() as cf:
        setup_relay(CF_TOKEN, CF_ACCOUNT, api_base=cf.url, ...)
        script = cf.scripts["headway-relay"]
        assert script.binding("RELAY_SESSION")["class_name"] == "RelaySession"

Routes (after shared/reference/relay.md and Cloudflare's API documentation):

    GET  /user/tokens/verify                                user tokens  → {id, status}; unknown: 401 code 1000
    GET  /accounts/{a}/tokens/verify                        account-owned tokens
    GET  /accounts/{a}/storage/kv/namespaces                → [{id, title}] (paged: per_page, page)
    POST /accounts/{a}/storage/kv/namespaces {title}        → {id, title}; a taken title: 400 code 10014
    GET  /accounts/{a}/workers/scripts                      → [{id, migration_tag?, …}]
    PUT  /accounts/{a}/workers/scripts/{name}               multipart: `metadata` (JSON) + the main module part
    POST /accounts/{a}/workers/scripts/{name}/subdomain     {"enabled": true}
    GET  /accounts/{a}/workers/subdomain                    → {subdomain}; none chosen yet: 404 code 10007

Errors come in Cloudflare's envelope (`{"success": false, "errors": [{"code", "message"}], "messages": [],
"result": null}`): a missing or unknown token on any route but verify → 403 code 10000 "Authentication error"; a
token without the route's permission, or without access to the account → 403 code 10000; a malformed account id →
404 code 7003. The upload is checked thoroughly (multipart parts and their content types, `main_module`,
`compatibility_date`, each binding's shape, that a kv namespace exists, that a Durable Object class is exported by the
module and created by a migration exactly once); a bad upload gets a 400 (code 10021) and its problems are kept in
`problems` so that a test can say what was wrong.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.server import Behavior, Exchange, FakeServer, RecordedRequest, _Handler

__all__ = [
    "CF_ACCOUNT",
    "CF_TOKEN",
    "KV_PERMISSION",
    "SCRIPTS_PERMISSION",
    "FakeCloudflare",
    "FakeScript",
    "FakeToken",
]

CF_ACCOUNT = "0123456789abcdef0123456789abcdef"
CF_TOKEN = "cf-test-token-7a1f9c0e3b5d2e4f6a8b"
SCRIPTS_PERMISSION = "workers_scripts:edit"
KV_PERMISSION = "workers_kv:edit"
_ALL = frozenset({SCRIPTS_PERMISSION, KV_PERMISSION})
_ACCOUNT_RE = re.compile(r"^[0-9a-f]{32}$")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_BINDING_FIELDS = {
    "secret_text": {"text"},
    "plain_text": {"text"},
    "kv_namespace": {"namespace_id"},
    "durable_object_namespace": {"class_name"},
}


@dataclass(frozen=True)
class FakeToken:
    value: str
    permissions: frozenset[str] = _ALL
    accounts: frozenset[str] = frozenset({CF_ACCOUNT})
    status: str = "active"
    account_owned: bool = False  # verifies only under /accounts/{a}/tokens/verify


@dataclass
class FakeScript:
    name: str
    metadata: dict[str, Any]
    modules: dict[str, tuple[str, bytes]]  # part name → (content type, bytes)
    migration_tag: str | None = None
    classes: set[str] = field(default_factory=set)  # Durable Object classes its migrations created
    subdomain_enabled: bool = False
    uploads: int = 1

    def binding(self, name: str) -> dict[str, Any]:
        return next(b for b in self.metadata.get("bindings", []) if b.get("name") == name)

    @property
    def main_source(self) -> str:
        return self.modules[self.metadata["main_module"]][1].decode()


class _Refused(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(r"^/user/tokens/verify$"), "verify_user"),
    ("GET", re.compile(r"^/accounts/([^/]+)/tokens/verify$"), "verify_account"),
    ("GET", re.compile(r"^/accounts/([^/]+)/storage/kv/namespaces$"), "list_namespaces"),
    ("POST", re.compile(r"^/accounts/([^/]+)/storage/kv/namespaces$"), "create_namespace"),
    ("GET", re.compile(r"^/accounts/([^/]+)/workers/scripts$"), "list_scripts"),
    ("PUT", re.compile(r"^/accounts/([^/]+)/workers/scripts/([^/]+)$"), "upload_script"),
    ("POST", re.compile(r"^/accounts/([^/]+)/workers/scripts/([^/]+)/subdomain$"), "enable_subdomain"),
    ("GET", re.compile(r"^/accounts/([^/]+)/workers/subdomain$"), "get_subdomain"),
]
_NEEDS = {
    "list_namespaces": KV_PERMISSION,
    "create_namespace": KV_PERMISSION,
    "list_scripts": SCRIPTS_PERMISSION,
    "upload_script": SCRIPTS_PERMISSION,
    "enable_subdomain": SCRIPTS_PERMISSION,
    "get_subdomain": SCRIPTS_PERMISSION,
}


class FakeCloudflare(FakeServer):
    request_id_header = "cf-ray"
    thread_name = "fake-cloudflare"

    def __init__(
        self,
        *,
        tokens: tuple[FakeToken, ...] = (FakeToken(CF_TOKEN),),
        subdomain: str | None = "alice",
        port: int = 0,
    ) -> None:
        super().__init__(port=port)
        self.tokens = {t.value: t for t in tokens}
        self.subdomain = subdomain
        self.namespaces: dict[str, str] = {}  # id → title
        self.scripts: dict[str, FakeScript] = {}
        self.problems: list[str] = []
        self._state = threading.Lock()

    # -- FakeServer hooks (errors are answered here, in Cloudflare's envelope) -------------------------------

    def error_body(self, status: int, error_type: str, message: str) -> dict[str, Any]:
        return _failure(int(error_type) if error_type.isdigit() else 10000, message)

    def default_error_type(self, status: int) -> str:
        return "10000"

    def api_key(self, request: RecordedRequest) -> str | None:
        value = request.headers.get("authorization", "")
        return value.removeprefix("Bearer ") if value.startswith("Bearer ") else None

    def _handle(self, handler: _Handler) -> None:
        request = self._record(handler)
        exchange = Exchange(self, handler, request, Behavior())
        route = _route(request.method, request.path)
        if route is None:
            exchange.send_json(
                _failure(7000, f"No route for that URI ({request.method} {request.path})"), 404
            )
            return
        try:
            with self._state:
                result = self._dispatch(*route, request)
        except _Refused as refused:
            exchange.send_json(_failure(refused.code, refused.message), refused.status)
            return
        exchange.send_json({"success": True, "errors": [], "messages": [], "result": result}, 200)

    # -- the routes --------------------------------------------------------------------------------------------

    def _dispatch(self, name: str, groups: tuple[str, ...], request: RecordedRequest) -> Any:
        value = self.api_key(request)
        if request.headers.get("authorization") and value is None:
            raise _Refused(400, 6003, "Invalid request headers")
        token = self.tokens.get(value or "")
        if name == "verify_user":
            if token is None or token.account_owned:
                raise _Refused(401, 1000, "Invalid API Token")
            return {"id": "tok_" + token.value[-8:], "status": token.status}
        account = groups[0]
        if not _ACCOUNT_RE.fullmatch(account):
            raise _Refused(
                404, 7003, f"Could not route to {request.path}, perhaps your object identifier is invalid?"
            )
        if name == "verify_account":
            if token is None or not token.account_owned or account not in token.accounts:
                raise _Refused(401, 1000, "Invalid API Token")
            return {"id": "tok_" + token.value[-8:], "status": token.status}
        if token is None or token.status != "active" or account not in token.accounts:
            raise _Refused(403, 10000, "Authentication error")
        if _NEEDS[name] not in token.permissions:
            raise _Refused(403, 10000, "Authentication error")
        handler = getattr(self, "_" + name)
        return handler(request, *groups[1:])

    def _list_namespaces(self, request: RecordedRequest) -> list[dict[str, Any]]:
        per_page = int(request.query.get("per_page", "20"))
        page = int(request.query.get("page", "1"))
        items = [{"id": k, "title": v, "supports_url_encoding": True} for k, v in self.namespaces.items()]
        return items[(page - 1) * per_page : page * per_page]

    def _create_namespace(self, request: RecordedRequest) -> dict[str, str]:
        body = request.json if isinstance(request.json, dict) else {}
        title = body.get("title")
        if not isinstance(title, str) or not title:
            raise self._bad(10019, "a namespace needs a title")
        if title in self.namespaces.values():
            raise _Refused(400, 10014, "a namespace with this account ID and title already exists")
        namespace_id = secrets.token_hex(16)
        self.namespaces[namespace_id] = title
        return {"id": namespace_id, "title": title}

    def _list_scripts(self, request: RecordedRequest) -> list[dict[str, Any]]:
        out = []
        for script in self.scripts.values():
            item: dict[str, Any] = {"id": script.name, "created_on": "2026-01-01T00:00:00Z"}
            if script.migration_tag:
                item["migration_tag"] = script.migration_tag
            out.append(item)
        return out

    def _upload_script(self, request: RecordedRequest, name: str) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data") or "boundary=" not in content_type:
            raise self._bad(10021, f"expected multipart/form-data with a boundary, got {content_type!r}")
        parts = _parse_multipart(content_type, request.body)
        if "metadata" not in parts:
            raise self._bad(10021, "the upload has no `metadata` part")
        try:
            metadata = json.loads(parts["metadata"][1])
        except ValueError:
            raise self._bad(10021, "the `metadata` part is not JSON") from None
        if not isinstance(metadata, dict):
            raise self._bad(10021, "the `metadata` part is not an object")
        main = metadata.get("main_module")
        if not isinstance(main, str) or main not in parts:
            raise self._bad(10021, f"main_module {main!r} names no uploaded part ({sorted(parts)})")
        if parts[main][0] != "application/javascript+module":
            raise self._bad(
                10021, f"the module part must be application/javascript+module, not {parts[main][0]!r}"
            )
        if "body_part" in metadata:
            raise self._bad(10021, "body_part is for service-worker scripts; this is a module Worker")
        date = metadata.get("compatibility_date")
        if not isinstance(date, str) or not _DATE_RE.fullmatch(date):
            raise self._bad(10021, f"compatibility_date must be YYYY-MM-DD, got {date!r}")
        source = parts[main][1].decode("utf-8", errors="replace")
        bindings = metadata.get("bindings", [])
        if not isinstance(bindings, list):
            raise self._bad(10021, "bindings must be a list")
        seen: set[str] = set()
        classes: list[str] = []
        for binding in bindings:
            if not isinstance(binding, dict) or not isinstance(binding.get("name"), str):
                raise self._bad(10021, f"a binding needs a type and a name: {binding!r}")
            kind, bname = binding.get("type"), binding["name"]
            if kind not in _BINDING_FIELDS:
                raise self._bad(10021, f"unknown binding type {kind!r}")
            missing = _BINDING_FIELDS[kind] - set(binding)
            if missing:
                raise self._bad(10021, f"binding {bname} ({kind}) lacks {sorted(missing)}")
            if bname in seen:
                raise self._bad(10021, f"binding name {bname} used twice")
            seen.add(bname)
            if kind == "kv_namespace" and binding["namespace_id"] not in self.namespaces:
                raise self._bad(10041, f"KV namespace {binding['namespace_id']!r} not found")
            if kind == "secret_text" and (not isinstance(binding["text"], str) or len(binding["text"]) < 32):
                raise self._bad(10021, f"secret {bname} is too short to be a real secret")
            if kind == "durable_object_namespace":
                if binding.get("script_name") not in (None, name):
                    raise self._bad(10021, "a durable object of another script is not expected here")
                if not re.search(rf"export\s+class\s+{re.escape(binding['class_name'])}\b", source):
                    raise self._bad(10021, f"the module does not export class {binding['class_name']}")
                classes.append(binding["class_name"])
        existing = self.scripts.get(name)
        tag = existing.migration_tag if existing else None
        migrations = metadata.get("migrations")
        created: set[str] = set(existing.classes) if existing else set()
        if migrations is not None:
            if not isinstance(migrations, dict) or not isinstance(migrations.get("new_tag"), str):
                raise self._bad(10021, "migrations need a new_tag")
            if migrations.get("old_tag") != tag:
                raise self._bad(10079, f"migration precondition failed: the script's tag is {tag!r}")
            steps = migrations.get("steps") or [migrations]
            for step in steps:
                for cls in step.get("new_sqlite_classes", []) + step.get("new_classes", []):
                    if cls in created:
                        raise self._bad(10074, f"class {cls} already exists")
                    created.add(cls)
            tag = migrations["new_tag"]
        for cls in classes:
            if cls not in created:
                raise self._bad(10061, f"durable object class {cls} has no migration creating it")
        modules = {k: v for k, v in parts.items() if k != "metadata"}
        if existing is None:
            self.scripts[name] = FakeScript(name, metadata, modules, tag, created)
        else:
            existing.metadata, existing.modules, existing.migration_tag = metadata, modules, tag
            existing.classes = created
            existing.uploads += 1
        return {"id": name, "etag": secrets.token_hex(8), "migration_tag": tag}

    def _enable_subdomain(self, request: RecordedRequest, name: str) -> dict[str, bool]:
        script = self.scripts.get(name)
        if script is None:
            raise _Refused(404, 10007, "This Worker does not exist on your account.")
        body = request.json
        if not isinstance(body, dict) or not isinstance(body.get("enabled"), bool):
            raise self._bad(10021, 'expected {"enabled": true|false}')
        script.subdomain_enabled = body["enabled"]
        return {"enabled": script.subdomain_enabled, "previews_enabled": True}

    def _get_subdomain(self, request: RecordedRequest) -> dict[str, str]:
        if self.subdomain is None:
            raise _Refused(404, 10007, "workers.api.error.not_found")
        return {"subdomain": self.subdomain}

    def _bad(self, code: int, message: str) -> _Refused:
        self.problems.append(message)
        return _Refused(400, code, message)


def _route(method: str, path: str) -> tuple[str, tuple[str, ...]] | None:
    for route_method, pattern, name in _ROUTES:
        match = pattern.match(path)
        if match and method == route_method:
            return name, match.groups()
    return None


def _failure(code: int, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None}


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts: dict[str, tuple[str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        parts[name] = (part.get_content_type(), payload if isinstance(payload, bytes) else b"")
    return parts
