"""Request-log rows for tests that write or read the request log: one builder with plain defaults, each field
replaceable (`functools.partial` over it gives a module its own defaults)."""

from __future__ import annotations

from typing import Any

from proxy.features.request_rows import RequestRecord
from proxy.wire.usage import Usage

__all__ = ["request_record"]


def request_record(ts: float = 1_700_000_000.0, **fields: Any) -> RequestRecord:
    """An Anthropic /v1/messages request answered 200 on the "acct-main" API key, with some usage; ``fields`` set or
    replace any field. Every call builds its own `Usage` and fallback list, so no two rows share one."""
    values: dict[str, Any] = {
        "route": "/v1/messages",
        "family": "anthropic",
        "account_id": "acct-main",
        "account_label": "Main",
        "account_kind": "anthropic-api",
        "model": "claude-sonnet-4-5",
        "status": 200,
        "latency_ms": 100.0,
        "ttfb_ms": 20.0,
        "usage": Usage(input_tokens=10, output_tokens=20, cache_read_tokens=300, cache_write_tokens=40),
        "fallback_chain": ["main:200"],
    }
    values.update(fields)
    values["fallback_chain"] = list(values["fallback_chain"])
    return RequestRecord(ts=ts, **values)
