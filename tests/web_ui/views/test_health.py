"""POST /api/health: the composition root's setup checks (`headway doctor`), CSRF-protected."""

from __future__ import annotations

from tests.web_ui.conftest import Web


def test_health_runs_the_checks_behind_csrf(signed_in: Web) -> None:
    refused = signed_in.client.post("/api/health", json={})
    assert refused.status_code == 403
    response = signed_in.post("/api/health")
    assert response.status_code == 200, response.data
    data = response.get_json()
    names = [c["check"] for c in data["checks"]]
    assert {"settings file", "keychain", "gateway port", "running instance", "autostart"} <= set(names)
    assert all(set(c) == {"check", "status", "detail", "fix"} for c in data["checks"])
    assert data["failed"] == sum(c["status"] == "fail" for c in data["checks"])
    instance = next(c for c in data["checks"] if c["check"] == "running instance")
    assert instance["status"] == "ok" and signed_in.services.engine.base_url in instance["detail"]


def test_health_without_checks_says_so(signed_in: Web) -> None:
    signed_in.services.web.context.health_checks = None
    response = signed_in.post("/api/health")
    assert response.status_code == 503
    assert "not available" in response.get_json()["error"]
