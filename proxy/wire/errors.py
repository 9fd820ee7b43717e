"""Headway's own errors: what went wrong, with the HTTP status and error code an agent gets for it.

    HeadwayError                      status, error type, message, extra headers
    ├── LocalRequestError             the agent's request is refused before any account is used
    │   ├── BadRequest                400
    │   ├── AccessDenied              401 (missing or wrong local access key)
    │   ├── ForbiddenOrigin           403 (foreign Host or a browser Origin)
    │   ├── NotFound                  404
    │   ├── RequestTooLarge           413 (body over gateway.max_body_mb, also once decompressed)
    │   ├── UnsupportedContentEncoding 415 (a request body Content-Encoding the gateway does not decode)
    │   └── RequestHeadTooLarge       431 (request line and headers over the gateway's head limit)
    ├── InternalError                 500 (a bug: the traceback is in the log file, never in the answer)
    ├── NoAccounts                    503 (nothing configured for this family, or no secret for any)
    ├── GatewayPaused                 503 (the user paused the gateway)
    ├── AllAccountsExhausted          429 with retry-after = the earliest reset
    ├── UpstreamTimeout               504
    ├── UpstreamUnavailable           502 (connection refused, reset, dropped before the response started)
    └── MemberCapReached              429 (a team member's daily spend cap, proxy/features/member_caps.py)

They live at the bottom layer so that any layer may raise one (a feature's ``admit`` refuses a request with one);
:mod:`proxy.gateway.errors` renders them in each agent protocol's shape. Lower-level exceptions (httpx, aiohttp through
:mod:`proxy.wire.upstream_client`) are translated into these in one place, :mod:`proxy.gateway.exchange`.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AllAccountsExhausted",
    "BadRequest",
    "ForbiddenOrigin",
    "GatewayPaused",
    "HeadwayError",
    "InternalError",
    "LocalRequestError",
    "MemberCapReached",
    "NoAccounts",
    "NotFound",
    "RequestHeadTooLarge",
    "RequestTooLarge",
    "UnsupportedContentEncoding",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


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


class UnsupportedContentEncoding(LocalRequestError):
    status = 415
    code = "unsupported_content_encoding"


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
