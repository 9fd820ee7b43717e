"""Optional OpenTelemetry traces: off without an endpoint; with one, a span per request reaches a real OTLP/HTTP
collector (a local HTTP server decoding the protobuf export with opentelemetry-proto)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from proxy.features.tracing import Tracing, tracing_from_env
from tests.fakes import FakeAnthropic
from tests.support.gateway import start_gateway, wait_until


class Collector:
    def __init__(self) -> None:
        self.spans: list[Any] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                collector.paths.append(self.path)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        collector.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-collector", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def collector() -> Iterator[Collector]:
    running = Collector()
    running.thread.start()
    try:
        yield running
    finally:
        running.server.shutdown()
        running.server.server_close()


def test_off_without_an_endpoint() -> None:
    assert tracing_from_env({}) is None
    tracing = tracing_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"})
    assert isinstance(tracing, Tracing) and tracing.endpoint == "http://collector:4318/v1/traces"
    direct = tracing_from_env({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"})
    assert direct is not None and direct.endpoint == "http://c:4318/custom"


def test_a_span_per_request_reaches_the_collector(anthropic: FakeAnthropic, collector: Collector) -> None:
    gateway = start_gateway(
        anthropic_url=anthropic.url,
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "50"},
    )
    try:
        account = gateway.add("anthropic", "main", "sk-ant-main")
        response = httpx.post(
            f"{gateway.url}/v1/messages",
            json={
                "model": "claude-sonnet-4-5",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"x-api-key": gateway.key, "anthropic-version": "2023-06-01"},
            timeout=10,
        )
        assert response.status_code == 200
        assert wait_until(lambda: len(collector.spans) >= 1, timeout=10)
    finally:
        gateway.stop()
    span = collector.spans[0]
    assert collector.paths[0] == "/v1/traces"
    assert span.name == "headway.request"
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["http.route"].string_value == "/v1/messages"
    assert attributes["http.response.status_code"].int_value == 200
    assert attributes["headway.account"].string_value == account.id
    assert attributes["headway.member"].string_value == "local"
    assert attributes["gen_ai.usage.output_tokens"].int_value > 0
    assert span.end_time_unix_nano > span.start_time_unix_nano
    assert "sk-ant-main" not in str(span) and gateway.key not in str(span)
