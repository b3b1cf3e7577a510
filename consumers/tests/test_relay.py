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
    topology = amqp.topology_from_settings()
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    channel = connection.channel()
    amqp.topology_declare(channel, topology)
    channel.confirm_delivery()
    yield channel
    amqp.topology_delete(channel, topology, retry_delays=settings.BUS_RETRY_DELAYS_SECONDS)
    connection.close()


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


def test_an_event_nobody_settled_in_time_is_published_again(channel, verified_user) -> None:
    event = handed_over(verified_user, overdue=True)

    assert Relay(stop=threading.Event()).publish_batch(channel) == 1

    assert work_queue_messages(channel) == [(str(event.event_id), 3)]
    event.refresh_from_db()
    assert event.status == OutboxEvent.Status.PUBLISHED
    assert event.available_at > timezone.now() + timedelta(seconds=settings.BUS_REPUBLISH_AFTER_SECONDS - 5)


def test_an_event_still_within_its_deadline_or_settled_is_left_alone(channel, verified_user) -> None:
    handed_over(verified_user, overdue=False)
    delivered = handed_over(verified_user, overdue=True)
    OutboxEvent.objects.filter(pk=delivered.pk).update(status=OutboxEvent.Status.DELIVERED)

    assert Relay(stop=threading.Event()).publish_batch(channel) == 0
    assert work_queue_messages(channel) == []


def test_a_first_publish_sets_the_settle_deadline(channel, verified_user) -> None:
    event = OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=verified_user.uid)

    assert Relay(stop=threading.Event()).publish_batch(channel) == 1

    event.refresh_from_db()
    assert event.status == OutboxEvent.Status.PUBLISHED
    assert event.available_at > timezone.now() + timedelta(seconds=settings.BUS_REPUBLISH_AFTER_SECONDS - 5)


def test_overdue_events_wait_while_the_work_queue_still_has_a_backlog(channel, verified_user) -> None:
    handed_over(verified_user, overdue=True)
    queued = OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=verified_user.uid)
    amqp.envelope_publish_rollback_unsafe(channel, amqp.topology_from_settings(), queued.envelope)

    assert Relay(stop=threading.Event()).republish_unsettled(channel) == 0
    assert [message_id for message_id, _ in work_queue_messages(channel)] == [str(queued.event_id)]


def test_a_delayed_event_stays_in_the_outbox_until_it_is_due(channel, verified_user) -> None:
    # A read-back step is scheduled for later: the broker must not get it early.
    later = OutboxEvent.objects.create(
        type=events.AGENT_READ_BACK_DUE, uid=verified_user.uid, available_at=timezone.now() + timedelta(seconds=30)
    )
    relay = Relay(stop=threading.Event())
    assert relay.publish_batch(channel) == 0
    assert work_queue_messages(channel) == []

    OutboxEvent.objects.filter(pk=later.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    assert relay.publish_batch(channel) == 1
    assert [message_id for message_id, _ in work_queue_messages(channel)] == [str(later.event_id)]
