"""The relay against a real RabbitMQ: the outbox, not the broker, is the record of what is owed."""
import threading
import uuid
from datetime import timedelta

import pika
import pytest
from django.conf import settings
from django.utils import timezone

from agent_bridge import events
from agent_bridge.models import OutboxEvent
from agent_bridge.transports import rabbitmq as amqp
from consumers.runners import Relay

pytestmark = [pytest.mark.django_db, pytest.mark.rabbitmq]


@pytest.fixture
def channel(settings):
    settings.BUS_PREFIX = f"kairos-relay-test-{uuid.uuid4().hex[:8]}"
    settings.BUS_REPUBLISH_AFTER_SECONDS = 60
    settings.AMQP_PARTITIONS = 4
    topology = amqp.topology_from_settings()
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    channel = connection.channel()
    amqp.topology_declare(channel, topology)
    yield channel
    if channel.is_open:
        amqp.topology_delete(channel, topology, retry_delays=settings.BUS_RETRY_DELAYS_SECONDS)
    amqp.connection_close_quietly(connection)


@pytest.fixture
def publisher(channel) -> "RecordingPublisher":
    return RecordingPublisher(channel.connection, channel)


class RecordingPublisher(amqp.BatchPublisher):
    """Logs each publish and each wait for the broker, in order."""

    def __init__(self, connection, channel) -> None:
        self.log: list[str] = []
        super().__init__(connection, channel)
        self.log.clear()  # the confirm.select wait
        publish = channel.basic_publish

        def recorded(*args, **kwargs):
            self.log.append("publish")
            return publish(*args, **kwargs)

        channel.basic_publish = recorded

    def _wait_until(self, done) -> None:
        self.log.append("wait")
        super()._wait_until(done)


def handed_over(user, *, overdue: bool) -> OutboxEvent:
    offset = timedelta(seconds=-1 if overdue else 30)
    return OutboxEvent.objects.create(
        type=events.USER_REGISTERED,
        uid=user.uid,
        status=OutboxEvent.Status.PUBLISHED,
        attempts=2,
        available_at=timezone.now() + offset,
    )


def work_queue_messages(channel) -> list[tuple[str, int]]:
    found = []
    for queue in amqp.topology_from_settings().work_queues:
        while True:
            method, properties, _body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                break
            found.append((properties.message_id, amqp.attempt_of(properties)))
    return found


def test_an_event_nobody_settled_in_time_is_published_again(channel, publisher, verified_user) -> None:
    event = handed_over(verified_user, overdue=True)

    assert Relay(stop=threading.Event()).publish_batch(publisher) == 1

    assert work_queue_messages(channel) == [(str(event.event_id), 3)]
    event.refresh_from_db()
    assert event.status == OutboxEvent.Status.PUBLISHED
    assert event.available_at > timezone.now() + timedelta(seconds=settings.BUS_REPUBLISH_AFTER_SECONDS - 5)


def test_an_event_still_within_its_deadline_or_settled_is_left_alone(channel, publisher, verified_user) -> None:
    handed_over(verified_user, overdue=False)
    delivered = handed_over(verified_user, overdue=True)
    OutboxEvent.objects.filter(pk=delivered.pk).update(status=OutboxEvent.Status.DELIVERED)

    assert Relay(stop=threading.Event()).publish_batch(publisher) == 0
    assert work_queue_messages(channel) == []


def test_a_first_publish_sets_the_settle_deadline(channel, publisher, verified_user) -> None:
    event = OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=verified_user.uid)

    assert Relay(stop=threading.Event()).publish_batch(publisher) == 1

    event.refresh_from_db()
    assert event.status == OutboxEvent.Status.PUBLISHED
    assert event.available_at > timezone.now() + timedelta(seconds=settings.BUS_REPUBLISH_AFTER_SECONDS - 5)


def test_overdue_events_wait_while_the_work_queue_still_has_a_backlog(channel, publisher, verified_user) -> None:
    handed_over(verified_user, overdue=True)
    queued = OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=verified_user.uid)
    publisher.publish_rollback_unsafe(amqp.topology_from_settings(), [amqp.Publication(queued.envelope)])

    assert Relay(stop=threading.Event()).republish_unsettled(publisher) == 0
    assert [message_id for message_id, _ in work_queue_messages(channel)] == [str(queued.event_id)]


def test_a_delayed_event_stays_in_the_outbox_until_it_is_due(channel, publisher, verified_user) -> None:
    # A read-back step is scheduled for later: the broker must not get it early.
    later = OutboxEvent.objects.create(
        type=events.AGENT_READ_BACK_DUE, uid=verified_user.uid, available_at=timezone.now() + timedelta(seconds=30)
    )
    relay = Relay(stop=threading.Event())
    assert relay.publish_batch(publisher) == 0
    assert work_queue_messages(channel) == []

    OutboxEvent.objects.filter(pk=later.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    assert relay.publish_batch(publisher) == 1
    assert [message_id for message_id, _ in work_queue_messages(channel)] == [str(later.event_id)]


def pending_events(user, count: int) -> list[OutboxEvent]:
    return [OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=user.uid) for _ in range(count)]


def test_a_batch_is_written_whole_before_one_wait_for_its_confirms(channel, publisher, verified_user) -> None:
    rows = pending_events(verified_user, 25)

    assert Relay(stop=threading.Event()).publish_batch(publisher) == 25

    # Blocking confirm mode would wait after every publish (["publish", "wait"] * 25).
    assert publisher.log == ["publish"] * 25 + ["wait"]
    assert publisher.waits == 1
    assert OutboxEvent.objects.filter(status=OutboxEvent.Status.PUBLISHED).count() == 25
    assert sorted(message_id for message_id, _ in work_queue_messages(channel)) == sorted(
        str(row.event_id) for row in rows
    )


def uid_in_partition(topology, partition: int) -> uuid.UUID:
    return next(uid for uid in iter(uuid.uuid4, None) if topology.partition_of(str(uid)) == partition)


def test_refused_and_unroutable_messages_stay_pending_while_the_rest_of_the_batch_is_published(
    channel, publisher
) -> None:
    topology = amqp.topology_from_settings()
    assert topology.partitions >= 3
    fine, refused, unroutable = (uid_in_partition(topology, n) for n in range(3))
    # The broker nacks what a full reject-publish queue would take (a real nack, not a double)...
    refusing = f"{settings.BUS_PREFIX}.refusing"
    channel.queue_declare(refusing, durable=True, arguments={"x-max-length": 0, "x-overflow": "reject-publish"})
    channel.queue_bind(refusing, topology.exchange, routing_key="p1.#")
    # ...and returns what no queue is bound for.
    channel.queue_unbind(topology.work_queue(2), topology.exchange, routing_key="p2.#")
    rows = {
        uid: [OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=uid) for _ in range(3)]
        for uid in (fine, refused, unroutable)
    }

    relay = Relay(stop=threading.Event())
    try:
        assert relay.publish_batch(publisher) == 3
    finally:
        channel.queue_delete(refusing)
    assert publisher.waits == 1
    statuses = {uid: {row.status for row in OutboxEvent.objects.filter(uid=uid)} for uid in rows}
    assert statuses == {
        fine: {OutboxEvent.Status.PUBLISHED},
        refused: {OutboxEvent.Status.PENDING},
        unroutable: {OutboxEvent.Status.PENDING},
    }
    # Offered again after the first retry delay, not in a tight loop of refusals.
    assert all(row.available_at > timezone.now() for row in OutboxEvent.objects.filter(uid__in=[refused, unroutable]))
    assert relay.publish_batch(publisher) == 0
    assert publisher.waits == 1

    OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).update(available_at=timezone.now())
    channel.queue_bind(topology.work_queue(2), topology.exchange, routing_key="p2.#")
    assert relay.publish_batch(publisher) == 6  # the broker takes them now: nothing was lost
    assert not OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).exists()


def test_a_batch_cut_off_before_its_confirms_stays_pending_and_is_published_again(
    channel, publisher, verified_user, settings
) -> None:
    rows = pending_events(verified_user, 10)
    # The relay dies after writing the batch, before it has read any confirm.
    class Crash(Exception):
        pass

    def crash(done) -> None:
        raise Crash

    publisher._wait_until = crash
    with pytest.raises(Crash):
        Relay(stop=threading.Event()).publish_batch(publisher)
    publisher.connection.close()
    assert OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING).count() == 10

    # The next session publishes them all (again, for those the broker had: duplicates are fine).
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    try:
        fresh = amqp.BatchPublisher(connection, connection.channel())
        assert Relay(stop=threading.Event()).publish_batch(fresh) == 10
        assert {message_id for message_id, _ in work_queue_messages(fresh.channel)} == {
            str(row.event_id) for row in rows
        }
        topology = amqp.topology_from_settings()
        amqp.topology_delete(fresh.channel, topology, retry_delays=settings.BUS_RETRY_DELAYS_SECONDS)
    finally:
        amqp.connection_close_quietly(connection)
