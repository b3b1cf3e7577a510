"""Dead letters, their replay (both transports) and outbox retention."""
import uuid
from datetime import timedelta

import pika
import pytest
from django.utils import timezone

from agent_bridge import events
from agent_bridge.delivery import Cause
from agent_bridge.models import OutboxEvent
from agent_bridge.outbox import dead_letter_record
from consumers import services
from consumers.models import DeadLetter
from consumers.tests.conftest import dead_event

pytestmark = pytest.mark.django_db


def test_recording_a_dead_letter_is_idempotent_and_keeps_the_first_failure_time() -> None:
    row = dead_event()
    first = DeadLetter.objects.get(event_id=row.event_id)

    dead_letter_record(
        cause=Cause.AGENT_PERMANENT, envelope=row.envelope, attempts=5, reason="again")

    again = DeadLetter.objects.get(event_id=row.event_id)
    assert DeadLetter.objects.count() == 1
    assert (again.attempts, again.reason, again.first_failed_at) == (5, "again", first.first_failed_at)
    assert again.last_failed_at >= first.last_failed_at
    assert OutboxEvent.objects.get(pk=row.pk).status == OutboxEvent.Status.DEAD


def test_embedded_replay_makes_the_outbox_row_due_again_and_deletes_the_dead_letter(settings) -> None:
    settings.AMQP_URL = ""
    row = dead_event()

    report = services.dead_letter_replay()

    row.refresh_from_db()
    assert report.replayed == 1 and not DeadLetter.objects.exists()
    assert (row.status, row.attempts, row.last_error) == (OutboxEvent.Status.PENDING, 0, "")
    assert row.available_at <= timezone.now()


def test_embedded_replay_recreates_a_missing_outbox_row(settings) -> None:
    settings.AMQP_URL = ""
    row = dead_event()
    OutboxEvent.objects.filter(pk=row.pk).delete()

    services.dead_letter_replay()

    again = OutboxEvent.objects.get(event_id=row.event_id)
    assert (again.status, again.type, again.uid) == (OutboxEvent.Status.PENDING, row.type, row.uid)


def test_dry_run_changes_nothing(settings) -> None:
    settings.AMQP_URL = ""
    rows = [dead_event(), dead_event(events.USER_DELETED)]

    report = services.dead_letter_replay(dry_run=True)

    assert [item.outcome for item in report.items] == [services.WOULD_REPLAY] * 2
    assert DeadLetter.objects.count() == 2
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {OutboxEvent.Status.DEAD}
    assert {item.event_id for item in report.items} == {str(r.event_id) for r in rows}


def test_filters_select_exactly_what_they_say(settings) -> None:
    settings.AMQP_URL = ""
    uid = uuid.uuid4()
    old_registered = dead_event(uid=uid, failed_ago=timedelta(hours=3))
    new_registered = dead_event(uid=uid)
    old_deleted = dead_event(events.USER_DELETED, failed_ago=timedelta(hours=3))
    other_user = dead_event(failed_ago=timedelta(hours=5))

    def selected(**filters) -> set[str]:
        return {item.event_id for item in services.dead_letter_replay(dry_run=True, **filters).items}

    assert selected(event_types=[events.USER_DELETED]) == {str(old_deleted.event_id)}
    assert selected(uids=[uid]) == {str(old_registered.event_id), str(new_registered.event_id)}
    assert selected(older_than=timedelta(hours=2)) == {
        str(old_registered.event_id), str(old_deleted.event_id), str(other_user.event_id)
    }
    assert selected(event_types=[events.USER_REGISTERED], older_than=timedelta(hours=2), uids=[uid]) == {
        str(old_registered.event_id)
    }
    # --limit takes the oldest failures first.
    assert selected(limit=1) == {str(other_user.event_id)}
    assert selected(limit=0) == set()

    services.dead_letter_replay(event_types=[events.USER_DELETED])
    assert set(DeadLetter.objects.values_list("event_id", flat=True)) == {
        old_registered.event_id, new_registered.event_id, other_user.event_id
    }


def test_a_stale_allergy_dead_letter_is_skipped_and_resolved(settings, verified_user) -> None:
    from allergies.models import AllergyProfile

    settings.AMQP_URL = ""
    AllergyProfile.objects.create(user=verified_user, revision=5, synced_revision=4)
    stale = dead_event(events.ALLERGIES_REPLACED, verified_user.uid, data={"revision": 3})
    current = dead_event(events.ALLERGIES_REPLACED, verified_user.uid, data={"revision": 5})

    dry = services.dead_letter_replay(dry_run=True)
    assert {i.event_id: i.outcome for i in dry.items} == {
        str(stale.event_id): services.WOULD_SKIP, str(current.event_id): services.WOULD_REPLAY
    }
    report = services.dead_letter_replay()

    assert (report.skipped, report.replayed) == (1, 1)
    assert not DeadLetter.objects.exists()
    stale.refresh_from_db()
    current.refresh_from_db()
    assert stale.status == OutboxEvent.Status.DELIVERED and "revision 4" in stale.last_error
    assert current.status == OutboxEvent.Status.PENDING


class FakeBroker:
    """Stands in for the confirmed publisher; `fail` makes the next publishes raise."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.published: list[dict] = []
        self.fail = fail
        self.before = None

    def __call__(self, envelope) -> None:
        if self.before:
            self.before(envelope)
        if self.fail:
            raise self.fail
        self.published.append(envelope)


def test_amqp_replay_publishes_then_deletes_the_dead_letter() -> None:
    row = dead_event()
    broker = FakeBroker()
    seen_during_publish = []
    broker.before = lambda env: seen_during_publish.append(
        (OutboxEvent.objects.get(pk=row.pk).status, DeadLetter.objects.filter(event_id=row.event_id).exists())
    )

    report = services.dead_letter_replay(publish=broker)

    row.refresh_from_db()
    assert report.replayed == 1
    assert broker.published == [row.envelope]
    # While the broker had not confirmed, the dead letter still existed.
    assert seen_during_publish == [(OutboxEvent.Status.PUBLISHED, True)]
    assert not DeadLetter.objects.exists()
    assert (row.status, row.attempts) == (OutboxEvent.Status.PUBLISHED, 0)


def test_amqp_replay_keeps_the_dead_letter_when_the_broker_nacks() -> None:
    row = dead_event()
    report = services.dead_letter_replay(publish=FakeBroker(fail=pika.exceptions.NackError([])))

    row.refresh_from_db()
    assert report.failed == 1 and not report.aborted
    assert DeadLetter.objects.filter(event_id=row.event_id).exists()
    assert row.status == OutboxEvent.Status.DEAD and row.attempts == 3


def test_amqp_replay_stops_when_the_broker_is_unreachable() -> None:
    dead_event(failed_ago=timedelta(minutes=2))
    dead_event()
    report = services.dead_letter_replay(publish=FakeBroker(fail=pika.exceptions.AMQPConnectionError("down")))

    assert report.aborted and len(report.items) == 1
    assert DeadLetter.objects.count() == 2
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {OutboxEvent.Status.DEAD}


def test_amqp_replay_keeps_a_dead_letter_that_failed_again_meanwhile() -> None:
    row = dead_event()
    broker = FakeBroker()
    # The consumer takes the replayed event at once and dead-letters it again before we delete.
    broker.before = lambda env: dead_letter_record(
        cause=Cause.AGENT_PERMANENT, envelope=env, attempts=1, reason="401 again")

    services.dead_letter_replay(publish=broker)

    assert DeadLetter.objects.get(event_id=row.event_id).reason == "401 again"
    assert OutboxEvent.objects.get(pk=row.pk).status == OutboxEvent.Status.DEAD


def test_a_malformed_broker_dead_letter_is_reported_not_replayed(settings) -> None:
    settings.AMQP_URL = ""
    DeadLetter.objects.create(
        event_id=uuid.uuid4(), type="", envelope={"id": "x", "type": "", "body": "garbage"}, attempts=1,
        reason="rejected", cause=Cause.MALFORMED, first_failed_at=timezone.now(), last_failed_at=timezone.now(),
    )
    report = services.dead_letter_replay()
    assert report.failed == 1 and DeadLetter.objects.count() == 1


def delivered(days_ago: float) -> OutboxEvent:
    return OutboxEvent.objects.create(
        type=events.USER_REGISTERED,
        status=OutboxEvent.Status.DELIVERED,
        delivered_at=timezone.now() - timedelta(days=days_ago),
    )


def test_prune_deletes_only_old_delivered_rows_in_batches(settings) -> None:
    settings.OUTBOX_RETENTION_DAYS = 7
    old = [delivered(8) for _ in range(5)]
    recent = delivered(1)
    old_pending = OutboxEvent.objects.create(type=events.USER_REGISTERED, occurred_at=timezone.now() - timedelta(30))
    old_dead = dead_event()
    OutboxEvent.objects.filter(pk=old_dead.pk).update(occurred_at=timezone.now() - timedelta(days=30))
    batches = []

    assert services.outbox_prune(dry_run=True) == 5
    assert OutboxEvent.objects.count() == 8
    assert services.outbox_prune(batch_size=2, on_batch=batches.append) == 5

    assert batches == [2, 4, 5]
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {recent.pk, old_pending.pk, old_dead.pk}
    assert not OutboxEvent.objects.filter(pk__in=[r.pk for r in old]).exists()


def test_prune_days_override() -> None:
    delivered(2)
    delivered(0.5)
    assert services.outbox_prune(older_than_days=1) == 1
    assert OutboxEvent.objects.count() == 1
