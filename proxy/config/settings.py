"""The settings schema: typed, with defaults in code, published as JSON Schema.

The settings file is the one control plane: the CLI, the tray, the settings page and hand edits all change it, and
the engine applies whatever it says. It never holds a secret (those live in the keychain, keyed by account id).

Every validation error is reported with the file, the key path and what is wrong, e.g.
``settings.json: accounts[1].kind: Input should be 'anthropic-api-key', ... (got 'antropic')``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from proxy.config.sections import (
    ChatGPTSettings,
    DumpSettings,
    LoggingSettings,
    Model,
    ModelRoute,
    ModelSettings,
    NotificationSettings,
    RelaySettings,
    RequestLogSettings,
    SecretsSettings,
    SharedStateSettings,
    UpstreamWebSocketSettings,
    WebSettings,
    glob_problem,
    plain_http_problem,
)
from proxy.wire.upstream_url import normalize_base_url

__all__ = [
    "ACCOUNT_KINDS",
    "ENVIRONMENT",
    "Account",
    "AccountKind",
    "BudgetSettings",
    "CacheSettings",
    "ChatGPTSettings",
    "DumpSettings",
    "GatewaySettings",
    "LoggingSettings",
    "ModelRoute",
    "ModelSettings",
    "NotificationSettings",
    "RelaySettings",
    "RequestLogSettings",
    "RoutingSettings",
    "SecretsSettings",
    "Settings",
    "SettingsError",
    "SharedStateSettings",
    "UpstreamSettings",
    "UpstreamWebSocketSettings",
    "WebSettings",
    "effective_upstreams",
    "format_validation_error",
    "glob_problem",
    "json_schema",
    "parse_settings",
    "shared_state_url",
]

AccountKind = Literal["anthropic-api-key", "openai-api-key", "chatgpt"]
ACCOUNT_KINDS: tuple[str, ...] = ("anthropic-api-key", "openai-api-key", "chatgpt")
RoutingMode = Literal["main-first", "fallback-first", "sticky"]
CacheMode = Literal["off", "explicit", "automatic", "hybrid"]

_ACCOUNT_ID = r"^[a-z0-9][a-z0-9_-]{0,39}$"
_URL = r"^https?://[^\s/]+(/[^\s]*)?$"


class GatewaySettings(Model):
    """Where the gateway listens and who may use it."""

    host: str = Field(
        "127.0.0.1", description="Bind address. Anything but loopback always requires the access key."
    )
    port: int = Field(
        7337, ge=0, le=65535, description="TCP port agents point their base URL at (0 = any free port)."
    )
    require_access_key: bool = Field(
        True,
        description="Require the local access key from agents on loopback too (always required elsewhere).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Extra Host header names accepted besides localhost, 127.0.0.1 and [::1].",
    )
    max_body_mb: int = Field(
        64,
        ge=1,
        le=1024,
        description="Largest request body accepted, in MB (agents send 300 KB to a few MB); larger gets 413. "
        "Bodies are buffered whole so a fallback can replay them exactly.",
    )
    connect_timeout_seconds: float = Field(10.0, gt=0, le=300)
    read_timeout_seconds: float = Field(
        600.0,
        gt=0,
        le=3600,
        description="Longest silence from an upstream between two reads (stream chunks, or a non-streamed answer's "
        "headers and body) before the attempt fails.",
    )
    first_byte_timeout_seconds: float = Field(
        120.0,
        gt=0,
        le=3600,
        description="Longest wait for an upstream's response headers on a streamed request (headers come at once "
        "when streaming) before the next account is tried. Non-streamed requests get headers only when the answer "
        "is complete; read_timeout_seconds bounds those.",
    )
    request_deadline_seconds: float = Field(
        900.0,
        gt=0,
        le=7200,
        description="Longest an agent waits for its answer to start, across every account, retry and back-off; "
        "then it gets a 504. A started stream is bounded by read_timeout_seconds instead.",
    )
    paused: bool = Field(
        False, description="Answer every agent request with 503 until resumed (tray: Pause)."
    )
    allow_remote: bool = Field(
        False,
        description="Allow a host that is not loopback (e.g. 0.0.0.0) for a team deployment; TLS belongs to a "
        "reverse proxy in front. Without it such a host is refused (`headway serve --allow-remote` sets it for one "
        "run).",
    )


class RoutingSettings(Model):
    """How a request picks an account, and when it moves to the next one."""

    mode: RoutingMode = Field(
        "main-first",
        description="main-first: always start at the first account. fallback-first: start at the second and keep "
        "the first as the last resort. sticky: a session stays on the account that served it while it is usable.",
    )
    fallback_statuses: list[Annotated[int, Field(ge=400, le=599)]] = Field(
        default_factory=lambda: [401, 403, 429],
        description="Upstream statuses that move a request to the next account.",
    )
    default_cooldown_seconds: float = Field(
        60.0,
        ge=0,
        le=86400,
        description="How long a rate-limited account is skipped when the upstream names no reset.",
    )
    max_retries: int = Field(
        2, ge=0, le=5, description="Retries on the same account for 5xx / 529 before moving on."
    )
    retry_base_delay_seconds: float = Field(0.5, ge=0, le=30)
    max_retry_wait_seconds: float = Field(
        20.0, ge=0, le=300, description="A retry-after longer than this moves on instead of waiting."
    )
    min_remaining_percent: float = Field(
        0.0, ge=0, le=100, description="Skip an account while any quota window has less than this share left."
    )
    sticky_idle_minutes: float = Field(
        60.0, gt=0, le=1440, description="Forget a session's account after this idle time."
    )


#: How a plain http:// upstream refused by :func:`~proxy.config.sections.plain_http_problem` can still be allowed
_TRUSTED_NETWORK = "; or set upstreams.allow_insecure_http if this network is yours to trust"


class UpstreamSettings(Model):
    """Provider base URLs; override for tests and corporate proxies (env HEADWAY_*_BASE_URL wins).

    Every request to them carries a key or a token, so plain ``http://`` is refused unless it stays on this machine
    (:func:`~proxy.config.sections.plain_http_problem`) or ``allow_insecure_http`` says the network is trusted."""

    allow_insecure_http: bool = Field(
        False,
        description="Allow http:// upstream URLs to other machines: your keys, tokens and prompts then cross the "
        "network unencrypted. http:// to this machine (127.0.0.1, ::1, localhost) is always allowed.",
    )
    anthropic: Annotated[str, Field(pattern=_URL)] = "https://api.anthropic.com"
    openai: Annotated[str, Field(pattern=_URL)] = "https://api.openai.com"
    chatgpt: Annotated[str, Field(pattern=_URL)] = "https://chatgpt.com"
    openai_auth: Annotated[str, Field(pattern=_URL)] = "https://auth.openai.com"

    def urls(self) -> dict[str, str]:
        """Each upstream's name and base URL."""
        return {
            "anthropic": self.anthropic,
            "openai": self.openai,
            "chatgpt": self.chatgpt,
            "openai_auth": self.openai_auth,
        }

    @field_validator("anthropic", "openai", "chatgpt", "openai_auth")
    @classmethod
    def _encrypted(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("allow_insecure_http"):
            problem = plain_http_problem(value, what="your keys, tokens and prompts")
            if problem is not None:
                raise ValueError(problem + _TRUSTED_NETWORK)
        return value


class BudgetSettings(Model):
    """Spending caps of an API-key account, in estimated USD per local calendar day and month."""

    daily_usd: float | None = Field(
        None, gt=0, le=1_000_000, description="Skip the account once today's estimated cost reaches this."
    )
    monthly_usd: float | None = Field(
        None,
        gt=0,
        le=10_000_000,
        description="Skip the account once this month's estimated cost reaches this.",
    )

    @model_validator(mode="after")
    def _some_cap(self) -> BudgetSettings:
        if self.daily_usd is None and self.monthly_usd is None:
            raise ValueError("set daily_usd, monthly_usd or both (remove budget for no cap)")
        return self


class Account(Model):
    """One upstream account. Its secret lives in the keychain under its id."""

    id: Annotated[str, Field(pattern=_ACCOUNT_ID, description="Stable id; the keychain entry's name.")]
    kind: AccountKind
    label: Annotated[str, Field(min_length=1, max_length=60)]
    enabled: bool = True
    min_remaining_percent: float | None = Field(
        None, ge=0, le=100, description="Overrides routing.min_remaining_percent for this account."
    )
    base_url: Annotated[str, Field(pattern=_URL)] | None = Field(
        None, description="Overrides the provider's base URL for this account only."
    )
    killswitch: (
        dict[Annotated[str, Field(min_length=1, max_length=40)], Annotated[float, Field(ge=0, le=100)]] | None
    ) = Field(
        None,
        description='Hard block while a quota window has less than this share left, e.g. {"5h": 10, "weekly": 5}. '
        "Window names: 5h, weekly (ChatGPT); requests, tokens, input-tokens, output-tokens (API keys).",
    )
    chatgpt_account_id: str | None = Field(
        None, description="ChatGPT accounts: the account's identity at OpenAI."
    )
    plan_type: str | None = None
    email: str | None = None
    key_updated_at: float | None = Field(
        None,
        description="When the API key was last replaced (Unix time; set by `headway accounts set-key` and the page). "
        "A running Headway reads the key again when this changes.",
    )
    budget: BudgetSettings | None = Field(
        None,
        description='API-key accounts: spending caps, e.g. {"daily_usd": 5, "monthly_usd": 50}. Reached, the '
        "account is skipped like a blocked one until local midnight (the month's first day).",
    )

    @model_validator(mode="after")
    def _budget_needs_metering(self) -> Account:
        if self.budget is not None and self.kind == "chatgpt":
            raise ValueError(
                "a ChatGPT subscription is not billed per request: remove its budget (budgets are for API keys)"
            )
        return self

    @property
    def family(self) -> Literal["anthropic", "openai"]:
        return "anthropic" if self.kind == "anthropic-api-key" else "openai"


class CacheSettings(Model):
    anthropic_mode: CacheMode = Field(
        "off", description="Anthropic prompt-cache mode; hybrid is recommended."
    )


class Settings(Model):
    """Everything the user can set. Account order is routing order within each family."""

    version: Literal[1] = 1
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    upstreams: UpstreamSettings = Field(default_factory=UpstreamSettings)
    accounts: list[Account] = Field(default_factory=list)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    chatgpt: ChatGPTSettings = Field(default_factory=ChatGPTSettings)
    upstream_websocket: UpstreamWebSocketSettings = Field(default_factory=UpstreamWebSocketSettings)
    dumps: DumpSettings = Field(default_factory=DumpSettings)
    request_log: RequestLogSettings = Field(default_factory=RequestLogSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    relay: RelaySettings = Field(default_factory=RelaySettings)
    web: WebSettings = Field(default_factory=WebSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    shared_state: SharedStateSettings = Field(default_factory=SharedStateSettings)

    @model_validator(mode="after")
    def _account_urls_encrypted(self) -> Settings:
        if self.upstreams.allow_insecure_http:
            return self
        for index, account in enumerate(self.accounts):
            problem = account.base_url and plain_http_problem(
                account.base_url, what="its key and your prompts"
            )
            if problem:
                raise ValueError(f"accounts[{index}].base_url: {problem}{_TRUSTED_NETWORK}")
        return self

    @model_validator(mode="after")
    def _unique_ids(self) -> Settings:
        seen: set[str] = set()
        for index, account in enumerate(self.accounts):
            if account.id in seen:
                raise ValueError(f"accounts[{index}].id: duplicate account id {account.id!r}")
            seen.add(account.id)
        for r, route in enumerate(self.models.routes):
            for a, ref in enumerate(route.accounts):
                if self.account(ref) is None:
                    where = f"models.routes[{r}].accounts[{a}]"
                    if sum(x.label == ref for x in self.accounts) > 1:
                        raise ValueError(
                            f"{where}: several accounts are labelled {ref!r}; name one by its id"
                        )
                    known = ", ".join(repr(x.label) for x in self.accounts) or "none"
                    raise ValueError(f"{where}: no account with the label or id {ref!r} (accounts: {known})")
        for alias, target in self.models.aliases.items():
            if target in self.models.aliases:
                raise ValueError(f"models.aliases.{alias}: aliases do not chain ({target!r} is an alias too)")
        return self

    def account(self, ref: str) -> Account | None:
        """Find an account by id, or by label when the label is unique."""
        for account in self.accounts:
            if account.id == ref:
                return account
        matches = [a for a in self.accounts if a.label == ref]
        return matches[0] if len(matches) == 1 else None

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2) + "\n"


#: The source of a SettingsError about a HEADWAY_* variable rather than the settings file.
ENVIRONMENT = "environment"


class SettingsError(Exception):
    """The settings file cannot be used; ``problems`` lists each as 'path: message'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        # pydantic adds synthetic parts for unions and tagged values; they mean nothing to a user.
    return out or "(top level)"


def format_validation_error(exc: ValidationError) -> list[str]:
    problems: list[str] = []
    for err in exc.errors():
        where = _loc(
            tuple(
                p
                for p in err["loc"]
                if not (isinstance(p, str) and p.startswith(("function-", "constrained-")))
            )
        )
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown setting (check the spelling)"
        elif "input" in err and err["type"] not in ("missing",) and not isinstance(err["input"], dict | list):
            message += f" (got {err['input']!r})"
        if message.startswith(("accounts[", "models.")):
            problems.append(message)
        else:
            problems.append(f"{where}: {message}")
    return problems


def _json_hint(exc: json.JSONDecodeError) -> str:
    """What a hand edit most often got wrong, said plainly: json names only the symptom ("Expecting property name
    enclosed in double quotes" for a comment, a trailing comma and a single-quoted name alike)."""
    rest = exc.doc[exc.pos :]
    if rest.startswith(("//", "/*", "#")):
        return " (JSON has no comments: remove it)"
    if rest[:1] in ("}", "]") and exc.doc[: exc.pos].rstrip().endswith(","):
        return " (a comma before the closing bracket: JSON allows none there)"
    if rest.startswith("'"):
        return " (JSON takes double quotes around names and strings)"
    return ""


def parse_settings(text: str, source: str = "settings.json") -> Settings:
    """Parse and validate settings text; raise SettingsError naming the key path of each problem."""
    if not text.strip():
        return Settings()
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(
            source, [f"line {exc.lineno} column {exc.colno}: invalid JSON: {exc.msg}{_json_hint(exc)}"]
        ) from exc
    if not isinstance(raw, dict):
        raise SettingsError(source, ["(top level): must be a JSON object"])
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(source, format_validation_error(exc)) from exc


def json_schema() -> dict[str, Any]:
    schema = Settings.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Headway settings"
    return schema


def effective_upstreams(settings: Settings, environ: Mapping[str, str]) -> UpstreamSettings:
    """The upstream URLs in force, normalised: the settings file, overridden by HEADWAY_*_BASE_URL / HEADWAY_OPENAI_AUTH_URL."""
    values = settings.upstreams.model_dump()
    variables = {
        "anthropic": "HEADWAY_ANTHROPIC_BASE_URL",
        "openai": "HEADWAY_OPENAI_BASE_URL",
        "chatgpt": "HEADWAY_CHATGPT_BASE_URL",
        "openai_auth": "HEADWAY_OPENAI_AUTH_URL",
    }
    for key, env in variables.items():
        if environ.get(env):
            values[key] = environ[env]
    try:
        upstreams = UpstreamSettings.model_validate(values)
    except ValidationError as exc:
        # Only an override can be invalid (the settings were validated): name the variable, not a pydantic path.
        problems = []
        for problem in format_validation_error(exc):
            key, _, message = problem.partition(": ")
            problems.append(f"{variables.get(key, key)}: {message}")
        raise SettingsError(ENVIRONMENT, problems) from exc
    # One normal form for every base (no trailing slash, no /v1 or /backend-api): see proxy.wire.upstream_url.
    return UpstreamSettings(
        allow_insecure_http=upstreams.allow_insecure_http,
        anthropic=normalize_base_url(upstreams.anthropic, "anthropic"),
        openai=normalize_base_url(upstreams.openai, "openai"),
        chatgpt=normalize_base_url(upstreams.chatgpt, "chatgpt"),
        openai_auth=normalize_base_url(upstreams.openai_auth, "openai_auth"),
    )


def write_schema(path: Path) -> None:
    path.write_text(json.dumps(json_schema(), indent=2) + "\n")


SHARED_STATE_ENV = "HEADWAY_SHARED_STATE_URL"


def shared_state_url(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """The Redis URL team mode uses: HEADWAY_SHARED_STATE_URL, else ``shared_state.url``; None for a lone gateway."""
    value = environ.get(SHARED_STATE_ENV, "").strip()
    if not value:
        return settings.shared_state.url
    try:
        return SharedStateSettings(url=value).url
    except ValidationError as exc:
        raise SettingsError(
            "environment", [f"{SHARED_STATE_ENV}: not a Redis URL (redis://host:port/db, rediss://, unix://)"]
        ) from exc
