"""agent_bridge.transports.embedded: the outbox table as the queue (the consumer loop over it:
consumers/tests/test_runners.py)."""
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from agent_bridge import events
from agent_bridge.delivery import Cause, Outcome, Status
from agent_bridge.models import OutboxEvent, UserSyncLease
from agent_bridge.timing import bus_timing
from agent_bridge.transports.embedded import EmbeddedTransport
from consumers.models import DeadLetter
from consumers.tests.conftest import claim, registered

pytestmark = pytest.mark.django_db

PENDING, DELIVERED, DEAD = OutboxEvent.Status.PENDING, OutboxEvent.Status.DELIVERED, OutboxEvent.Status.DEAD


def test_an_expired_claim_is_taken_again(verified_user) -> None:
    row = registered(verified_user)
    first = claim()
    assert first.tag.pk == row.pk and not first.taken_over
    assert claim() is None  # claimed
    OutboxEvent.objects.filter(pk=row.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    again = claim()
    assert again.tag.pk == row.pk  # the first consumer died mid-event
    assert again.taken_over  # ... maybe with an Agent write sent and unanswered


def preferences_updates(uid: uuid.UUID, count: int) -> list[OutboxEvent]:
    return [OutboxEvent.objects.create(type=events.PREFERENCES_UPDATED, uid=uid, data={"revision": n + 1})
            for n in range(count)]


def test_a_claim_carries_the_envelope_attempt_and_trace_and_covers_the_users_later_events() -> None:
    uid = uuid.uuid4()
    head, *later = preferences_updates(uid, 3)
    OutboxEvent.objects.filter(pk=head.pk).update(attempts=1, traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    other_user = preferences_updates(uuid.uuid4(), 1)[0]

    delivery = claim()

    assert delivery.envelope["id"] == str(head.event_id) and delivery.attempt == 2
    assert delivery.traceparent == "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    assert (delivery.tag.pk, delivery.tag.covered) == (head.pk, [row.pk for row in later])
    assert claim().tag.pk == other_user.pk  # the covered rows are claimed too


def test_ack_settles_the_event_and_every_row_it_covered() -> None:
    rows = preferences_updates(uuid.uuid4(), 3)
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing(), worker_id="test-worker")

    transport.ack(transport.claim())

    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {DELIVERED}
    assert OutboxEvent.objects.filter(pk__in=[r.pk for r in rows], delivered_at__isnull=False).count() == 3


def test_a_retry_schedules_the_event_and_gives_the_covered_rows_back(settings) -> None:
    settings.BUS_RETRY_DELAYS_SECONDS = [30]
    head, later = preferences_updates(uuid.uuid4(), 2)
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing(), worker_id="test-worker")
    delivery = transport.claim()

    transport.retry_later(delivery, Outcome(Status.RETRY, Cause.AGENT_TRANSIENT, "AgentUnavailable 503", 30))

    head.refresh_from_db()
    later.refresh_from_db()
    assert (head.status, head.attempts, head.last_error, head.claimed_by) == (PENDING, 1, "AgentUnavailable 503", "")
    assert head.available_at > timezone.now() + timedelta(seconds=25)
    assert (later.status, later.claimed_by, later.attempts) == (PENDING, "", 0)
    assert claim().tag.pk == later.pk  # due now, no longer behind its head


def test_a_dead_letter_is_recorded_and_the_covered_rows_go_back() -> None:
    head, later = preferences_updates(uuid.uuid4(), 2)
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing(), worker_id="test-worker")
    delivery = transport.claim()

    transport.dead_letter(delivery, Outcome(Status.DEAD, Cause.AGENT_PERMANENT, "AgentAuthError 401"))

    dead = DeadLetter.objects.get()
    assert (dead.event_id, dead.attempts, dead.reason, dead.cause) == (
        head.event_id, 1, "AgentAuthError 401", Cause.AGENT_PERMANENT
    )
    assert OutboxEvent.objects.get(pk=head.pk).status == DEAD
    later.refresh_from_db()
    assert (later.status, later.claimed_by) == (PENDING, "")


def test_the_claim_takes_the_users_lease_and_the_settle_frees_it() -> None:
    from agent_bridge.leases import LeaseBusy, user_lease

    row = OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=uuid.uuid4())
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing())
    delivery = transport.claim()
    assert UserSyncLease.objects.get(uid=row.uid).owner == transport.worker_id
    with transport.ownership_for(delivery.envelope), pytest.raises(LeaseBusy), user_lease(row.uid, wait_seconds=0):
        pass  # a handler needs nothing more: nobody else can take the user meanwhile
    transport.ack(delivery)
    assert UserSyncLease.objects.get(uid=row.uid).owner == ""


def test_a_retry_and_a_dead_letter_free_the_users_lease_too(settings) -> None:
    settings.BUS_RETRY_DELAYS_SECONDS = [30]
    retried, dead = (OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=uuid.uuid4()) for _ in range(2))
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing())
    runs = transport.take(users=2, busy=set())
    outcomes = {retried.pk: Outcome(Status.RETRY, Cause.AGENT_TRANSIENT, "503", 30),
                dead.pk: Outcome(Status.DEAD, Cause.AGENT_PERMANENT, "401")}

    transport.settle([(run[0], outcomes[run[0].tag.pk]) for run in runs])

    assert set(UserSyncLease.objects.filter(uid__in=[retried.uid, dead.uid]).values_list("owner", flat=True)) == {""}
    assert OutboxEvent.objects.get(pk=dead.pk).status == DEAD
    assert OutboxEvent.objects.get(pk=retried.pk).attempts == 1


def test_closing_the_transport_frees_the_leases_its_claims_took() -> None:
    row = OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=uuid.uuid4())
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing())
    assert transport.claim().tag.pk == row.pk

    transport.close()

    assert UserSyncLease.objects.get(uid=row.uid).owner == ""


@pytest.mark.django_db(transaction=True)
def test_a_long_handler_keeps_its_claim_and_its_users_lease(settings) -> None:
    from django.db import connection

    settings.BUS_OWNERSHIP_SECONDS = 1.5  # renewed every 0.5 s
    row = OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=uuid.uuid4())
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing())
    delivery = transport.claim()
    first = UserSyncLease.objects.get(uid=row.uid).expires_at

    def handler() -> list:
        time.sleep(2.5)  # longer than the window: the claim and the lease must outlive it
        return EmbeddedTransport(stop=threading.Event(), timing=bus_timing(), worker_id="other").take(
            users=5, busy=set())

    try:
        assert transport.run(delivery, handler) == []  # nobody else could claim the user meanwhile
        assert UserSyncLease.objects.get(uid=row.uid).expires_at > first + timedelta(seconds=0.9)
    finally:
        connection.close()


def test_the_embedded_bus_claims_several_users_at_once_and_settles_them_in_one_statement() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conftest import _make_user

    users = [_make_user(email=f"u{n}@example.com", verified=True) for n in range(3)]
    rows = [registered(user) for user in users]
    second = OutboxEvent.objects.create(type=events.EMAIL_REQUESTED, uid=users[0].uid, data={"kind": "verify"})
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing())

    runs = transport.take(users=5, busy=set())

    assert sorted(run[0].tag.pk for run in runs) == [row.pk for row in rows]  # one head per user, the oldest
    assert transport.take(users=5, busy={str(u.uid) for u in users}) == []  # users in flight are not claimed
    with CaptureQueriesContext(connection) as queries:
        transport.settle([(run[0], Outcome(Status.DELIVERED)) for run in runs])
    # The rows and their users' leases: one statement on PostgreSQL, the leases' own on SQLite.
    assert len(queries.captured_queries) == (1 if connection.vendor == "postgresql" else 2)
    assert OutboxEvent.objects.filter(status=OutboxEvent.Status.DELIVERED).count() == 3
    assert [run[0].tag.pk for run in transport.take(users=5, busy=set())] == [second.pk]
