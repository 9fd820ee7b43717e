"""The settings sections of Headway's features and surfaces (ChatGPT, dumps, logging, secrets, relay, notifications,
models, the page, shared state); :mod:`proxy.config.settings` assembles them into :class:`Settings`."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ChatGPTSettings",
    "DumpSettings",
    "LogLevel",
    "LoggingSettings",
    "Model",
    "ModelRoute",
    "ModelSettings",
    "NotificationSettings",
    "RelaySettings",
    "RequestLogSettings",
    "SecretsSettings",
    "SharedStateSettings",
    "UpstreamWebSocketSettings",
    "WebSettings",
    "glob_problem",
    "plain_http_elsewhere",
    "plain_http_problem",
]

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
_URL = r"^https?://[^\s/]+(/[^\s]*)?$"


def plain_http_elsewhere(url: str) -> bool:
    """Whether ``url`` is plain ``http://`` to another machine: not ``https://``, not a loopback address or
    ``localhost``."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name
        return True


def plain_http_problem(url: str, *, what: str) -> str | None:
    """Why ``url`` must not be used for ``what`` (the secrets its requests carry), when it is
    :func:`plain_http_elsewhere`; else None."""
    if not plain_http_elsewhere(url):
        return None
    host = urlsplit(url.strip()).hostname or url
    return (
        f"http:// to {host.lower()} would send {what} unencrypted over the network; use https:// (plain http:// "
        "is for this machine only: 127.0.0.1, ::1, localhost)"
    )


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ChatGPTSettings(Model):
    """ChatGPT subscription accounts on the Codex backend."""

    stabilize_cache: bool = Field(
        True,
        description="Add a native web_search tool to tool-bearing requests to keep them on the stable cache path.",
    )
    keep_warm: bool = Field(
        False, description="Before the ~5-minute eviction, replay an idle session's latest request."
    )
    keep_warm_subagents: bool = Field(
        False, description="Also keep subagent sessions warm (shorter idle cap)."
    )
    keep_warm_idle_cap_minutes: float = Field(
        60.0, gt=0, le=240, description="Stop keeping a session warm after this idle time."
    )
    usage_poll_minutes: float = Field(
        5.0, ge=1, le=120, description="How often each account's usage is polled while idle."
    )


class UpstreamWebSocketSettings(Model):
    """One upstream WebSocket per agent session for Responses requests: each turn sends only its new input."""

    chatgpt: bool = Field(
        True,
        description="ChatGPT accounts: hold a WebSocket to the Codex backend per agent session (HTTP if refused).",
    )
    openai: bool = Field(
        True,
        description="OpenAI API keys: the same with OpenAI's Responses WebSocket mode (HTTP if refused).",
    )
    idle_minutes: float = Field(
        15.0, gt=0, le=240, description="Close a session's upstream WebSocket after this long without a turn."
    )


class DumpSettings(Model):
    enabled: bool = Field(
        False, description="Write each upstream request body and its metadata to the dumps folder."
    )
    max_mb: int = Field(200, ge=1, le=100_000, description="Oldest dumps are removed beyond this size.")
    include_sse: bool = Field(True, description="Also keep each response's SSE transcript.")


class RequestLogSettings(Model):
    keep_days: int = Field(
        365,
        ge=32,
        le=36_500,
        description="Keep each request in the request log (usage, cost, the page's history) this many days; older "
        "ones are deleted once a day. At least 32, so that a month's budget is always counted from the log.",
    )


class LoggingSettings(Model):
    level: LogLevel = "INFO"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        # Only normalise the case of a known level, so that an error shows the value as the user wrote it.
        if isinstance(value, str) and value.upper() in get_args(LogLevel):
            return value.upper()
        return value


class SecretsSettings(Model):
    backend: Literal["system", "file"] = Field(
        "system",
        description="system: the OS keychain (required by default). file: an owner-only plain file, for headless "
        "servers without a keychain — NOT encrypted.",
    )


class RelaySettings(Model):
    """The optional relay through the user's own Cloudflare Worker (`headway relay setup`); its secret is in the keychain."""

    enabled: bool = Field(
        False, description="Send requests that carry an agent session id through the relay Worker."
    )
    url: Annotated[str, Field(pattern=_URL)] | None = Field(
        None, description="The Worker's URL (set by `headway relay setup`)."
    )
    transport: Literal["http", "websocket"] = Field(
        "http",
        description="http: one POST per request. websocket: one connection per agent session, its requests queued.",
    )
    fallback_to_direct: bool = Field(
        True,
        description="When the relay fails before the response starts, send the request directly instead.",
    )
    max_sessions: int = Field(
        32, ge=1, le=1000, description="Agent sessions whose last body is kept for patches."
    )
    max_memory_mb: int = Field(
        128, ge=8, le=4096, description="Memory for those bodies; least recently used go first."
    )
    ttl_minutes: float = Field(
        1440.0,
        gt=0,
        le=10080,
        description="Forget an idle session's body after this long (the Worker keeps it relay.ttl_hours).",
    )
    ttl_hours: float = Field(
        24.0,
        ge=0.05,
        le=720,
        description="How long the Worker keeps a session's last body after its last use; applied by "
        "`headway relay setup`.",
    )
    upstreams: list[Annotated[str, Field(pattern=_URL)]] | None = Field(
        None,
        description="The provider origins the Worker was deployed to call (set by `headway relay setup`); requests "
        "to any other upstream go direct until setup runs again.",
    )
    min_body_bytes: int = Field(
        8192,
        ge=0,
        le=64 * 1024 * 1024,
        description="Smaller bodies go direct: the extra hop would cost more than it saves.",
    )
    worker_name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = Field(
        "headway-relay", description="The Worker's name in the Cloudflare account."
    )
    account_id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] | None = Field(
        None, description="The Cloudflare account the Worker runs in (not a secret)."
    )
    storage: Literal["durable_object", "kv"] = Field(
        "durable_object", description="Where the Worker keeps each session's last body (set by setup)."
    )

    @field_validator("url")
    @classmethod
    def _encrypted(cls, value: str | None) -> str | None:
        problem = (
            None if value is None else plain_http_problem(value, what="the relay's secret and your requests")
        )
        if problem is not None:
            raise ValueError(problem)
        return value


class NotificationSettings(Model):
    """Which desktop notifications the tray shows (each at most once per change of an account's state)."""

    exhausted: bool = Field(
        True,
        description="When every account is out of quota (with the reset time), or one runs out or falls back.",
    )
    needs_login: bool = Field(True, description="When an account needs login or its key is rejected.")
    recovered: bool = Field(
        True, description="When a blocked account, or the whole pool, takes requests again."
    )
    low_quota: bool = Field(True, description="When a subscription window crosses 80 % or 95 % used.")


def glob_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable model glob (``*``, ``?``, ``[abc]``), or None."""
    if not pattern.strip():
        return "empty pattern"
    if any(c.isspace() or not c.isprintable() for c in pattern):
        return "a model glob has no spaces or control characters"
    depth = 0
    for c in pattern:
        if c == "[":
            if depth:
                return "'[' inside a [...] set"
            depth = 1
        elif c == "]" and depth:
            depth = 0
    if depth:
        return "'[' without its closing ']'"
    return None


class ModelRoute(Model):
    """Which accounts may serve the models a glob matches, in fallback order."""

    match: str = Field(
        description="A glob over model names (fnmatch: *, ?, [abc]), e.g. 'claude-opus-*'; matched against the "
        "model after alias resolution and the name the agent sent."
    )
    accounts: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, description="Account labels (or ids) allowed to serve the match, in this order."
    )

    @field_validator("match")
    @classmethod
    def _glob(cls, value: str) -> str:
        problem = glob_problem(value)
        if problem is not None:
            raise ValueError(f"invalid glob: {problem}")
        return value


class ModelSettings(Model):
    """Model aliases and routes."""

    aliases: dict[
        Annotated[str, Field(min_length=1, max_length=200)], Annotated[str, Field(min_length=1)]
    ] = Field(
        default_factory=dict,
        description='A name an agent may send mapped to the real model, e.g. {"fast": "claude-haiku-4-5"}; '
        "the upstream receives the real model and /v1/models lists the aliases.",
    )
    routes: list[ModelRoute] = Field(
        default_factory=list,
        description="The first route whose glob matches a request's model limits which accounts serve it, in the "
        "route's order (fallback within the route); a model no route matches uses every account.",
    )


class WebSettings(Model):
    """The settings page (always on 127.0.0.1)."""

    port: int = Field(
        7338,
        ge=0,
        le=65535,
        description="Port of the settings page, so its address stays the same across restarts; when it is taken, a "
        "free port is used and the log says so (0 = any free port).",
    )


class SharedStateSettings(Model):
    """Team mode: replicas share health, quota, sticky pins, member keys and spend through Redis."""

    url: str | None = Field(
        None,
        pattern=r"^(redis|rediss|unix)://\S+$",
        description="Redis URL (redis://host:6379/0) shared by every replica; the environment variable "
        "HEADWAY_SHARED_STATE_URL overrides it. Unset: all state is local (one user, one machine). Read at start: "
        "restart Headway after changing it.",
    )
    namespace: str = Field(
        "headway",
        pattern=r"^[A-Za-z0-9_.-]{1,40}$",
        description="Prefix of every Redis key and channel, so several deployments can share one Redis.",
    )
