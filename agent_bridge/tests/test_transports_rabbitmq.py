"""agent_bridge.transports.rabbitmq: message bodies and properties (no broker), and what a publish
puts on a real broker (RabbitMQ only). The consumer loop over RabbitMQ: tests/e2e/test_broker.py."""
import json
import uuid

import pika
import pytest

from agent_bridge import events
from agent_bridge.transports import rabbitmq as amqp
from agent_bridge.transports.rabbitmq import envelope_from
from consumers.tests.conftest import envelope

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        (b'{"id": "6f6cc0b2-f0d8-48f2-8253-b3defd07ec22", "type": "user.registered", "uid": null}', True),
        (b'{"id": "6f6cc0b2-f0d8-48f2-8253-b3defd07ec22", "type": "user.registered", '
         b'"uid": "b90c75f8-d06a-4e15-94f8-41faba334a58"}', True),
        (b"not json", False),
        (b"\xff\xfe", False),
        (b"[1, 2]", False),
        (b'{"id": "garbage-1", "type": "user.registered"}', False),
        (b'{"id": "6f6cc0b2-f0d8-48f2-8253-b3defd07ec22", "type": "user.registered", "uid": "nope"}', False),
        (b'{"id": "6f6cc0b2-f0d8-48f2-8253-b3defd07ec22", "type": ""}', False),
        (b'{"id": "6f6cc0b2-f0d8-48f2-8253-b3defd07ec22", "type": "' + b"x" * 65 + b'"}', False),
    ],
)
def test_only_settleable_envelopes_are_processed(body: bytes, ok: bool) -> None:
    assert (envelope_from(body) is not None) is ok


@pytest.mark.parametrize(
    ("headers", "attempt"),
    [(None, 1), ({}, 1), ({amqp.ATTEMPT_HEADER: 3}, 3), ({amqp.ATTEMPT_HEADER: 0}, 1),
     ({amqp.ATTEMPT_HEADER: "x"}, 1), ({amqp.ATTEMPT_HEADER: None}, 1)],
)
def test_the_attempt_comes_from_its_header_and_is_at_least_one(headers, attempt: int) -> None:
    assert amqp.attempt_of(pika.BasicProperties(headers=headers)) == attempt


@pytest.mark.parametrize(
    ("headers", "traceparent"),
    [(None, None), ({amqp.TRACE_HEADER: TRACEPARENT}, TRACEPARENT),
     ({amqp.TRACE_HEADER: TRACEPARENT.encode()}, TRACEPARENT), ({amqp.TRACE_HEADER: 5}, None)],
)
def test_the_trace_context_is_read_from_its_header(headers, traceparent) -> None:
    assert amqp.traceparent_of(pika.BasicProperties(headers=headers)) == traceparent


@pytest.mark.parametrize(
    ("headers", "reason"),
    [(None, "unknown"), ({"x-death": []}, "unknown"), ({"x-death": [{"reason": b"rejected"}]}, "rejected"),
     ({"x-death": [{"reason": "delivery_limit"}, {"reason": "expired"}]}, "delivery_limit"),
     ({"x-death": ["garbage"]}, "unknown")],
)
def test_the_death_reason_is_the_brokers_latest(headers, reason: str) -> None:
    assert amqp.death_reason(pika.BasicProperties(headers=headers)) == reason


@pytest.mark.rabbitmq
def test_a_published_event_reaches_its_partition_with_its_attempt_trace_and_priority(settings) -> None:
    settings.BUS_PREFIX = f"kairos-test-transport-{uuid.uuid4().hex[:8]}"
    settings.AMQP_PARTITIONS = 1
    topology = amqp.topology_from_settings()
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    channel = connection.channel()
    try:
        amqp.topology_declare(channel, topology)
        channel.confirm_delivery()
        allergies = envelope(events.ALLERGIES_REPLACED, uuid.uuid4())
        registered = envelope(events.USER_REGISTERED, uuid.uuid4())
        amqp.envelope_publish_rollback_unsafe(channel, topology, registered)
        amqp.envelope_publish_rollback_unsafe(channel, topology, allergies, attempt=2, traceparent=TRACEPARENT)

        got = []
        while (message := channel.basic_get(topology.work_queue(0), auto_ack=True))[0] is not None:
            _method, properties, body = message
            got.append((envelope_from(body), amqp.attempt_of(properties), amqp.traceparent_of(properties),
                        properties.priority, properties.message_id, properties.delivery_mode))
        # The allergy event overtakes the one published before it.
        assert got == [
            (json.loads(json.dumps(allergies)), 2, TRACEPARENT, amqp.HIGH_PRIORITY, allergies["id"], 2),
            (json.loads(json.dumps(registered)), 1, None, 0, registered["id"], 2),
        ]
    finally:
        amqp.topology_delete(channel, topology, retry_delays=settings.BUS_RETRY_DELAYS_SECONDS)
        connection.close()
