"""RabbitMQ transport: topology, publishing with confirms, and message properties.

Topology (names start with BUS_PREFIX, "kairos" by default):

    <p>.events  topic exchange ──#──▶ <p>.work queue ──(rejected / delivery limit)──▶ <p>.dead
    <p>.retry.<N>s queues: TTL N s, then dead-lettered straight back to <p>.work
    <p>.dead    fanout exchange ──▶ <p>.dead queue (recorded as DeadLetter rows by the consumer)

Every queue is durable and every message persistent. Only the work queue follows
AMQP_QUEUE_TYPE (classic on RabbitMQ 3, quorum on 4); on quorum queues a delivery limit
dead-letters (at least once) to <p>.dead instead of dropping. Retry and dead queues are
classic: they have no consumer-side redelivery to limit.
"""
import json
from dataclasses import dataclass

import pika
from django.conf import settings

from agent_bridge.events import Envelope

ATTEMPT_HEADER = "x-kairos-attempt"
# pika errors after which a fresh connection is the way on.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    pika.exceptions.ConnectionClosed,
    ConnectionError,
)


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
    """Open a connection to the broker (outside any database transaction's guarantees)."""
    params = pika.URLParameters(settings.AMQP_URL)
    params.heartbeat = 30
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    params.client_properties = {"connection_name": name}
    return pika.BlockingConnection(params)


def topology_declare(channel: pika.adapters.blocking_connection.BlockingChannel, topology: Topology) -> None:
    """Declare exchanges, queues and bindings; safe to run at every start."""
    channel.exchange_declare(topology.exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(topology.dead_exchange, exchange_type="fanout", durable=True)
    channel.queue_declare(topology.dead_queue, durable=True, arguments={"x-queue-type": "classic"})
    channel.queue_bind(topology.dead_queue, topology.dead_exchange)

    work_args: dict = {"x-dead-letter-exchange": topology.dead_exchange}
    if settings.AMQP_QUEUE_TYPE == "quorum":
        work_args.update(
            {
                "x-queue-type": "quorum",
                "x-delivery-limit": settings.AMQP_DELIVERY_LIMIT,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )
    else:
        work_args["x-queue-type"] = "classic"
    channel.queue_declare(topology.work_queue, durable=True, arguments=work_args)
    channel.queue_bind(topology.work_queue, topology.exchange, routing_key="#")

    for delay in settings.BUS_RETRY_DELAYS_SECONDS:
        channel.queue_declare(
            topology.retry_queue(delay),
            durable=True,
            arguments={
                "x-queue-type": "classic",
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": topology.work_queue,
            },
        )


def _properties(envelope: Envelope, attempt: int) -> pika.BasicProperties:
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=envelope["id"],
        type=envelope["type"],
        headers={ATTEMPT_HEADER: attempt},
    )


def envelope_publish(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    topology: Topology,
    envelope: Envelope,
) -> None:
    """Publish an event to the work exchange; the channel must be in confirm mode.

    Returns once the broker confirmed; raises on nack or when no queue took the message.
    """
    channel.basic_publish(
        topology.exchange,
        envelope["type"],
        json.dumps(envelope).encode(),
        properties=_properties(envelope, attempt=1),
        mandatory=True,
    )


def envelope_publish_retry(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    topology: Topology,
    envelope: Envelope,
    *,
    attempt: int,
    delay_seconds: float,
) -> None:
    """Park an event in the retry queue of `delay_seconds`; it comes back as attempt `attempt`."""
    channel.basic_publish(
        "",
        topology.retry_queue(delay_seconds),
        json.dumps(envelope).encode(),
        properties=_properties(envelope, attempt=attempt),
        mandatory=True,
    )


def attempt_of(properties: pika.BasicProperties) -> int:
    headers = properties.headers or {}
    try:
        return max(1, int(headers.get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        return 1
