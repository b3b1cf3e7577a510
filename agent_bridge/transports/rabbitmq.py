"""RabbitMQ transport: topology, publishing with confirms, and message properties.

Topology (names start with BUS_PREFIX, "kairos" by default):

    <p>.events  topic exchange ──#──▶ <p>.work queue ──(rejected / delivery limit)──▶ <p>.dead
    <p>.retry.<N>s queues: TTL N s, then dead-lettered straight back to <p>.work
    <p>.dead    fanout exchange ──▶ <p>.dead queue (recorded as DeadLetter rows by the consumer)

Every queue is durable, every message persistent, and no queue can drop a message on its own:
the work queue dead-letters to <p>.dead, each retry queue dead-letters back to <p>.work, and
<p>.dead has neither a length limit, a TTL nor a delivery limit (it is always a classic queue,
because on RabbitMQ 4 a quorum queue gets a default delivery limit of 20 and would need a
dead-letter target of its own).

AMQP_QUEUE_TYPE chooses the type of the work and retry queues: `classic`, or `quorum`
(replicated; the production choice on RabbitMQ 4). Quorum queues dead-letter `at-least-once`
(which RabbitMQ only allows with `x-overflow: reject-publish`), so a message moving from a
retry queue back to the work queue, or from the work queue to <p>.dead after
AMQP_DELIVERY_LIMIT redeliveries, cannot be lost on the way. Classic queues dead-letter
at most once, which is acceptable for development brokers only.

A queue's arguments cannot change once declared: switching AMQP_QUEUE_TYPE on a broker that
already has the queues makes the declare fail (PRECONDITION_FAILED), and the runners log it.
"""
import json
from dataclasses import dataclass

import pika
from django.conf import settings

from agent_bridge.events import Envelope

ATTEMPT_HEADER = "x-kairos-attempt"
TRACE_HEADER = "traceparent"  # W3C trace context (project.tracing), as OpenTelemetry's AMQP propagators name it
# pika errors after which a fresh connection is the way on.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    pika.exceptions.ConnectionClosed,
    ConnectionError,
)
QUEUE_TYPES = ("classic", "quorum")


@dataclass(frozen=True)
class Topology:
    prefix: str

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.events"

    @property
    def work_queue(self) -> str:
        return f"{self.prefix}.work"

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.dead"

    def retry_queue(self, delay_seconds: float) -> str:
        return f"{self.prefix}.retry.{int(delay_seconds)}s"


def topology_from_settings() -> Topology:
    return Topology(prefix=settings.BUS_PREFIX)


def connect_rollback_unsafe(*, name: str) -> pika.BlockingConnection:
    """Open a connection to the broker (outside any database transaction's guarantees).

    The heartbeat is AMQP_HEARTBEAT_SECONDS; callers that block for longer than that (a slow
    Agent call) must keep calling `connection.sleep()` or `process_data_events()`.
    """
    params = pika.URLParameters(settings.AMQP_URL)
    params.heartbeat = settings.AMQP_HEARTBEAT_SECONDS
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    params.socket_timeout = 10
    params.client_properties = {"connection_name": name}
    return pika.BlockingConnection(params)


def connection_close_quietly(connection: pika.BlockingConnection | None) -> None:
    """Close a connection that may already be broken (after a broker restart)."""
    if connection is None:
        return
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # noqa: S110 - the connection is being thrown away either way
        pass


def _queue_arguments(queue_type: str, **extra: object) -> dict:
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"AMQP_QUEUE_TYPE must be one of {QUEUE_TYPES}, not {queue_type!r}")
    arguments: dict = {"x-queue-type": queue_type, **extra}
    if queue_type == "quorum" and "x-dead-letter-exchange" in arguments:
        arguments.update({"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
    return arguments


def topology_declare(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    topology: Topology,
    *,
    queue_type: str | None = None,
    retry_delays: list[int] | None = None,
) -> None:
    """Declare exchanges, queues and bindings; safe to run at every start."""
    queue_type = queue_type or settings.AMQP_QUEUE_TYPE
    delays = settings.BUS_RETRY_DELAYS_SECONDS if retry_delays is None else retry_delays
    channel.exchange_declare(topology.exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(topology.dead_exchange, exchange_type="fanout", durable=True)
    channel.queue_declare(topology.dead_queue, durable=True, arguments={"x-queue-type": "classic"})
    channel.queue_bind(topology.dead_queue, topology.dead_exchange)

    work_extra: dict = {"x-dead-letter-exchange": topology.dead_exchange}
    if queue_type == "quorum":
        # RabbitMQ 3 quorum queues have no limit unless told; RabbitMQ 4 defaults to 20. Either
        # way a message redelivered this often (a poison message crashing consumers) goes to
        # <p>.dead rather than round in circles.
        work_extra["x-delivery-limit"] = settings.AMQP_DELIVERY_LIMIT
    channel.queue_declare(topology.work_queue, durable=True, arguments=_queue_arguments(queue_type, **work_extra))
    channel.queue_bind(topology.work_queue, topology.exchange, routing_key="#")

    for delay in delays:
        channel.queue_declare(
            topology.retry_queue(delay),
            durable=True,
            arguments=_queue_arguments(
                queue_type,
                **{
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": topology.work_queue,
                },
            ),
        )


def _properties(envelope: Envelope, attempt: int, traceparent: str | None = None) -> pika.BasicProperties:
    headers: dict = {ATTEMPT_HEADER: attempt}
    if traceparent:
        headers[TRACE_HEADER] = traceparent
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=envelope["id"],
        type=envelope["type"],
        headers=headers,
    )


def envelope_publish(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    topology: Topology,
    envelope: Envelope,
    *,
    attempt: int = 1,
    traceparent: str | None = None,
) -> None:
    """Publish an event to the work exchange; the channel must be in confirm mode.

    Returns once the broker confirmed; raises NackError on a nack and UnroutableError when no
    queue took the message (mandatory).
    """
    channel.basic_publish(
        topology.exchange,
        envelope["type"],
        json.dumps(envelope).encode(),
        properties=_properties(envelope, attempt=attempt, traceparent=traceparent),
        mandatory=True,
    )


def envelope_publish_retry(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    topology: Topology,
    envelope: Envelope,
    *,
    attempt: int,
    delay_seconds: float,
    traceparent: str | None = None,
) -> None:
    """Park an event in the retry queue of `delay_seconds`; it comes back as attempt `attempt`."""
    channel.basic_publish(
        "",
        topology.retry_queue(delay_seconds),
        json.dumps(envelope).encode(),
        properties=_properties(envelope, attempt=attempt, traceparent=traceparent),
        mandatory=True,
    )


def attempt_of(properties: pika.BasicProperties) -> int:
    headers = properties.headers or {}
    try:
        return max(1, int(headers.get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        return 1


def traceparent_of(properties: pika.BasicProperties) -> str | None:
    value = (properties.headers or {}).get(TRACE_HEADER)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value if isinstance(value, str) else None


def death_reason(properties: pika.BasicProperties) -> str:
    """Why the broker dead-lettered a message (`rejected`, `delivery_limit`, `expired`...)."""
    deaths = (properties.headers or {}).get("x-death") or []
    if deaths and isinstance(deaths[0], dict):
        reason = deaths[0].get("reason", "unknown")
        return reason.decode() if isinstance(reason, bytes) else str(reason)
    return "unknown"
