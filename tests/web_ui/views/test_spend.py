"""The Budgets and models section's routes (web_ui/views/spend.py): budgets set, refused and cleared; aliases and
routes saved, refused with their key path (nothing lost); CSRF on every write."""

from __future__ import annotations

from proxy.config.settings import Settings
from tests.web_ui.conftest import Web


def _accounts(web: Web) -> None:
    for label, provider, key in (
        ("Work", "anthropic", "sk-ant-api03-" + "a" * 40),
        ("OA", "openai", "sk-" + "c" * 40),
    ):
        assert (
            web.post("/api/accounts", {"provider": provider, "label": label, "api_key": key}).status_code
            == 200
        )


def test_budgets_from_the_page(signed_in: Web) -> None:
    _accounts(signed_in)
    store = signed_in.services.store
    saved = signed_in.post("/api/accounts/work/budget", {"daily_usd": "5", "monthly_usd": "$50"})
    assert saved.status_code == 200, saved.get_json()
    assert saved.get_json()["budget"] == {"daily_usd": 5.0, "monthly_usd": 50.0}
    state = signed_in.get_json("/api/spend")
    work = next(a for a in state["accounts"] if a["id"] == "work")
    assert (work["daily_usd"], work["monthly_usd"]) == (5.0, 50.0)

    for bad, says in (
        ({"daily_usd": "-1"}, "above 0"),
        ({"daily_usd": "lots"}, "not an amount"),
        ({"daily_usd": "nan"}, "above 0"),
    ):
        refused = signed_in.post("/api/accounts/work/budget", bad)
        assert refused.status_code == 400 and says in refused.get_json()["error"]
    assert signed_in.post("/api/accounts/nobody/budget", {"daily_usd": 1}).status_code == 400
    assert store.current.account("work").budget.daily_usd == 5.0  # type: ignore[union-attr]

    no_csrf = signed_in.client.post("/api/accounts/work/budget", json={})
    assert no_csrf.status_code == 403
    cleared = signed_in.post("/api/accounts/work/budget", {"daily_usd": "", "monthly_usd": None})
    assert cleared.status_code == 200 and cleared.get_json()["budget"] is None
    assert store.current.account("work").budget is None  # type: ignore[union-attr]


def test_models_from_the_page(signed_in: Web) -> None:
    _accounts(signed_in)
    store = signed_in.services.store
    good = {"aliases": {"fast": "claude-haiku-4-5"}, "routes": [{"match": "gpt-5*", "accounts": ["OA"]}]}
    saved = signed_in.post("/api/models", good)
    assert saved.status_code == 200, saved.get_json()
    assert {"model": "gpt-5*", "route": True, "accounts": ["OA"]} in saved.get_json()["models"]["serving"]
    assert store.current.models.aliases == {"fast": "claude-haiku-4-5"}

    for bad, problem in (
        ({"routes": [{"match": "gpt-[5", "accounts": ["OA"]}]}, "models.routes[0].match: invalid glob"),
        (
            {"routes": [{"match": "gpt-5", "accounts": ["OA", "nope"]}]},
            "models.routes[0].accounts[1]: no account",
        ),
        ({"aliases": {"a": "b", "b": "c"}}, "models.aliases.a: aliases do not chain"),
        ({"aliasez": {}}, "models.aliasez: unknown setting"),
    ):
        response = signed_in.post("/api/models", bad)
        assert response.status_code == 400, response.get_json()
        assert any(p.startswith(problem) for p in response.get_json()["problems"]), response.get_json()
        assert (
            store.current.models
            == Settings.model_validate(
                {"models": good, "accounts": [a.model_dump() for a in store.current.accounts]}
            ).models
        )


def test_renaming_an_account_on_the_page_keeps_its_routes(signed_in: Web) -> None:
    _accounts(signed_in)
    routes = {
        "routes": [{"match": "gpt-5*", "accounts": ["OA"]}, {"match": "x*", "accounts": ["Work", "OA"]}]
    }
    assert signed_in.post("/api/models", routes).status_code == 200
    renamed = signed_in.post("/api/accounts/oa", {"label": "Team"})
    assert renamed.status_code == 200, renamed.get_json()
    assert [r.accounts for r in signed_in.services.store.current.models.routes] == [
        ["Team"],
        ["Work", "Team"],
    ]
