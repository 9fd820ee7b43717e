"""How Headway's errors (:mod:`proxy.wire.errors`) reach an agent: in its own protocol's shape, as a whole answer
(:func:`error_response`) or, once a stream has started, as an error event in it (:func:`stream_error_event`).
"""

from __future__ import annotations

import json
from typing import Literal

from starlette.responses import Response

from proxy.wire.errors import HeadwayError

__all__ = ["Protocol", "error_body", "error_response", "stream_error_event"]

Protocol = Literal["anthropic", "openai"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    431: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_denied",
    404: "not_found",
    413: "invalid_request_error",
    415: "invalid_request_error",
    431: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "timeout",
}


def error_body(protocol: Protocol, status: int, message: str, code: str | None = None) -> dict[str, object]:
    if protocol == "anthropic":
        return {
            "type": "error",
            "error": {"type": _ANTHROPIC_TYPES.get(status, "api_error"), "message": message},
        }
    return {
        "error": {
            "message": message,
            "type": _OPENAI_TYPES.get(status, "server_error"),
            "param": None,
            "code": code,
        }
    }


def error_response(protocol: Protocol, exc: HeadwayError) -> Response:
    body = json.dumps(error_body(protocol, exc.status, f"Headway: {exc.message}", exc.code))
    headers = {"x-headway-error": exc.code, **exc.headers}
    return Response(body, status_code=exc.status, headers=headers, media_type="application/json")


def stream_error_event(
    protocol: Literal["anthropic", "openai-responses", "openai-chat"], message: str
) -> bytes:
    """An in-stream error in the protocol's framing, for failures after bytes already reached the agent."""
    text = f"Headway: {message}"
    if protocol == "anthropic":
        payload = {"type": "error", "error": {"type": "api_error", "message": text}}
        return b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"
    if protocol == "openai-responses":
        payload2 = {"type": "error", "code": "upstream_error", "message": text, "param": None}
        return b"event: error\ndata: " + json.dumps(payload2).encode() + b"\n\n"
    payload3 = {"error": {"message": text, "type": "server_error", "param": None, "code": "upstream_error"}}
    return b"data: " + json.dumps(payload3).encode() + b"\n\n"
