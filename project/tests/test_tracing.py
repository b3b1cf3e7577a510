"""W3C trace context: parsing, spans, the request middleware, the outbox column, log lines, and
OpenTelemetry only when configured."""
import logging
import subprocess
import sys

import pytest

from project import tracing
from project.tracing import TraceContext

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "header",
    [
        None, "", "garbage", VALID.upper().replace("00-", "zz-", 1),
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
        VALID + "-extra",  # version 00 has exactly four fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    ],
)
def test_invalid_traceparents_are_ignored(header) -> None:
    assert TraceContext.parse(header) is None


def test_a_valid_traceparent_round_trips() -> None:
    context = TraceContext.parse(VALID)
    assert (context.trace_id, context.span_id, context.flags) == (
        "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1
    )
    assert context.traceparent == VALID
    assert TraceContext.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future") is not None


def test_spans_nest_and_leave_no_context_behind() -> None:
    assert tracing.current.get() is None
    with tracing.span("a", kind=tracing.SpanKind.SERVER, parent=None) as root:
        with tracing.span("b", kind=tracing.SpanKind.CLIENT) as child:
            assert child.trace_id == root.trace_id and child.span_id != root.span_id
            assert tracing.current_traceparent() == child.traceparent
        assert tracing.current.get() == root
    assert tracing.current.get() is None


@pytest.mark.django_db
def test_the_request_continues_the_callers_trace_into_the_outbox_and_the_logs(api_client, outbox, caplog) -> None:
    body = {"username": "ada", "email": "ada@example.com", "password": "a-long-passphrase-42"}
    with caplog.at_level(logging.INFO, logger="project.middleware"):
        response = api_client.post("/api/signup/", body, format="json", HTTP_TRACEPARENT=VALID)

    assert response.status_code == 201
    stored = TraceContext.parse(outbox("user.registered")[0].traceparent)
    assert stored.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert stored.span_id != "00f067aa0ba902b7"  # the API's own span, a child of the caller's
    line = next(record for record in caplog.records if record.name == "project.middleware")
    assert line.trace_id == stored.trace_id


@pytest.mark.django_db
def test_a_request_without_traceparent_starts_a_trace(api_client, outbox) -> None:
    body = {"username": "ada", "email": "ada@example.com", "password": "a-long-passphrase-42"}
    api_client.post("/api/signup/", body, format="json", HTTP_TRACEPARENT="not-a-traceparent")
    api_client.post("/api/verify/resend/", {"email": "ada@example.com"}, format="json")

    first, second = (TraceContext.parse(event.traceparent) for event in outbox("email.requested"))
    assert first and second and first.trace_id != second.trace_id


def test_text_log_lines_carry_the_trace_id() -> None:
    from project.logging import RequestIdFilter, TextFormatter

    record = logging.LogRecord("consumers.processing", logging.INFO, __file__, 1, "delivery event_id=1", (), None)
    with tracing.span("deliver", kind=tracing.SpanKind.CONSUMER, parent=TraceContext.parse(VALID)):
        RequestIdFilter().filter(record)
    assert TextFormatter().format(record).endswith(" trace_id=4bf92f3577b34da6a3ce929d0e0e4736")


def test_with_an_exporter_spans_are_recorded_with_the_same_ids_and_parents() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    assert tracing.otel_init(service_name="test", exporter=exporter)
    try:
        parent = TraceContext.parse(VALID)
        with (
            tracing.span("deliver", kind=tracing.SpanKind.CONSUMER, parent=parent) as outer,
            tracing.span("GET /users/{uid}", kind=tracing.SpanKind.CLIENT) as inner,
        ):
            pass
    finally:
        tracing.otel_shutdown()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert f"{spans['deliver'].context.span_id:016x}" == outer.span_id
    assert f"{spans['deliver'].parent.span_id:016x}" == "00f067aa0ba902b7"
    assert f"{spans['GET /users/{uid}'].parent.span_id:016x}" == outer.span_id
    assert {f"{span.context.trace_id:032x}" for span in spans.values()} == {"4bf92f3577b34da6a3ce929d0e0e4736"}
    assert inner.trace_id == outer.trace_id


def test_without_the_endpoint_the_tracing_sdk_is_never_imported() -> None:
    """No OpenTelemetry tracing SDK or exporter is loaded, nor a tracer made. (redis-py imports
    OpenTelemetry's *metrics* modules by itself when they are installed; it records nothing
    unless configured to, and that import is redis-py's, at start, not per request.)"""
    code = (
        "import os, sys; os.environ.pop('OTEL_EXPORTER_OTLP_ENDPOINT', None)\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'project.settings_test')\n"
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "from project import tracing\n"
        "assert not tracing.otel_init(service_name='x')\n"
        "Client().get('/api/health/live/', HTTP_TRACEPARENT='" + VALID + "')\n"
        "print(tracing._tracer, sorted(m for m in sys.modules\n"
        "      if m.startswith(('opentelemetry.sdk.trace', 'opentelemetry.exporter'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "None []", result.stdout + result.stderr


def test_with_otel_exporter_otlp_endpoint_spans_are_exported_over_otlp_http(monkeypatch) -> None:
    """A real OTLP/HTTP exchange with a collector stand-in on loopback."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, self.headers["Content-Type"], body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    try:
        assert tracing.otel_init(service_name="kairos-test")
        with tracing.span("deliver user.registered", kind=tracing.SpanKind.CONSUMER, parent=TraceContext.parse(VALID)):
            pass
        tracing.otel_shutdown()  # flushes the batch
    finally:
        server.shutdown()

    assert received, "no span reached the collector"
    path, content_type, body = received[0]
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    assert bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736") in body and b"kairos-test" in body
