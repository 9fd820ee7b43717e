"""Optional OpenTelemetry traces: one span per finished request, exported over OTLP/HTTP.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the standard variable; ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``
names the full traces URL instead) and the ``otel`` extra is installed (``pip install 'headway[otel]'``: the
OpenTelemetry SDK and its OTLP/HTTP exporter). The tracer provider is this feature's own (never the global one);
spans are batched and exported by the SDK's own thread, so a slow or absent collector never touches the loop.

A span ``headway.request`` runs from the request's arrival to its last byte, with the route, the status, the
answering account, the member, the model, the tokens and the fallback chain as attributes — no prompt, no key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from proxy.features.base import Completed, Feature

__all__ = ["OTLP_ENDPOINT", "Tracing", "tracing_from_env"]

log = logging.getLogger("headway.tracing")

OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"


class Tracing(Feature):
    name = "tracing"

    def __init__(
        self, endpoint: str, *, service_name: str = "headway", schedule_delay_ms: float = 5000
    ) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        from proxy import __version__

        self.endpoint = endpoint
        self._provider = TracerProvider(
            resource=Resource.create({"service.name": service_name, "service.version": __version__}),
            shutdown_on_exit=False,
        )
        self._provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=schedule_delay_ms)
        )
        self._tracer = self._provider.get_tracer("headway")

    def on_complete(self, done: Completed) -> None:
        end_ns = int(done.finished_at * 1e9)
        start_ns = end_ns - int(done.latency_ms * 1e6)
        attributes: dict[str, Any] = {
            "http.request.method": done.request.method,
            "http.route": done.request.path,
            "http.response.status_code": done.status,
            "headway.member": done.request.member or "local",
            "headway.attempts": len(done.chain),
            "headway.fallback_chain": list(done.chain),
        }
        if done.account is not None:
            attributes["headway.account"] = done.account.id
        if done.model:
            attributes["gen_ai.request.model"] = done.model
        if done.usage is not None:
            attributes["gen_ai.usage.input_tokens"] = done.usage.input_tokens
            attributes["gen_ai.usage.output_tokens"] = done.usage.output_tokens
        if done.ttfb_ms is not None:
            attributes["headway.time_to_first_content_ms"] = done.ttfb_ms
        if done.error:
            attributes["error.type"] = done.error[:200]
        span = self._tracer.start_span("headway.request", start_time=start_ns, attributes=attributes)
        span.end(end_time=end_ns)

    async def aclose(self) -> None:
        await asyncio.to_thread(
            self._provider.shutdown
        )  # flushes what is batched (bounded by the exporter's timeout)


def tracing_from_env(environ: Mapping[str, str]) -> Tracing | None:
    """The tracing feature when an OTLP endpoint is configured and the SDK is installed; else None (logged)."""
    traces = environ.get(_TRACES_ENDPOINT, "").strip()
    base = environ.get(OTLP_ENDPOINT, "").strip()
    if not traces and not base:
        return None
    endpoint = traces or base.rstrip("/") + "/v1/traces"
    try:
        delay = float(environ.get("OTEL_BSP_SCHEDULE_DELAY", "5000"))
    except ValueError:
        delay = 5000.0
    try:
        tracing = Tracing(
            endpoint,
            service_name=environ.get("OTEL_SERVICE_NAME", "headway") or "headway",
            schedule_delay_ms=delay,
        )
    except ImportError:
        log.warning(
            "%s is set but the OpenTelemetry SDK is not installed: no traces (pip install 'headway[otel]')",
            OTLP_ENDPOINT,
        )
        return None
    log.info("OpenTelemetry traces go to %s", endpoint)
    return tracing
