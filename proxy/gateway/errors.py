"""The gateway's error tree, and how each error reaches an agent in its own protocol's shape.

    HeadwayError                      status, error type, message, extra headers
    ├── LocalRequestError             the agent's request is refused before any account is used
    │   ├── BadRequest                400
    │   ├── AccessDenied              401 (missing or wrong local access key)
    │   ├── ForbiddenOrigin           403 (foreign Host or a browser Origin)
    │   ├── NotFound                  404
    │   ├── RequestTooLarge           413 (body over gateway.max_body_mb)
    │   └── RequestHeadTooLarge       431 (request line and headers over the gateway's head limit)
    ├── InternalError                 500 (a bug: the traceback is in the log file, never in the answer)
    ├── NoAccounts                    503 (nothing configured for this family, or no secret for any)
    ├── GatewayPaused                 503 (the user paused the gateway)
    ├── AllAccountsExhausted          429 with retry-after = the earliest reset
    ├── UpstreamTimeout               504
    └── UpstreamUnavailable           502 (connection refused, reset, dropped before the response started)

Lower-level exceptions (httpx) are translated into these at one place, ``proxy.gateway.forward``.
"""

from __future__ import annotations

import json
from typing import Literal

from starlette.responses import Response

__all__ = [
    "AccessDenied",
    "AllAccountsExhausted",
    "BadRequest",
    "ForbiddenOrigin",
    "GatewayPaused",
    "HeadwayError",
    "InternalError",
    "LocalRequestError",
    "NoAccounts",
    "NotFound",
    "Protocol",
    "RequestHeadTooLarge",
    "RequestTooLarge",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "error_body",
    "error_response",
    "stream_error_event",
]

Protocol = Literal["anthropic", "openai"]

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
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
    431: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "timeout",
}


class HeadwayError(Exception):
    status = 500
    code = "headway_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class LocalRequestError(HeadwayError):
    pass


class BadRequest(LocalRequestError):
    status = 400
    code = "bad_request"


class AccessDenied(LocalRequestError):
    status = 401
    code = "invalid_local_access_key"


class ForbiddenOrigin(LocalRequestError):
    status = 403
    code = "forbidden"


class NotFound(LocalRequestError):
    status = 404
    code = "not_found"


class RequestTooLarge(LocalRequestError):
    status = 413
    code = "request_too_large"


class RequestHeadTooLarge(LocalRequestError):
    status = 431
    code = "request_head_too_large"


class InternalError(HeadwayError):
    status = 500
    code = "internal_error"


class NoAccounts(HeadwayError):
    status = 503
    code = "no_accounts"


class GatewayPaused(HeadwayError):
    status = 503
    code = "gateway_paused"


class AllAccountsExhausted(HeadwayError):
    status = 429
    code = "all_accounts_exhausted"

    def __init__(self, message: str, *, retry_after: float | None) -> None:
        headers = {"retry-after": str(max(1, int(retry_after + 0.999)))} if retry_after is not None else {}
        super().__init__(message, headers=headers)
        self.retry_after = retry_after


class MemberCapReached(HeadwayError):
    """A team member's estimated spend today reached their daily cap (proxy/features/member_caps.py)."""

    status = 429
    code = "member_daily_cap"


class UpstreamTimeout(HeadwayError):
    status = 504
    code = "upstream_timeout"


class UpstreamUnavailable(HeadwayError):
    status = 502
    code = "upstream_unavailable"


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
