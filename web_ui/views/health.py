"""The "Health check" section: the same checks as ``headway doctor``, run on request.

The checks live in the tray package (they look at the desktop, autostart and the CLI's view of things); the
composition root hands the page a callable (``WebContext.health_checks``), so nothing here imports them. A POST
(CSRF-protected, never prefetched): the keychain check writes and deletes a probe entry.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from . import ctx, error

__all__ = ["blueprint"]

blueprint = Blueprint("health", __name__)


@blueprint.post("/api/health")
def run_checks() -> Response:
    checks = ctx().health_checks
    if checks is None:
        return error("the health check is not available in this Headway", 503)
    results = [dict(c) for c in checks()]
    failed = sum(c.get("status") == "fail" for c in results)
    warned = sum(c.get("status") == "warn" for c in results)
    return jsonify({"checks": results, "failed": failed, "warned": warned})
