"""Connect an agent: ready-to-paste settings for each agent, and the same edit ``headway configure`` makes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from ..agents import AGENTS, AgentConfigError, Endpoint, endpoint_for, mask_key, plan, snippet, write
from . import ctx, error

__all__ = ["blueprint"]

blueprint = Blueprint("connect", __name__)


def _endpoint() -> Endpoint | None:
    engine = ctx().engine
    key = engine.access_key
    return endpoint_for(engine.base_url, key) if key else None


def _agent(name: str, ep: Endpoint) -> dict[str, Any]:
    info = AGENTS[name]
    item: dict[str, Any] = {
        "name": name,
        "title": info.title,
        "writes": info.writes,
        "run_hint": info.run_hint,
        "snippet": mask_key(snippet(name, ep), ep.key),
        "path": None,
        "configured": False,
        "problem": None,
    }
    try:
        p = plan(name, ep)
    except AgentConfigError as exc:
        item["problem"] = str(exc)
        return item
    if p.path is not None:
        item["path"] = str(p.path)
        item["exists"] = p.old_text is not None
        item["configured"] = p.old_text is not None and not p.changed
    item["notes"] = list(p.notes)
    return item


@blueprint.get("/api/agents")
def agents() -> Response:
    ep = _endpoint()
    if ep is None:
        return error("the gateway is not running", 503)
    return jsonify(
        {
            "base_url": ep.root,
            "key_hint": mask_key(ep.key, ep.key),
            "agents": [_agent(name, ep) for name in AGENTS],
        }
    )


@blueprint.post("/api/agents/<name>/snippet")
def agent_snippet(name: str) -> Response:
    """The snippet with the real key, for 'Copy' (a POST: CSRF-protected and never cached)."""
    ep = _endpoint()
    if ep is None:
        return error("the gateway is not running", 503)
    if name not in AGENTS:
        return error("unknown agent", 404)
    return jsonify({"snippet": snippet(name, ep)})


@blueprint.post("/api/agents/<name>/write")
def agent_write(name: str) -> Response:
    ep = _endpoint()
    if ep is None:
        return error("the gateway is not running", 503)
    if name not in AGENTS:
        return error("unknown agent", 404)
    if not AGENTS[name].writes:
        return error(f"{AGENTS[name].title} is configured through its environment: copy the snippet", 400)
    try:
        result = write(plan(name, ep))
    except (AgentConfigError, OSError) as exc:
        return error(str(exc), 409)
    notes = list(result.notes)
    if ctx().store.current.gateway.port == 0:
        notes.append(
            "the gateway picks a new port at each start (gateway.port = 0): write this again after a restart"
        )
    return jsonify(
        {
            "path": str(result.path),
            "backup": str(result.backup) if result.backup else None,
            "changed": result.changed,
            "notes": notes,
            "agent": _agent(name, ep),
        }
    )
