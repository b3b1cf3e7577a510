"""W3C trace context (https://www.w3.org/TR/trace-context/) from the HTTP request to the Agent.

One allergy change can be followed end to end by one trace id:

    API request  (traceparent taken from the request, or a new trace started there)
      └ OutboxEvent.traceparent      stored in the same transaction as the change
          └ AMQP header `traceparent` (relay, retries) / the row itself (embedded bus)
              └ consumer delivery    continues the trace
                  └ Agent call       sends `traceparent` to the Agent

The current span lives in a context variable; project.logging stamps its trace id on every log
record. Without OTEL_EXPORTER_OTLP_ENDPOINT this module costs two random ids per span and never
imports OpenTelemetry. With it, `otel_init()` (gunicorn's post_fork, the daemons' start) sets up
the SDK and `span()` records real spans with the same ids, exported over OTLP/HTTP.
"""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import random
import re
from collections.abc import Iterator
from enum import Enum
from typing import Any, NamedTuple

logger = logging.getLogger(__name__)

HEADER = "traceparent"
# version 00: 2 hex version, 32 hex trace id, 16 hex parent id, 2 hex flags; ids never all zero.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
SAMPLED = 0x01


class SpanKind(Enum):
    SERVER = "server"
    CONSUMER = "consumer"
    CLIENT = "client"


class TraceContext(NamedTuple):
    """One span's place in a trace (a NamedTuple: it is made on every request, and a frozen
    dataclass costs several times as much to build)."""

    trace_id: str  # 32 lowercase hex
    span_id: str  # 16 lowercase hex: the span this process is in
    flags: int = SAMPLED

    @classmethod
    def parse(cls, header: str | None) -> TraceContext | None:
        """The context of a `traceparent` value, or None when it is missing or invalid
        (an unknown future version is read by its version-00 prefix, as the spec asks)."""
        if not header or len(header) > 512:
            return None
        header = header.strip().lower()
        match = _TRACEPARENT.match(header)
        if match is None:
            return None
        version, trace_id, span_id, flags = match.groups()
        if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        if version == "00" and len(header) != 55:
            return None
        return cls(trace_id, span_id, int(flags, 16))

    @classmethod
    def new(cls) -> TraceContext:
        return cls(f"{_random_bits(128) or 1:032x}", _span_id())

    def child(self) -> TraceContext:
        """A new span in the same trace."""
        return TraceContext(self.trace_id, _span_id(), self.flags)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"


# Ids must be unique, not secret (W3C trace context §"Privacy"): the module's Mersenne Twister is
# far cheaper than os.urandom on the request path, and Python reseeds it in a forked child, so
# gunicorn's workers never repeat each other's ids.
_random_bits = random.getrandbits


def _span_id() -> str:
    return f"{_random_bits(64) or 1:016x}"


#: The span this thread/task is in, or None outside a request or a delivery.
current: contextvars.ContextVar[TraceContext | None] = contextvars.ContextVar("trace_context", default=None)


def current_traceparent() -> str | None:
    """The `traceparent` to hand on (stored with an outbox event, sent to the Agent)."""
    context = current.get()
    return context.traceparent if context is not None else None


def current_trace_id() -> str | None:
    context = current.get()
    return context.trace_id if context is not None else None


# --- OpenTelemetry (only with OTEL_EXPORTER_OTLP_ENDPOINT) -----------------------------------

_provider: Any = None
_tracer: Any = None


def otel_enabled() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def otel_init(*, service_name: str, exporter: Any = None) -> bool:
    """Start the OpenTelemetry SDK in this process (after a fork: its export thread must be
    this process's own). Does nothing, and imports nothing, without
    OTEL_EXPORTER_OTLP_ENDPOINT (unless `exporter` is given: tests). True when tracing is on."""
    global _provider, _tracer
    if exporter is None and not otel_enabled():
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    if exporter is None:
        # Reads OTEL_EXPORTER_OTLP_ENDPOINT / _HEADERS / _TIMEOUT itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        processor = SimpleSpanProcessor(exporter)
    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(processor)
    _provider, _tracer = provider, provider.get_tracer("kairos")
    logger.info("tracing: exporting spans over OTLP as service %s", name)
    return True


def otel_shutdown() -> None:
    """Flush and stop the exporter (process exit)."""
    global _provider, _tracer
    if _provider is not None:
        with contextlib.suppress(Exception):
            _provider.shutdown()
    _provider = _tracer = None


def _otel_span(name: str, kind: SpanKind, parent: TraceContext | None, attributes: dict[str, Any]):
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    context = Context()  # a root span: whatever OpenTelemetry holds as current is not its parent
    if parent is not None:
        remote = SpanContext(
            trace_id=int(parent.trace_id, 16),
            span_id=int(parent.span_id, 16),
            is_remote=True,
            trace_flags=TraceFlags(parent.flags),
        )
        context = trace.set_span_in_context(NonRecordingSpan(remote))
    return _tracer.start_as_current_span(
        name, context=context, kind=getattr(trace.SpanKind, kind.name), attributes=attributes,
        record_exception=True, set_status_on_exception=True,
    )


class _Current:
    """`span()`'s default parent: the current span."""


CURRENT_SPAN: Any = _Current()


@contextlib.contextmanager
def span(
    name: str, *, kind: SpanKind, parent: TraceContext | _Current | None = CURRENT_SPAN, **attributes: Any
) -> Iterator[TraceContext]:
    """Be in a new span for the block: a child of `parent` (default: of the current span), or
    the root of a new trace when that is None. Yields its context, current meanwhile."""
    if isinstance(parent, _Current):
        parent = current.get()
    if _tracer is None:
        context = parent.child() if parent is not None else TraceContext.new()
        token = current.set(context)
        try:
            yield context
        finally:
            current.reset(token)
        return
    with _otel_span(name, kind, parent, {k: v for k, v in attributes.items() if v is not None}) as otel:
        ids = otel.get_span_context()
        context = TraceContext(trace_id=f"{ids.trace_id:032x}", span_id=f"{ids.span_id:016x}",
                               flags=int(ids.trace_flags))
        token = current.set(context)
        try:
            yield context
        finally:
            current.reset(token)


def enter(context: TraceContext | None) -> contextvars.Token:
    """Make `context` current without a block (the request middleware keeps the request's span
    current for Django's log lines after the middleware chain; request_finished clears it)."""
    return current.set(context)


def delivery_span(*, traceparent: str | None, event_type: str, event_id: str | None):
    """The consumer's span for one delivery attempt: a child of the span that raised the event
    (its stored or carried `traceparent`), else the root of a new trace."""
    return span(
        f"deliver {event_type}", kind=SpanKind.CONSUMER, parent=TraceContext.parse(traceparent),
        **{"messaging.message.id": event_id, "kairos.event_type": event_type},
    )
