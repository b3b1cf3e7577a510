"""One trace from the HTTP request to the Agent, over real processes (gunicorn, consumer, relay
with AMQP_URL, the Agent double): the trace id of a signup appears in the consumer's delivery
log line and in the `traceparent` the Agent double received; with OTEL_EXPORTER_OTLP_ENDPOINT,
the API's workers and the consumer export the spans of that trace."""
import re
import secrets

import pytest

from project.tracing import TraceContext
from tests.e2e.harness import wait_for

pytestmark = pytest.mark.e2e


def _signup(stack, email: str, **headers: str) -> None:
    body = {"username": "ada", "email": email, "password": "a-long-passphrase-42"}
    response = stack.api("POST", "/api/signup/", json=body, headers=headers)
    assert response.status_code == 201, response.text


def _agent_traceparents(stack) -> list[TraceContext]:
    creates = [r for r in stack.agent.requests() if r["method"] == "POST" and r["path"].startswith("/users/")]
    return [TraceContext.parse(r.get("traceparent")) for r in creates]


def _delivery_lines(stack, trace_id: str) -> list[str]:
    log = (stack.workdir / "consumer0.log").read_text(errors="replace")
    return [
        line for line in log.splitlines()
        if "consumers.processing" in line and "event_type=user.registered" in line and f"trace_id={trace_id}" in line
    ]


def test_a_requests_trace_reaches_the_consumers_log_and_the_agent(stack) -> None:
    caller = TraceContext(trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8))

    _signup(stack, "ada@example.com", traceparent=caller.traceparent)

    received = wait_for(lambda: [c for c in _agent_traceparents(stack) if c], timeout=60, what="the Agent call")
    assert received[0].trace_id == caller.trace_id, stack.logs()
    # A span of our own (the Agent call's), not the caller's id passed through.
    assert received[0].span_id != caller.span_id
    lines = wait_for(lambda: _delivery_lines(stack, caller.trace_id), timeout=30, what="the delivery log line")
    assert "outcome=delivered" in lines[-1], lines


def test_a_request_without_traceparent_starts_the_trace_that_reaches_the_agent(stack) -> None:
    request_id = "trace-e2e-" + secrets.token_hex(4)

    _signup(stack, "grace@example.com", **{"X-Request-ID": request_id})

    received = wait_for(lambda: [c for c in _agent_traceparents(stack) if c], timeout=60, what="the Agent call")
    api_log = (stack.workdir / "api.log").read_text(errors="replace")
    line = next(line for line in api_log.splitlines() if "project.middleware" in line and request_id in line)
    trace_id = re.search(r"trace_id=([0-9a-f]{32})", line)[1]
    assert received[0].trace_id == trace_id
    wait_for(lambda: _delivery_lines(stack, trace_id), timeout=30, what="the delivery log line")


class _Collector:
    """An OTLP/HTTP trace receiver on loopback: records the spans it is sent."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[dict[str, str]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
                for resource_spans in request.resource_spans:
                    service = next(a.value.string_value for a in resource_spans.resource.attributes
                                   if a.key == "service.name")
                    for scope in resource_spans.scope_spans:
                        collector.spans.extend(
                            {"service": service, "name": span.name, "trace_id": span.trace_id.hex(),
                             "span_id": span.span_id.hex(), "parent_id": span.parent_span_id.hex()}
                            for span in scope.spans
                        )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def of_trace(self, trace_id: str) -> dict[tuple[str, str], dict[str, str]]:
        """(service, span name) → span, for one trace."""
        return {(span["service"], span["name"]): span for span in list(self.spans) if span["trace_id"] == trace_id}


def test_with_an_otlp_endpoint_the_api_and_the_consumer_export_spans_of_one_trace(stack_factory) -> None:
    collector = _Collector()
    api, delivery, call = ("kairos-api", "HTTP POST"), ("kairos-consumer", "deliver user.registered"), (
        "kairos-consumer", "POST /users/{uid}")
    try:
        # The SDK starts in each gunicorn worker after the fork, and in the consumer.
        otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "200"}
        stack = stack_factory(extra_env=otel)
        caller = TraceContext(trace_id=secrets.token_hex(16), span_id=secrets.token_hex(8))
        _signup(stack, "ada@example.com", traceparent=caller.traceparent)
        spans = wait_for(
            lambda: (found := collector.of_trace(caller.trace_id)).keys() >= {api, delivery, call} and found,
            timeout=60, what="the API's and the consumer's spans",
        )
    finally:
        collector.server.shutdown()
    # caller → the API's request span → the consumer's delivery → its Agent call.
    assert spans[api]["parent_id"] == caller.span_id
    assert spans[delivery]["parent_id"] == spans[api]["span_id"]
    assert spans[call]["parent_id"] == spans[delivery]["span_id"]
