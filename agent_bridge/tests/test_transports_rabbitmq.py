"""agent_bridge.transports.rabbitmq: message bodies and properties (no broker), the batching of the
messages in hand into runs and the settling of a batch (on a recording channel), and what a
publish puts on a real broker (RabbitMQ only). The consumer loop over RabbitMQ:
tests/e2e/test_broker.py, tests/e2e/test_consumer_batching.py."""
import json
import threading
import time
import uuid

import pika
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agent_bridge import events
from agent_bridge.delivery import Cause, Outcome, Status
from agent_bridge.models import OutboxEvent
from agent_bridge.timing import bus_timing
from agent_bridge.transports import Delivery
from agent_bridge.transports import rabbitmq as amqp
from agent_bridge.transports.rabbitmq import RabbitTransport, Tag, envelope_from, runs_of
from consumers.models import DeadLetter
from consumers.runners import coalesce
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


@pytest.fixture
def one_partition(settings):
    """A topology of its own with one partition (and a 1 s retry delay queue) on the real broker:
    (connection, channel, topology); deleted afterwards."""
    settings.BUS_PREFIX = f"kairos-test-transport-{uuid.uuid4().hex[:8]}"
    settings.AMQP_PARTITIONS = 1
    topology = amqp.topology_from_settings()
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    channel = connection.channel()
    try:
        amqp.topology_declare(channel, topology, retry_delays=[1])
        yield connection, channel, topology
    finally:
        amqp.topology_delete(channel, topology, retry_delays=[1])
        connection.close()


@pytest.mark.rabbitmq
def test_a_published_event_reaches_its_partition_with_its_attempt_trace_and_priority(one_partition) -> None:
    _connection, channel, topology = one_partition
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


@pytest.mark.rabbitmq
def test_retries_published_in_one_batch_come_back_from_their_delay_queue_as_the_next_attempt(one_partition) -> None:
    connection, channel, topology = one_partition
    publisher = amqp.BatchPublisher(connection, connection.channel())
    retries = [envelope(events.PREFERENCES_UPDATED, uuid.uuid4()) for _ in range(3)]

    answers = publisher.publish_rollback_unsafe(topology, [
        amqp.Publication(e, attempt=2, traceparent=TRACEPARENT, exchange=topology.retry_queue(1)) for e in retries])

    assert answers == [amqp.Confirm.ACKED] * 3 and publisher.waits == 1
    assert channel.basic_get(topology.work_queue(0), auto_ack=True)[0] is None  # parked, not yet due
    got = []
    deadline = time.monotonic() + 10
    while len(got) < 3 and time.monotonic() < deadline:
        method, properties, body = channel.basic_get(topology.work_queue(0), auto_ack=True)
        if method is None:
            connection.sleep(0.1)
            continue
        got.append((envelope_from(body)["id"], amqp.attempt_of(properties), amqp.traceparent_of(properties)))
    assert sorted(got) == sorted((e["id"], 2, TRACEPARENT) for e in retries)


@pytest.mark.rabbitmq
def test_batch_confirms_are_matched_to_their_messages_by_delivery_tag(settings) -> None:
    # The broker decides how it groups its acks; here the frames are fed by hand to show each
    # grouping is read right: a `multiple` ack answers every earlier open tag, a nack only its
    # own, and a returned (unroutable) message stays returned when its ack follows.
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    try:
        publisher = amqp.BatchPublisher(connection, connection.channel())
        publisher._open = {tag: None for tag in range(1, 7)}
        publisher._tag_of_message = {"returned": 2}

        def frame(method) -> pika.frame.Method:
            return pika.frame.Method(1, method)

        publisher._on_return(None, None, pika.BasicProperties(message_id="returned"), b"")
        publisher._on_confirm(frame(pika.spec.Basic.Nack(delivery_tag=4, multiple=False)))
        publisher._on_confirm(frame(pika.spec.Basic.Ack(delivery_tag=5, multiple=True)))
        assert publisher._open == {
            1: amqp.Confirm.ACKED, 2: amqp.Confirm.RETURNED, 3: amqp.Confirm.ACKED,
            4: amqp.Confirm.NACKED, 5: amqp.Confirm.ACKED, 6: None,
        }
        publisher._on_confirm(frame(pika.spec.Basic.Nack(delivery_tag=6, multiple=True)))
        assert publisher._open[6] is amqp.Confirm.NACKED
        assert publisher._open[1] is amqp.Confirm.ACKED  # answered once, never overwritten
    finally:
        connection.close()


# --- runs and batches (no broker) ----------------------------------------------------------

def message(uid: str | None, event_type: str = events.PREFERENCES_UPDATED, *, tag: int, partition: int = 0,
            attempt: int = 1, event_id: str | None = None) -> Delivery:
    envelope = {"id": event_id or str(uuid.uuid4()), "type": event_type, "schema": 2, "uid": uid,
                "occurred_at": "2026-01-01T00:00:00+00:00", "data": {"revision": 1}}
    return Delivery(envelope=envelope, attempt=attempt, tag=Tag(tag, partition))


A, B, C = (str(uuid.uuid4()) for _ in range(3))


def test_runs_group_each_users_messages_in_order_and_put_allergy_users_first() -> None:
    inbox = [message(A, tag=1), message(B, tag=2), message(A, events.EMAIL_REQUESTED, tag=3),
             message(C, events.ALLERGIES_REPLACED, tag=4), message(A, tag=5)]

    runs, kept = runs_of(inbox, users=5, busy=set())

    assert [[m.tag.delivery_tag for m in run] for run in runs] == [[4], [1, 3, 5], [2]]
    assert kept == []


def test_runs_keep_busy_users_and_users_past_the_limit_for_later() -> None:
    inbox = [message(A, tag=1), message(B, tag=2), message(C, tag=3), message(B, tag=4), message(C, tag=5)]

    runs, kept = runs_of(inbox, users=1, busy={A})

    assert [[m.tag.delivery_tag for m in run] for run in runs] == [[2, 4]]
    assert [m.tag.delivery_tag for m in kept] == [1, 3, 5]  # in order, for the next take


def test_the_free_handlers_go_to_users_with_an_allergy_event_first() -> None:
    inbox = [message(A, tag=1), message(A, tag=2), message(B, events.ALLERGIES_REPLACED, tag=3)]
    runs, kept = runs_of(inbox, users=1, busy=set())
    assert [[m.tag.delivery_tag for m in run] for run in runs] == [[3]] and [m.tag.delivery_tag for m in kept] == [1, 2]


def test_runs_skip_the_partition_being_handed_over() -> None:
    inbox = [message(A, tag=1, partition=0), message(B, tag=2, partition=1)]
    runs, kept = runs_of(inbox, users=5, busy=set(), skip_partition=1)
    assert [[m.tag.delivery_tag for m in run] for run in runs] == [[1]] and [m.tag.delivery_tag for m in kept] == [2]


class RecordingChannel:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.calls.append(("ack", tag, multiple))

    def basic_publish(self, exchange, routing_key, body, properties=None, mandatory=False) -> None:
        self.calls.append(("publish", exchange, properties.headers["x-kairos-attempt"]))


class RecordingPublisher:
    """A BatchPublisher's interface: records each batch (one wait for its confirms) and answers `answer`."""

    def __init__(self, answer: amqp.Confirm = amqp.Confirm.ACKED) -> None:
        self.calls: list[tuple] = []
        self.waits = 0
        self.answer = answer

    def publish_rollback_unsafe(self, topology, publications) -> list:
        self.waits += 1
        self.calls += [("publish", p.exchange or topology.exchange, p.attempt) for p in publications]
        return [self.answer] * len(publications)


def transport_holding(deliveries: list[Delivery], *, unacked_too: tuple[int, ...] = ()) -> RabbitTransport:
    transport = RabbitTransport(stop=threading.Event(), timing=bus_timing())
    transport.channel, transport.publisher = RecordingChannel(), RecordingPublisher()
    transport._unacked = dict.fromkeys(sorted({d.tag.delivery_tag for d in deliveries} | set(unacked_too)))
    transport._in_hand = {d.tag.delivery_tag: d for d in deliveries}
    return transport


def published(deliveries: list[Delivery]) -> None:
    for d in deliveries:
        OutboxEvent.objects.create(event_id=d.envelope["id"], type=d.envelope["type"], uid=d.envelope["uid"],
                                   data={"revision": 1}, status=OutboxEvent.Status.PUBLISHED)


@pytest.mark.django_db
def test_a_batch_is_settled_in_one_statement_and_acked_at_once_coalesced_messages_included() -> None:
    batch = [message(A, tag=1), message(A, tag=2), message(A, tag=3), message(B, events.ALLERGIES_REPLACED, tag=4)]
    published(batch)
    calls = [*coalesce(batch[:3]), batch[3]]
    transport = transport_holding(batch)

    with CaptureQueriesContext(connection) as queries:
        transport.settle([(call, Outcome(Status.DELIVERED)) for call in calls])

    assert len(queries.captured_queries) == 1
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {OutboxEvent.Status.DELIVERED}
    assert transport.channel.calls == [("ack", 4, True)]  # nothing earlier is left unacknowledged
    assert transport._in_hand == {} and transport._unacked == {}


@pytest.mark.django_db
def test_acks_go_one_by_one_while_an_earlier_message_waits_in_the_inbox() -> None:
    batch = [message(B, tag=2), message(C, tag=3)]
    published(batch)
    transport = transport_holding(batch, unacked_too=(1,))  # tag 1: a busy user's message, not yet taken

    transport.settle([(d, Outcome(Status.SKIPPED)) for d in batch])

    assert transport.channel.calls == [("ack", 2, False), ("ack", 3, False)]
    assert list(transport._unacked) == [1]


@pytest.mark.django_db
def test_acks_wait_for_an_earlier_message_in_hand_and_then_go_as_one() -> None:
    first, later = message(A, tag=1), [message(B, tag=2), message(C, tag=3)]
    published([first, *later])
    transport = transport_holding([first, *later])  # all three taken; tag 1's handler still runs

    transport.settle([(d, Outcome(Status.DELIVERED)) for d in later])
    assert transport.channel.calls == []  # settled in the database, acked with tag 1
    transport.settle([(first, Outcome(Status.DELIVERED))])

    assert transport.channel.calls == [("ack", 3, True)]
    assert transport._unacked == {} and transport._ack_deferred == set()


@pytest.mark.django_db
def test_held_back_acks_go_one_by_one_past_the_limit(settings) -> None:
    settings.AMQP_PREFETCH = 4  # at most 2 held back
    first, later = message(A, tag=1), [message(B, tag=2), message(C, tag=3), message(str(uuid.uuid4()), tag=4)]
    published([first, *later])
    transport = transport_holding([first, *later])

    for delivery in later:
        transport.settle([(delivery, Outcome(Status.DELIVERED))])

    assert transport.channel.calls == [("ack", 2, False), ("ack", 3, False), ("ack", 4, False)]
    assert list(transport._unacked) == [1]


@pytest.mark.django_db
def test_a_failed_coalesced_call_retries_or_dead_letters_every_message_it_stood_for(settings) -> None:
    settings.BUS_RETRY_DELAYS_SECONDS = [5]
    retried, dead = [message(A, tag=1), message(A, tag=2)], [message(B, tag=3), message(B, tag=4)]
    published(retried + dead)
    transport = transport_holding(retried + dead)
    [retry_call], [dead_call] = coalesce(retried), coalesce(dead)

    transport.settle([
        (retry_call, Outcome(Status.RETRY, Cause.AGENT_TRANSIENT, "503", retry_after=5)),
        (dead_call, Outcome(Status.DEAD, Cause.AGENT_PERMANENT, "401")),
    ])

    assert transport.publisher.calls == [("publish", transport.topology.retry_queue(5), 2)] * 2
    assert transport.publisher.waits == 1  # the retries of one settle wait once for their confirms
    rows = {str(r.event_id): r for r in OutboxEvent.objects.all()}
    assert {(rows[d.envelope["id"]].status, rows[d.envelope["id"]].attempts) for d in retried} == {
        (OutboxEvent.Status.PUBLISHED, 1)}
    assert {str(e) for e in DeadLetter.objects.values_list("event_id", flat=True)} == {
        d.envelope["id"] for d in dead}
    assert transport.channel.calls == [("ack", 4, True)]


@pytest.mark.django_db
def test_a_retry_the_broker_refuses_leaves_the_whole_settle_unacked(settings) -> None:
    settings.BUS_RETRY_DELAYS_SECONDS = [5]
    delivered, retried = message(A, tag=1), message(B, tag=2)
    published([delivered, retried])
    transport = transport_holding([delivered, retried])
    transport.publisher = RecordingPublisher(amqp.Confirm.NACKED)

    with pytest.raises(amqp.RetryNotParked):
        transport.settle([(delivered, Outcome(Status.DELIVERED)),
                          (retried, Outcome(Status.RETRY, Cause.AGENT_TRANSIENT, "503", retry_after=5))])

    assert transport.channel.calls == []  # both come again (the delivered one is recorded: a duplicate at most)
    assert list(transport._unacked) == [1, 2]


@pytest.mark.django_db
def test_the_messages_a_consumer_holds_keep_their_settle_deadline_while_they_wait(settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    settings.BUS_REPUBLISH_AFTER_SECONDS = 900
    running, waiting = message(A, tag=1), message(A, tag=2)  # the second waits behind the first
    published([running, waiting])
    OutboxEvent.objects.update(available_at=timezone.now() + timedelta(seconds=1))
    transport = transport_holding([running])
    transport._inbox = [waiting]

    transport._renew_held()  # what RENEWER runs every renew_seconds while the transport is open

    assert all(at > timezone.now() + timedelta(seconds=800) for at in
               OutboxEvent.objects.values_list("available_at", flat=True))


def test_a_message_redelivered_by_the_broker_is_a_delivery_taken_over() -> None:
    """RabbitMQ redelivers what a consumer held when its connection went (a kill mid-handler):
    the consumer then reads the user back before handling it (consumers.processing)."""
    transport = RabbitTransport(stop=threading.Event(), timing=bus_timing())
    body = json.dumps(envelope(events.ALLERGIES_REPLACED, uuid.uuid4())).encode()
    for tag, redelivered in ((1, False), (2, True)):
        method = pika.spec.Basic.Deliver(consumer_tag="c", delivery_tag=tag, redelivered=redelivered)
        transport._on_message(None, method, pika.BasicProperties(headers={"x-kairos-attempt": 1}), body)
    assert [(d.tag.delivery_tag, d.taken_over) for d in transport._inbox] == [(1, False), (2, True)]
