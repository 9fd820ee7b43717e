"""The settings fields (web_ui/views/forms.py): controls come from the settings schema; hidden and read-only paths."""

from __future__ import annotations

from web_ui.views.forms import HIDDEN, READ_ONLY, settings_groups


def test_settings_controls_follow_the_schema() -> None:
    paths = {spec.path: spec for group in settings_groups() for spec in group.fields}
    assert paths["dumps.enabled"].control == "switch"
    assert paths["routing.mode"].control == "select" and "sticky" in paths["routing.mode"].options
    assert paths["routing.fallback_statuses"].control == "int-list"
    assert (paths["routing.min_remaining_percent"].minimum, paths["routing.min_remaining_percent"].maximum) == (0, 100)
    assert paths["logging.level"].options == ("DEBUG", "INFO", "WARNING", "ERROR")
    assert paths["gateway.paused"].control == "switch"
    assert not any(p in HIDDEN or p.startswith(("upstreams.", "secrets.")) for p in paths)
    assert all(paths[p].readonly for p in READ_ONLY if p in paths)
    assert paths["gateway.host"].readonly and not paths["gateway.paused"].readonly
