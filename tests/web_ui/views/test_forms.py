"""The settings fields (web_ui/views/forms.py): controls come from the settings schema; hidden and read-only paths."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config.settings import Settings
from web_ui.views.forms import HIDDEN, READ_ONLY, ChangeError, apply_changes, current_values, settings_groups


def test_settings_controls_follow_the_schema() -> None:
    paths = {spec.path: spec for group in settings_groups() for spec in group.fields}
    assert paths["dumps.enabled"].control == "switch"
    assert paths["routing.mode"].control == "select" and "sticky" in paths["routing.mode"].options
    assert paths["routing.fallback_statuses"].control == "int-list"
    assert (
        paths["routing.min_remaining_percent"].minimum,
        paths["routing.min_remaining_percent"].maximum,
    ) == (0, 100)
    assert paths["logging.level"].options == ("DEBUG", "INFO", "WARNING", "ERROR")
    assert paths["gateway.paused"].control == "switch"
    assert not any(p in HIDDEN or p.startswith(("upstreams.", "secrets.")) for p in paths)
    assert all(paths[p].readonly for p in READ_ONLY if p in paths)
    assert paths["gateway.host"].readonly and not paths["gateway.paused"].readonly


def test_form_values_are_coerced_to_the_setting_s_type() -> None:
    settings = Settings()
    apply_changes(
        settings,
        {
            "routing.fallback_statuses": "429; 529,,503 ",
            "routing.max_retries": "2",
            "routing.min_remaining_percent": "12.5",
            "dumps.enabled": "true",
            "logging.level": "debug",
        },
    )
    assert settings.routing.fallback_statuses == [429, 529, 503]
    assert settings.routing.max_retries == 2 and settings.routing.min_remaining_percent == 12.5
    assert settings.dumps.enabled is True and settings.logging.level == "DEBUG"
    assert current_values(settings)["routing.fallback_statuses"] == [429, 529, 503]


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("dumps.max_mb", True, "a number, not true or false"),
        ("routing.min_remaining_percent", False, "a number, not true or false"),
        ("routing.max_retries", "2.5", "valid integer"),
        ("routing.min_remaining_percent", "nan", "less than or equal to 100"),
        ("dumps.max_mb", float("inf"), "finite number"),
        ("routing.fallback_statuses", "429, abc", "valid integer"),
        ("dumps.enabled", "maybe", "valid boolean"),
        ("routing.mode", None, "'sticky'"),
    ],
)
def test_a_value_of_the_wrong_kind_is_refused_with_the_reason_and_changes_nothing(
    path: str, value: Any, reason: str
) -> None:
    settings = Settings()
    section, name = path.split(".")
    before = getattr(getattr(settings, section), name)
    with pytest.raises(ChangeError) as caught:
        apply_changes(settings, {path: value, "dumps.include_sse": True})
    assert list(caught.value.problems) == [path] and reason in caught.value.problems[path]
    assert getattr(getattr(settings, section), name) == before
