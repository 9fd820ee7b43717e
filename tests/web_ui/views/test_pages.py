"""The settings page itself (web_ui/views/pages.py): every section and every setting, each with its label."""

from __future__ import annotations

from tests.web_ui.conftest import Web
from web_ui.views.forms import settings_groups


def test_the_page_renders_every_section_and_every_setting(signed_in: Web) -> None:
    html = signed_in.client.get("/").get_data(as_text=True)
    for section in ("overview", "accounts", "routing", "caching", "debugging", "connect"):
        assert f'id="{section}"' in html
    for group in settings_groups():
        for spec in group.fields:
            if spec.readonly:
                assert f'data-readonly="{spec.path}"' in html, spec.path
                assert f'aria-labelledby="{spec.dom_id}-label"' in html, f"{spec.path} has no label"
            else:
                assert f'data-setting="{spec.path}"' in html, spec.path
                assert f'for="{spec.dom_id}"' in html, f"{spec.path} has no label"
    # shown, but never as a control
    assert 'data-setting="gateway.host"' not in html and 'data-readonly="gateway.host"' in html
    assert 'data-setting="relay.url"' not in html
    assert "upstreams" not in html and "secrets.backend" not in html
