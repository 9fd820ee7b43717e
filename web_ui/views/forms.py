"""The settings controls, derived from the settings schema itself — a setting added to ``proxy/config/settings.py`` shows up
on the page without touching the page.

Every section model of :class:`~proxy.config.settings.Settings` becomes a group of controls (bool → switch, Literal →
select, number → number input with the schema's bounds, list of ints/strings → comma-separated text), except the
sections and fields in :data:`HIDDEN`: where the gateway listens, which hosts it trusts, where upstream traffic goes
and where secrets are kept are not changed from a web page.

:func:`apply_changes` is the only way the page edits these settings; it runs inside ``SettingsStore.update``.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from proxy.config.settings import Settings, format_validation_error

__all__ = [
    "HIDDEN",
    "READ_ONLY",
    "FieldSpec",
    "GroupSpec",
    "apply_changes",
    "current_values",
    "settings_groups",
]

Control = Literal["switch", "select", "number", "text", "int-list", "text-list"]

# Not on the page at all: the schema version, the accounts (they have controls of their own), where upstream
# traffic goes and where secrets are kept; the relay's upstream list is shown in the Relay section's status.
HIDDEN = frozenset({"version", "accounts", "upstreams", "secrets", "relay.upstreams"})

# Shown but never changed from a web page: the listen addresses and the Host allowlist (the gateway's security
# perimeter; the page's own port), and where the relay sends traffic (set by `headway relay setup`).
READ_ONLY = frozenset(
    {
        "gateway.host",
        "gateway.port",
        "gateway.allowed_hosts",
        "web.port",
        "relay.url",
        "relay.worker_name",
        "relay.account_id",
        "relay.storage",
    }
)

# Which part of the page a section belongs to; a section not named here gets a part of its own.
SECTION_PAGE: dict[str, str] = {
    "routing": "routing",
    "gateway": "routing",
    "web": "routing",
    "cache": "caching",
    "chatgpt": "caching",
    "dumps": "debugging",
    "logging": "debugging",
    "request_log": "debugging",
    "upstream_websocket": "routing",
}

GROUP_TITLES: dict[str, str] = {
    "gateway": "Gateway",
    "routing": "Routing and fallback",
    "cache": "Anthropic prompt cache",
    "chatgpt": "ChatGPT accounts",
    "dumps": "Request dumps",
    "logging": "Log",
    "request_log": "Request log",
    "relay": "Relay settings",
    "web": "Settings page",
    "upstream_websocket": "Upstream WebSocket (Responses API)",
}

FIELD_LABELS: dict[str, str] = {
    "gateway.paused": "Pause all agent requests",
    "gateway.require_access_key": "Require the local access key on loopback",
    "gateway.max_body_mb": "Largest request body (MB)",
    "gateway.host": "Listen address",
    "web.port": "Settings page port",
    "gateway.allowed_hosts": "Extra allowed Host names",
    "relay.enabled": "Use the relay",
    "relay.url": "Worker URL",
    "relay.account_id": "Cloudflare account ID",
    "relay.ttl_hours": "The Worker keeps a session's body (hours; applied by setup)",
    "routing.mode": "Routing mode",
    "routing.fallback_statuses": "Fall back on these upstream statuses",
    "routing.min_remaining_percent": "Skip an account below this quota left (%)",
    "routing.max_retries": "Retries on the same account (5xx)",
    "cache.anthropic_mode": "Cache mode",
    "chatgpt.stabilize_cache": "Stabilize the prompt cache",
    "chatgpt.keep_warm": "Keep sessions warm",
    "chatgpt.keep_warm_subagents": "Keep subagent sessions warm too",
    "dumps.enabled": "Write request dumps",
    "dumps.max_mb": "Keep at most (MB)",
    "dumps.include_sse": "Include response transcripts (SSE)",
    "logging.level": "Log level",
    "request_log.keep_days": "Keep requests for (days)",
}

_UNITS = (("_seconds", "seconds"), ("_minutes", "minutes"), ("_mb", "MB"), ("_percent", "%"))


@dataclass(frozen=True)
class FieldSpec:
    path: str
    label: str
    control: Control
    help: str | None = None
    options: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: str = "any"
    nullable: bool = False
    readonly: bool = False

    @property
    def dom_id(self) -> str:
        return "setting-" + self.path.replace(".", "-").replace("_", "-")


@dataclass(frozen=True)
class GroupSpec:
    key: str
    title: str
    page: str
    description: str | None = None
    fields: tuple[FieldSpec, ...] = field(default_factory=tuple)


_ACRONYMS = {"url": "URL", "ttl": "TTL", "id": "ID", "sse": "SSE", "api": "API", "http": "HTTP", "mb": "MB"}


def _words(name: str) -> str:
    words = [_ACRONYMS.get(w, w) for w in name.split("_") if w]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _label(path: str, name: str) -> str:
    if path in FIELD_LABELS:
        return FIELD_LABELS[path]
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return f"{_words(name.removesuffix(suffix))} ({unit})"
    return _words(name)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = float(item.ge)  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Gt):
            low = float(item.gt)  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Le):
            high = float(item.le)  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Lt):
            high = float(item.lt)  # type: ignore[arg-type]
    return low, high


def _field_spec(path: str, name: str, info: FieldInfo) -> FieldSpec | None:
    spec = _control_spec(path, name, info)
    if spec is not None and path in READ_ONLY:
        return dataclasses.replace(spec, readonly=True)
    return spec


def _control_spec(path: str, name: str, info: FieldInfo) -> FieldSpec | None:
    annotation, nullable = _unwrap_optional(info.annotation)
    annotation = _strip_annotated(annotation)
    label = _label(path, name)
    help_text = info.description
    if annotation is bool:
        return FieldSpec(path, label, "switch", help_text, nullable=nullable)
    if get_origin(annotation) is Literal:
        return FieldSpec(
            path,
            label,
            "select",
            help_text,
            options=tuple(str(a) for a in get_args(annotation)),
            nullable=nullable,
        )
    if annotation in (int, float):
        low, high = _bounds(info)
        step = "1" if annotation is int else "any"
        return FieldSpec(
            path, label, "number", help_text, minimum=low, maximum=high, step=step, nullable=nullable
        )
    if annotation is str:
        return FieldSpec(path, label, "text", help_text, nullable=nullable)
    if get_origin(annotation) is list:
        (item,) = get_args(annotation) or (Any,)
        item = _strip_annotated(item)
        if item is int:
            return FieldSpec(path, label, "int-list", help_text, nullable=nullable)
        if item is str:
            return FieldSpec(path, label, "text-list", help_text, nullable=nullable)
    return None  # dicts and other shapes have no generic control


def _model_fields(model: type[BaseModel], prefix: str) -> list[FieldSpec]:
    specs: list[FieldSpec] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}"
        if path in HIDDEN:
            continue
        inner, _ = _unwrap_optional(info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            specs.extend(_model_fields(inner, path))
            continue
        spec = _field_spec(path, name, info)
        if spec is not None:
            specs.append(spec)
    # The gateway's pause switch is the page's big red button: first in its group.
    specs.sort(key=lambda s: 0 if s.path == "gateway.paused" else 1)
    return specs


@functools.cache
def settings_groups() -> tuple[GroupSpec, ...]:
    """Every section of the settings as a group of controls, in page order (the schema is fixed at runtime)."""
    groups: list[GroupSpec] = []
    for name, info in Settings.model_fields.items():
        if name in HIDDEN:
            continue
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        fields = tuple(_model_fields(model, name))
        if not fields:
            continue
        doc = (model.__doc__ or "").strip().splitlines()
        groups.append(
            GroupSpec(
                key=name,
                title=GROUP_TITLES.get(name, name.replace("_", " ").capitalize()),
                page=SECTION_PAGE.get(name, name),
                description=doc[0] if doc and name not in ("gateway",) else None,
                fields=fields,
            )
        )
    order = list(SECTION_PAGE)
    groups.sort(key=lambda g: order.index(g.key) if g.key in order else len(order))
    return tuple(groups)


def editable_fields() -> dict[str, FieldSpec]:
    return {spec.path: spec for group in settings_groups() for spec in group.fields if not spec.readonly}


def shown_fields() -> dict[str, FieldSpec]:
    return {spec.path: spec for group in settings_groups() for spec in group.fields}


def _get(settings: BaseModel, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


def current_values(settings: Settings) -> dict[str, Any]:
    """Every setting the page shows, keyed by its dotted path (JSON-ready)."""
    out: dict[str, Any] = {}
    for path in shown_fields():
        value = _get(settings, path)
        out[path] = list(value) if isinstance(value, list | tuple) else value
    return out


def _coerce(spec: FieldSpec, value: Any) -> Any:
    if value is None or (spec.nullable and value == ""):
        return None
    if spec.control == "int-list":
        items = value if isinstance(value, list) else [p for p in str(value).replace(";", ",").split(",")]
        out: list[Any] = []
        for item in items:
            text = str(item).strip()
            if not text:
                continue
            try:
                out.append(int(text))
            except ValueError:
                out.append(text)  # let validation name it
        return out
    if spec.control == "text-list":
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(i).strip() for i in items if str(i).strip()]
    if spec.control == "number" and isinstance(value, str):
        try:
            return float(value) if spec.step == "any" else int(value)
        except ValueError:
            return value
    return value


class ChangeError(Exception):
    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))


def apply_changes(settings: Settings, changes: dict[str, Any]) -> None:
    """Set each ``path: value`` on ``settings`` (in place), validating each; raise ChangeError naming every bad one."""
    specs = editable_fields()
    problems: dict[str, str] = {}
    for path, raw in changes.items():
        spec = specs.get(path)
        if spec is None:
            problems[path] = "not a setting this page can change"
            continue
        if spec.control == "number" and isinstance(raw, bool):
            problems[path] = "a number, not true or false"  # JSON true would pass validation as 1
            continue
        parent_path, _, name = path.rpartition(".")
        parent = _get(settings, parent_path)
        try:
            setattr(parent, name, _coerce(spec, raw))
        except ValidationError as exc:
            messages = [p.split(": ", 1)[-1] for p in format_validation_error(exc)]
            problems[path] = "; ".join(messages)
    if problems:
        raise ChangeError(problems)
