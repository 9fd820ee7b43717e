"""The settings schema: defaults, validation messages that name the file and the key path, env overrides, and the
published JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from proxy.config.settings import (
    Account,
    Settings,
    SettingsError,
    effective_upstreams,
    json_schema,
    parse_settings,
    write_schema,
)

SOURCE = "/home/u/.config/headway/settings.json"
SCHEMA_FILE = Path(__file__).resolve().parents[3] / "docs" / "settings.schema.json"
REGENERATE = (
    'python -c "from proxy.config.settings import write_schema; from pathlib import Path; '
    "write_schema(Path('docs/settings.schema.json'))\""
)


def _problems(text: str) -> list[str]:
    with pytest.raises(SettingsError) as info:
        parse_settings(text, SOURCE)
    error = info.value
    assert error.source == SOURCE
    # The rendered error names the file on every line.
    assert all(line.startswith(f"{SOURCE}: ") for line in str(error).splitlines()), str(error)
    return error.problems


def _account(
    id: str, kind: str = "anthropic-api-key", label: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {"id": id, "kind": kind, "label": id.capitalize() if label is None else label, **extra}


# --------------------------------------------------------------------------- defaults


def test_defaults_are_safe_and_complete() -> None:
    s = Settings()
    assert (s.gateway.host, s.gateway.port, s.gateway.require_access_key) == ("127.0.0.1", 7337, True)
    assert s.gateway.allowed_hosts == []
    assert s.routing.mode == "main-first"
    assert s.routing.fallback_statuses == [401, 403, 429]
    assert s.routing.min_remaining_percent == 0.0
    assert s.upstreams.anthropic == "https://api.anthropic.com"
    assert s.upstreams.openai == "https://api.openai.com"
    assert s.accounts == []
    assert s.cache.anthropic_mode == "off"
    assert s.dumps.enabled is False
    assert s.logging.level == "INFO"
    assert s.secrets.backend == "system"


@pytest.mark.parametrize("text", ["", "  \n", "{}"])
def test_empty_file_means_defaults(text: str) -> None:
    assert parse_settings(text, SOURCE) == Settings()


def test_defaults_do_not_share_mutable_state() -> None:
    a, b = Settings(), Settings()
    a.accounts.append(Account(id="x", kind="openai-api-key", label="X"))
    a.routing.fallback_statuses.append(500)
    assert b.accounts == [] and b.routing.fallback_statuses == [401, 403, 429]


def test_to_json_round_trips_and_omits_nulls() -> None:
    s = parse_settings(
        json.dumps(
            {
                "gateway": {"port": 8123},
                "routing": {"mode": "sticky"},
                "accounts": [_account("work"), _account("p", "openai-api-key", min_remaining_percent=10)],
            }
        )
    )
    text = s.to_json()
    assert parse_settings(text) == s
    assert "null" not in text
    assert text.endswith("\n")


def test_account_lookup_by_id_or_unique_label() -> None:
    s = parse_settings(
        json.dumps(
            {"accounts": [_account("a", label="Same"), _account("b", label="Same"), _account("c", label="C")]}
        )
    )
    assert s.account("b").id == "b"  # type: ignore[union-attr]
    assert s.account("C").id == "c"  # type: ignore[union-attr]
    assert s.account("Same") is None  # ambiguous
    assert s.account("nope") is None


def test_family_follows_kind() -> None:
    assert Account(id="a", kind="anthropic-api-key", label="A").family == "anthropic"
    assert Account(id="o", kind="openai-api-key", label="O").family == "openai"
    assert Account(id="c", kind="chatgpt", label="C").family == "openai"


def test_log_level_is_case_insensitive() -> None:
    assert parse_settings('{"logging": {"level": "debug"}}').logging.level == "DEBUG"


# --------------------------------------------------------------------------- validation messages


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        # unknown keys, at every depth
        ({"gatway": {}}, "gatway: unknown setting"),
        ({"gateway": {"prot": 1}}, "gateway.prot: unknown setting"),
        ({"routing": {"moed": "sticky"}}, "routing.moed: unknown setting"),
        ({"accounts": [_account("a", api_key="sk-ant-x")]}, "accounts[0].api_key: unknown setting"),
        # gateway
        (
            {"gateway": {"port": 70000}},
            "gateway.port: Input should be less than or equal to 65535 (got 70000)",
        ),
        ({"gateway": {"port": "eighty"}}, "gateway.port: Input should be a valid integer"),
        (
            {"gateway": {"max_body_mb": 0}},
            "gateway.max_body_mb: Input should be greater than or equal to 1 (got 0)",
        ),
        (
            {"gateway": {"read_timeout_seconds": 0}},
            "gateway.read_timeout_seconds: Input should be greater than 0",
        ),
        (
            {"gateway": {"allowed_hosts": "example.com"}},
            "gateway.allowed_hosts: Input should be a valid list",
        ),
        ({"gateway": []}, "gateway: Input should be a valid dictionary"),
        # routing
        (
            {"routing": {"mode": "random"}},
            "routing.mode: Input should be 'main-first', 'fallback-first' or 'sticky' (got 'random')",
        ),
        (
            {"routing": {"fallback_statuses": [429, 200]}},
            "routing.fallback_statuses[1]: Input should be greater than or equal to 400 (got 200)",
        ),
        (
            {"routing": {"max_retries": 9}},
            "routing.max_retries: Input should be less than or equal to 5 (got 9)",
        ),
        (
            {"routing": {"min_remaining_percent": 101}},
            "routing.min_remaining_percent: Input should be less than or equal to 100 (got 101)",
        ),
        (
            {"routing": {"sticky_idle_minutes": 0}},
            "routing.sticky_idle_minutes: Input should be greater than 0 (got 0)",
        ),
        # upstreams
        (
            {"upstreams": {"anthropic": "ftp://example.com"}},
            "upstreams.anthropic: String should match pattern",
        ),
        ({"upstreams": {"openai": "api.openai.com"}}, "upstreams.openai: String should match pattern"),
        # accounts
        (
            {"accounts": [_account("a"), _account("a", "openai-api-key")]},
            "accounts[1].id: duplicate account id 'a'",
        ),
        (
            {"accounts": [_account("a"), _account("b", kind="antropic")]},
            "accounts[1].kind: Input should be 'anthropic-api-key', 'openai-api-key' or 'chatgpt' (got 'antropic')",
        ),
        ({"accounts": [_account("Bad Id!")]}, "accounts[0].id: String should match pattern"),
        ({"accounts": [{"id": "a", "kind": "openai-api-key"}]}, "accounts[0].label: Field required"),
        (
            {"accounts": [_account("a", label="")]},
            "accounts[0].label: String should have at least 1 character",
        ),
        (
            {"accounts": [_account("a", min_remaining_percent=-1)]},
            "accounts[0].min_remaining_percent: Input should be greater than or equal to 0 (got -1)",
        ),
        (
            {"accounts": [_account("a", base_url="localhost:9")]},
            "accounts[0].base_url: String should match pattern",
        ),
        ({"accounts": {"a": {}}}, "accounts: Input should be a valid list"),
        # the other sections
        (
            {"cache": {"anthropic_mode": "always"}},
            "cache.anthropic_mode: Input should be 'off', 'explicit', 'automatic' or 'hybrid' (got 'always')",
        ),
        ({"dumps": {"max_mb": 0}}, "dumps.max_mb: Input should be greater than or equal to 1 (got 0)"),
        ({"dumps": {"enabled": "sometimes"}}, "dumps.enabled: Input should be a valid boolean"),
        (
            {"logging": {"level": "verbose"}},
            "logging.level: Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR' (got 'verbose')",
        ),
        (
            {"secrets": {"backend": "plaintext"}},
            "secrets.backend: Input should be 'system' or 'file' (got 'plaintext')",
        ),
        ({"version": 2}, "version: Input should be 1 (got 2)"),
        (
            {"accounts": [_account("c", "chatgpt", killswitch={"5h": 150})]},
            "accounts[0].killswitch.5h: Input should be less than or equal to 100 (got 150)",
        ),
        (
            {"chatgpt": {"keep_warm_idle_cap_minutes": 0}},
            "chatgpt.keep_warm_idle_cap_minutes: Input should be greater than 0",
        ),
        (
            {"accounts": [_account("a", "anthropic-api-key", budget={"daily_usd": 0})]},
            "accounts[0].budget.daily_usd: Input should be greater than 0 (got 0)",
        ),
        (
            {"accounts": [_account("a", "anthropic-api-key", budget={})]},
            "accounts[0].budget: set daily_usd, monthly_usd or both",
        ),
        (
            {"accounts": [_account("c", "chatgpt", budget={"daily_usd": 5})]},
            "accounts[0]: a ChatGPT subscription is not billed per request",
        ),
        (
            {"models": {"routes": [{"match": "claude-[opus", "accounts": ["x"]}]}},
            "models.routes[0].match: invalid glob: '[' without its closing ']' (got 'claude-[opus')",
        ),
        (
            {"models": {"routes": [{"match": "", "accounts": ["x"]}]}},
            "models.routes[0].match: invalid glob: empty pattern",
        ),
        (
            {"models": {"routes": [{"match": "gpt-*", "accounts": []}]}},
            "models.routes[0].accounts: List should have at least 1 item",
        ),
        (
            {
                "accounts": [_account("a", "anthropic-api-key")],
                "models": {"routes": [{"match": "claude-*", "accounts": ["a", "nobody"]}]},
            },
            "models.routes[0].accounts[1]: no account with the label or id 'nobody'",
        ),
        (
            {
                "accounts": [
                    {**_account("a", "anthropic-api-key"), "label": "twin"},
                    {**_account("b", "anthropic-api-key"), "label": "twin"},
                ],
                "models": {"routes": [{"match": "claude-*", "accounts": ["twin"]}]},
            },
            "models.routes[0].accounts[0]: several accounts are labelled 'twin'; name one by its id",
        ),
        (
            {"models": {"aliases": {"fast": "quick", "quick": "claude-haiku-4-5"}}},
            "models.aliases.fast: aliases do not chain",
        ),
        ({"models": {"aliasses": {}}}, "models.aliasses: unknown setting"),
    ],
)
def test_each_problem_names_its_key_path(settings: dict[str, Any], expected: str) -> None:
    problems = _problems(json.dumps(settings))
    assert any(p.startswith(expected) for p in problems), problems


def test_pattern_errors_show_the_bad_value() -> None:
    problems = _problems('{"upstreams": {"openai": "api.openai.com"}}')
    assert problems[0].endswith("(got 'api.openai.com')"), problems


def test_unknown_setting_says_so_plainly() -> None:
    assert _problems('{"gateway": {"prot": 1}}') == ["gateway.prot: unknown setting (check the spelling)"]


def test_every_problem_is_reported_not_only_the_first() -> None:
    problems = _problems(
        json.dumps(
            {"gateway": {"port": -1}, "routing": {"mode": "x"}, "accounts": [_account("a", kind="nope")]}
        )
    )
    assert [p.split(":")[0] for p in problems] == ["gateway.port", "routing.mode", "accounts[0].kind"]


def test_bad_json_gives_line_and_column() -> None:
    text = '{\n  "gateway": {\n    "port": 1,\n  }\n}\n'
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].startswith("line 4 column 3: invalid JSON:"), problems


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ('{\n  "gateway": {\n    "port": 1, // mine\n  }\n}\n', "JSON has no comments: remove it"),
        ('{\n  /* the gateway */\n  "gateway": {}\n}\n', "JSON has no comments: remove it"),
        ('{"routing": {"fallback_statuses": [429, 503,]}}', "a comma before the closing bracket"),
        ('{\n  "gateway": {\n    "port": 1,\n  }\n}\n', "a comma before the closing bracket"),
        ("{'gateway': {}}", "JSON takes double quotes around names and strings"),
    ],
)
def test_the_usual_hand_edit_mistakes_are_named(text: str, hint: str) -> None:
    """json names the symptom only ("Expecting property name enclosed in double quotes" for all three)."""
    (problem,) = _problems(text)
    assert problem.startswith("line ") and "invalid JSON" in problem
    assert problem.endswith(f"({hint})") or f"({hint}:" in problem, problem


def test_other_bad_json_gets_no_guess() -> None:
    (problem,) = _problems('{"gateway": {"port": 1 "host": "x"}}')
    assert problem.endswith("Expecting ',' delimiter"), problem


def test_top_level_must_be_an_object() -> None:
    assert _problems("[1, 2]") == ["(top level): must be a JSON object"]


def test_assignment_is_validated_too() -> None:
    s = Settings()
    with pytest.raises(ValueError, match="mode"):
        s.routing.mode = "round-robin"  # type: ignore[assignment]


# --------------------------------------------------------------------------- env overrides


def test_effective_upstreams_without_env_are_the_settings() -> None:
    s = parse_settings(
        '{"upstreams": {"allow_insecure_http": true, "anthropic": "http://proxy.corp:8080/anthropic"}}'
    )
    up = effective_upstreams(s, {})
    assert up.anthropic == "http://proxy.corp:8080/anthropic"
    assert up.openai == "https://api.openai.com"


def test_env_overrides_win_and_lose_their_trailing_slash() -> None:
    s = parse_settings(
        '{"upstreams": {"allow_insecure_http": true, "anthropic": "http://proxy.corp:8080/anthropic"}}'
    )
    env = {
        "HEADWAY_ANTHROPIC_BASE_URL": "http://127.0.0.1:1111/",
        "HEADWAY_OPENAI_BASE_URL": "http://127.0.0.1:2222",
        "HEADWAY_CHATGPT_BASE_URL": "http://127.0.0.1:3333/",
        "HEADWAY_OPENAI_AUTH_URL": "http://127.0.0.1:4444",
    }
    up = effective_upstreams(s, env)
    assert (up.anthropic, up.openai, up.chatgpt, up.openai_auth) == (
        "http://127.0.0.1:1111",
        "http://127.0.0.1:2222",
        "http://127.0.0.1:3333",
        "http://127.0.0.1:4444",
    )
    # the settings object itself is untouched
    assert s.upstreams.anthropic == "http://proxy.corp:8080/anthropic"


def test_empty_env_override_is_ignored() -> None:
    assert effective_upstreams(Settings(), {"HEADWAY_OPENAI_BASE_URL": ""}).openai == "https://api.openai.com"


def test_invalid_env_override_names_the_variable() -> None:
    with pytest.raises(SettingsError) as info:
        effective_upstreams(Settings(), {"HEADWAY_ANTHROPIC_BASE_URL": "not a url"})
    assert "HEADWAY_ANTHROPIC_BASE_URL" in str(info.value)
    assert "'not a url'" in str(info.value)


# --------------------------------------------------------------------------- JSON Schema


def test_committed_schema_is_current() -> None:
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == json_schema(), (
        f"{SCHEMA_FILE} is out of date with proxy/config/settings.py; regenerate it from the repository root with:\n"
        f"  {REGENERATE}"
    )


def test_write_schema_writes_what_json_schema_returns(tmp_path: Path) -> None:
    target = tmp_path / "schema.json"
    write_schema(target)
    assert json.loads(target.read_text()) == json_schema()


def _validator() -> jsonschema.protocols.Validator:
    schema = json_schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    assert cls is jsonschema.Draft202012Validator
    return cls(schema)


def test_schema_accepts_the_defaults_and_a_full_example() -> None:
    validator = _validator()
    validator.validate(Settings().model_dump(mode="json"))
    validator.validate(json.loads(Settings().to_json()))
    full = parse_settings(
        json.dumps(
            {
                "gateway": {"port": 0, "allowed_hosts": ["box.lan"]},
                "routing": {"mode": "fallback-first", "min_remaining_percent": 5},
                "accounts": [
                    _account("work", min_remaining_percent=20, base_url="http://127.0.0.1:9"),
                    _account("me", "chatgpt", email="me@example.com", plan_type="pro"),
                ],
                "cache": {"anthropic_mode": "hybrid"},
                "secrets": {"backend": "file"},
            }
        )
    )
    validator.validate(full.model_dump(mode="json"))
    validator.validate(json.loads(full.to_json()))


@pytest.mark.parametrize(
    "bad",
    [
        {"gatway": {}},
        {"routing": {"mode": "random"}},
        {"accounts": [{"id": "a", "kind": "antropic", "label": "A"}]},
        {"gateway": {"port": 70000}},
        {"secrets": {"backend": "plaintext"}},
    ],
)
def test_schema_rejects_what_the_model_rejects(bad: dict[str, Any]) -> None:
    assert list(_validator().iter_errors(bad)), f"schema accepted {bad}"
    with pytest.raises(SettingsError):
        parse_settings(json.dumps(bad))


def test_schema_carries_descriptions_for_editors() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Headway settings"
    assert schema["additionalProperties"] is False
    assert "description" in schema["$defs"]["RoutingSettings"]["properties"]["mode"]


# --------------------------------------------------------------------------- plain http:// carries secrets


@pytest.mark.parametrize("field", ["anthropic", "openai", "chatgpt", "openai_auth"])
def test_plain_http_to_another_machine_is_refused(field: str) -> None:
    """Every request to an upstream carries a key or a token. Before, http://anything was accepted silently."""
    problems = _problems(json.dumps({"upstreams": {field: "http://llm-gateway.example:8080/v1"}}))
    assert problems == [
        f"upstreams.{field}: http:// to llm-gateway.example would send your keys, tokens and prompts unencrypted "
        "over the network; use https:// (plain http:// is for this machine only: 127.0.0.1, ::1, localhost); or "
        "set upstreams.allow_insecure_http if this network is yours to trust (got 'http://llm-gateway.example:8080/v1')"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://localhost:4000/v1",
        "http://[::1]:9",
        "https://corp.example",
    ],
)
def test_https_and_this_machine_are_fine(url: str) -> None:
    assert parse_settings(json.dumps({"upstreams": {"anthropic": url}})).upstreams.anthropic == url


def test_allow_insecure_http_is_the_users_explicit_choice_and_survives_the_environment() -> None:
    s = parse_settings('{"upstreams": {"allow_insecure_http": true, "openai": "http://llm-gateway.example"}}')
    env = {"HEADWAY_ANTHROPIC_BASE_URL": "http://proxy.corp:8080"}
    up = effective_upstreams(s, env)
    assert (up.openai, up.anthropic, up.allow_insecure_http) == (
        "http://llm-gateway.example",
        "http://proxy.corp:8080",
        True,
    )
    assert up.urls() == {
        "anthropic": "http://proxy.corp:8080",
        "openai": "http://llm-gateway.example",
        "chatgpt": "https://chatgpt.com",
        "openai_auth": "https://auth.openai.com",
    }


def test_plain_http_from_the_environment_is_refused_by_its_name() -> None:
    with pytest.raises(SettingsError) as info:
        effective_upstreams(Settings(), {"HEADWAY_CHATGPT_BASE_URL": "http://chatgpt.example/backend-api"})
    assert info.value.source == "environment"
    [problem] = info.value.problems
    assert problem.startswith("HEADWAY_CHATGPT_BASE_URL: http:// to chatgpt.example would send")


def test_an_accounts_own_base_url_follows_the_same_rule() -> None:
    account = {"id": "work", "kind": "openai-api-key", "label": "work", "base_url": "http://10.0.0.5:4000"}
    [problem] = _problems(json.dumps({"accounts": [account]}))
    assert problem.startswith("accounts[0].base_url: http:// to 10.0.0.5 would send its key and your prompts")
    allowed = parse_settings(json.dumps({"accounts": [account], "upstreams": {"allow_insecure_http": True}}))
    assert allowed.accounts[0].base_url == "http://10.0.0.5:4000"


def test_the_relay_worker_must_be_https_unless_it_runs_here() -> None:
    [problem] = _problems('{"relay": {"url": "http://headway-relay.example.workers.dev"}}')
    assert problem.startswith(
        "relay.url: http:// to headway-relay.example.workers.dev would send the relay's secret and your requests"
    )
    assert parse_settings('{"relay": {"url": "http://127.0.0.1:8787"}}').relay.url == "http://127.0.0.1:8787"
