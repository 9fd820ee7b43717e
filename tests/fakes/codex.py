"""A fake ChatGPT Codex backend: Responses SSE on /backend-api/codex/responses with x-codex-* quota headers, the
usage endpoint, the models endpoint, and 429 usage_limit_reached once an account's window is used up.

Each ChatGPT account (by its ChatGPT-Account-ID header) has its own 5-hour and weekly usage; tests move them with
:meth:`FakeCodex.set_usage`. With ``auth`` (a FakeOpenAIAuth), bearer tokens must be ones it issued and not expired.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes.openai import FakeOpenAI
from tests.fakes.openai_auth import FakeOpenAIAuth
from tests.fakes.server import Behavior, Exchange, RecordedRequest, Route
from tests.fakes.websocket import SocketConnection, Sockets, SocketTurn

__all__ = ["CODEX_MODELS", "CodexUsage", "FakeCodex"]

CODEX_MODELS = ("gpt-5.1-codex", "gpt-5.1", "gpt-5")


@dataclass
class CodexUsage:
    primary_used: float = 10.0
    secondary_used: float = 20.0
    primary_resets_in: float = 3600.0
    secondary_resets_in: float = 3 * 86400.0
    plan_type: str = "plus"


class FakeCodex(FakeOpenAI):
    thread_name = "fake-codex"

    def __init__(
        self,
        *,
        auth: FakeOpenAIAuth | None = None,
        default: Behavior | None = None,
        models: Iterable[str] = CODEX_MODELS,
        clock: Any = time.time,
    ) -> None:
        super().__init__(default=default, models=models)
        self.auth = auth
        self._usage: dict[str, CodexUsage] = {}
        self._usage_lock = threading.Lock()
        self._clock = clock
        self.usage_polls = 0
        #: WebSocket mode on the SSE path (GET upgraded), with `codex.rate_limits` frames and usage limits per turn.
        self.sockets = Sockets(
            self,
            {"/backend-api/codex/responses": self._responses},
            preamble=self.socket_preamble,
            interlude=self.socket_interlude,
        )
        #: Usage that moves during an account's next WebSocket turn: after the turn's first event these fields are
        #: applied and a ``codex.rate_limits`` frame says so (as the service reports usage mid-session).
        self.usage_during_turn: dict[str, dict[str, Any]] = {}

    def set_usage(self, account_id: str, **fields: Any) -> None:
        with self._usage_lock:
            usage = self._usage.setdefault(account_id, CodexUsage())
            for key, value in fields.items():
                setattr(usage, key, value)

    def usage(self, account_id: str) -> CodexUsage:
        with self._usage_lock:
            return self._usage.setdefault(account_id, CodexUsage())

    def routes(self) -> Mapping[tuple[str, str], Route]:
        return {
            ("POST", "/backend-api/codex/responses"): self._codex,
            ("GET", "/backend-api/wham/usage"): self._wham,
            ("GET", "/backend-api/codex/models"): self._codex_models,
        }

    def _authorized(self, ex: Exchange) -> bool:
        if self.auth is None:
            return True
        token = ex.request.headers.get("authorization", "").partition(" ")[2]
        if self.auth.access_token_valid(token):
            return True
        ex.send_json(
            {
                "error": {
                    "message": "invalid or expired token",
                    "type": "invalid_request_error",
                    "code": "token_expired",
                }
            },
            401,
        )
        return False

    def _headers(self, usage: CodexUsage) -> dict[str, str]:
        now = self._clock()
        return {
            "x-codex-primary-used-percent": f"{usage.primary_used:g}",
            "x-codex-primary-window-minutes": "300",
            "x-codex-primary-reset-at": str(int(now + usage.primary_resets_in)),
            "x-codex-secondary-used-percent": f"{usage.secondary_used:g}",
            "x-codex-secondary-window-minutes": "10080",
            "x-codex-secondary-reset-after-seconds": str(int(usage.secondary_resets_in)),
            "x-codex-plan-type": usage.plan_type,
        }

    def _codex(self, ex: Exchange) -> None:
        if not self._authorized(ex):
            return
        account = ex.request.headers.get("chatgpt-account-id", "")
        usage = self.usage(account)
        headers = {**self._headers(usage), **ex.behavior.headers}
        if usage.primary_used >= 100 or usage.secondary_used >= 100:
            resets_in = usage.primary_resets_in if usage.primary_used >= 100 else usage.secondary_resets_in
            body = self._limit_body(usage, resets_in)
            ex.behavior = ex.behavior.replace(headers=headers)
            ex.send_json(body, 429)
            return
        ex.behavior = ex.behavior.replace(headers=headers)
        self._responses(ex)

    def socket_key_ok(self, request: RecordedRequest) -> bool:
        if self.auth is None:
            return True
        return self.auth.access_token_valid(request.headers.get("authorization", "").partition(" ")[2])

    def socket_preamble(
        self, turn: SocketTurn, connection: SocketConnection
    ) -> tuple[list[dict[str, Any]], tuple[int, Any] | None]:
        usage = self.usage(connection.headers.get("chatgpt-account-id", ""))
        if usage.primary_used >= 100 or usage.secondary_used >= 100:
            resets_in = usage.primary_resets_in if usage.primary_used >= 100 else usage.secondary_resets_in
            return [], (429, self._limit_body(usage, resets_in))
        return [self._limits_frame(usage)], None

    def socket_interlude(
        self, turn: SocketTurn, connection: SocketConnection, count: int
    ) -> list[dict[str, Any]]:
        account_id = connection.headers.get("chatgpt-account-id", "")
        if count != 1 or account_id not in self.usage_during_turn:
            return []
        self.set_usage(account_id, **self.usage_during_turn.pop(account_id))
        return [self._limits_frame(self.usage(account_id))]

    def _limits_frame(self, usage: CodexUsage) -> dict[str, Any]:
        now = self._clock()
        return {
            "type": "codex.rate_limits",
            "plan_type": usage.plan_type,
            "rate_limits": {
                "primary": {
                    "used_percent": usage.primary_used,
                    "window_minutes": 300,
                    "reset_at": int(now + usage.primary_resets_in),
                },
                "secondary": {
                    "used_percent": usage.secondary_used,
                    "window_minutes": 10080,
                    "reset_at": int(now + usage.secondary_resets_in),
                },
            },
            "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
        }

    def _limit_body(self, usage: CodexUsage, resets_in: float) -> dict[str, Any]:
        return {
            "error": {
                "type": "usage_limit_reached",
                "message": "The usage limit has been reached",
                "plan_type": usage.plan_type,
                "resets_at": int(self._clock() + resets_in),
                "resets_in_seconds": int(resets_in),
            }
        }

    def _wham(self, ex: Exchange) -> None:
        if not self._authorized(ex):
            return
        self.usage_polls += 1
        usage = self.usage(ex.request.headers.get("chatgpt-account-id", ""))
        now = self._clock()
        ex.send_json(
            {
                "plan_type": usage.plan_type,
                "rate_limit": {
                    "primary_window": {
                        "used_percent": usage.primary_used,
                        "limit_window_seconds": 18000,
                        "reset_after_seconds": int(usage.primary_resets_in),
                        "reset_at": int(now + usage.primary_resets_in),
                    },
                    "secondary_window": {
                        "used_percent": usage.secondary_used,
                        "limit_window_seconds": 604800,
                        "reset_after_seconds": int(usage.secondary_resets_in),
                        "reset_at": int(now + usage.secondary_resets_in),
                    },
                },
                "credits": {"has_credits": False, "unlimited": False, "balance": "0"},
            }
        )

    def _codex_models(self, ex: Exchange) -> None:
        if not self._authorized(ex):
            return
        ex.send_json(
            {
                "models": [
                    {
                        "slug": m,
                        "display_name": m,
                        "visibility": "list",
                        "supported_in_api": True,
                        "priority": i,
                    }
                    for i, m in enumerate(self.models)
                ]
            }
        )
