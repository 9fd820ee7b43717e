from __future__ import annotations

from typing import Any

import pytest

from proxy.providers.chatgpt.models import (
    CodexModel,
    fallback_models,
    parse_models_response,
    to_openai_models_list,
)


def backend_payload() -> dict[str, Any]:
    """Shaped like the backend's ``GET /models?client_version=…`` answer (trimmed to the fields that matter)."""

    def card(
        slug: str, priority: Any, visibility: str = "list", supported_in_api: bool = True
    ) -> dict[str, Any]:
        return {
            "slug": slug,
            "display_name": slug.upper(),
            "description": f"{slug} model",
            "default_reasoning_level": "medium",
            "supported_reasoning_levels": [{"effort": "low"}, {"effort": "medium"}, {"effort": "high"}],
            "shell_type": "shell_command",
            "visibility": visibility,
            "supported_in_api": supported_in_api,
            "priority": priority,
            "context_window": 272000,
        }

    return {
        "models": [
            card("gpt-5", 5),
            card("gpt-5.1-codex-max", 0, supported_in_api=False),
            card("gpt-5.1-codex", 1),
            card("codex-internal", 2, visibility="hide"),
            card("gpt-5-codex-mini", None),
            card("gpt-5.1-codex-mini", 3, visibility="none"),
        ]
    }


def test_listed_models_sorted_by_priority_with_chatgpt_only_models_kept() -> None:
    models = parse_models_response(backend_payload())
    assert [m.slug for m in models] == ["gpt-5.1-codex-max", "gpt-5.1-codex", "gpt-5", "gpt-5-codex-mini"]
    first = models[0]
    assert first == CodexModel(
        slug="gpt-5.1-codex-max",
        display_name="GPT-5.1-CODEX-MAX",
        priority=0,
        visibility="list",
        supported_in_api=False,
        description="gpt-5.1-codex-max model",
        context_window=272000,
    )


def test_require_api_support_drops_models_not_supported_in_api() -> None:
    models = parse_models_response(backend_payload(), require_api_support=True)
    assert [m.slug for m in models] == ["gpt-5.1-codex", "gpt-5", "gpt-5-codex-mini"]


@pytest.mark.parametrize(
    "payload",
    [
        {"data": [{"id": "gpt-5", "priority": 2}, {"slug": "gpt-5-codex", "priority": 1}]},
        [{"slug": "gpt-5", "priority": 2}, {"slug": "gpt-5-codex", "priority": 1}],
    ],
    ids=["data-key", "bare-list"],
)
def test_tolerates_data_key_bare_list_and_id(payload: Any) -> None:
    models = parse_models_response(payload)
    assert [m.slug for m in models] == ["gpt-5-codex", "gpt-5"]
    assert models[1].display_name == "gpt-5"


def test_malformed_entries_and_duplicates_are_skipped() -> None:
    payload = {
        "models": [
            "gpt-4",
            {"display_name": "no slug"},
            {"slug": ""},
            {"slug": "gpt-5", "priority": 1, "visibility": None, "supported_in_api": "yes"},
            {"slug": "gpt-5", "priority": 0},
            {"slug": "gpt-5-codex", "priority": True},
        ]
    }
    models = parse_models_response(payload)
    assert [(m.slug, m.priority) for m in models] == [("gpt-5", 1), ("gpt-5-codex", None)]
    assert models[0].supported_in_api is True
    assert models[0].visibility == "list"


@pytest.mark.parametrize("payload", [None, {}, {"models": "gpt-5"}, 42, {"detail": "Unauthorized"}])
def test_unusable_payloads_give_no_models(payload: Any) -> None:
    assert parse_models_response(payload) == []


def test_openai_models_list_shape() -> None:
    body = to_openai_models_list(parse_models_response(backend_payload())[:2], created=1761000000)
    assert body == {
        "object": "list",
        "data": [
            {"id": "gpt-5.1-codex-max", "object": "model", "created": 1761000000, "owned_by": "openai"},
            {"id": "gpt-5.1-codex", "object": "model", "created": 1761000000, "owned_by": "openai"},
        ],
    }


def test_fallback_is_short_ordered_and_a_fresh_list() -> None:
    fallback = fallback_models()
    slugs = [m.slug for m in fallback]
    assert {"gpt-5", "gpt-5-codex", "gpt-5.1-codex"} <= set(slugs)
    assert len(slugs) == len(set(slugs)) <= 8
    priorities = [m.priority for m in fallback]
    assert None not in priorities and priorities == sorted(p for p in priorities if p is not None)
    fallback.clear()
    assert fallback_models()
    assert to_openai_models_list(fallback_models())["data"][0]["id"] == slugs[0]
