"""The outbox owner's transitions (agent_bridge.outbox): each state change, written one way."""
import functools
import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from agent_bridge import events, leases
from agent_bridge import outbox as owner
from agent_bridge.delivery import Cause
from agent_bridge.leases import LeaseBusy, user_lease
from agent_bridge.models import OutboxEvent, UserSyncLease
from agent_bridge.timing import bus_timing
from consumers.models import DeadLetter

pytestmark = pytest.mark.django_db

PENDING, PUBLISHED, DELIVERED, DEAD = (OutboxEvent.Status.PENDING, OutboxEvent.Status.PUBLISHED,
                                       OutboxEvent.Status.DELIVERED, OutboxEvent.Status.DEAD)


def row(**fields) -> OutboxEvent:
    return OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=uuid.uuid4(), **fields)


def soon(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def test_add_writes_the_declared_payload_and_its_schema() -> None:
    from django.db import transaction

    with transaction.atomic():
        event = owner.outbox_event_add(uid=uuid.uuid4(), payload=events.AllergiesReplaced(revision=4))
    assert (event.type, event.schema, event.data) == ("allergies.replaced", 2, {"revision": 4})
    assert event.envelope["schema"] == 2


def test_claim_takes_a_due_row_once_for_one_ownership_window(settings) -> None:
    settings.BUS_OWNERSHIP_SECONDS = 9
    timing = bus_timing()
    event = row()
    row(available_at=soon(60))  # waiting for a delayed retry

    [claimed] = owner.outbox_claim_users(worker_id="a", timing=timing, users=5)
    assert claimed.event.pk == event.pk and claimed.event.claimed_by == "a"
    assert soon(8) < claimed.event.claimed_until < soon(10)
    assert not claimed.taken_over
    assert owner.outbox_claim_users(worker_id="b", timing=timing, users=5) == []
    # "a" died: its claim and the user's lease it took lapse together.
    OutboxEvent.objects.filter(pk=event.pk).update(claimed_until=soon(-1))
    UserSyncLease.objects.filter(uid=event.uid).update(expires_at=soon(-1))
    [again] = owner.outbox_claim_users(worker_id="b", timing=timing, users=5)
    assert again.event.pk == event.pk
    assert again.taken_over, "a's handler may have died with an Agent write unanswered"
    assert UserSyncLease.objects.get(uid=event.uid).owner == "b"  # taken over with the claim


def test_a_row_given_back_for_a_retry_is_not_taken_over_when_claimed_again(settings) -> None:
    timing = bus_timing()
    event = row()
    [claimed] = owner.outbox_claim_users(worker_id="a", timing=timing, users=5)
    owner.outbox_schedule_retry(event_id=claimed.event.event_id, attempt=1, delay=0, error="503", timing=timing)
    leases.user_leases_free(uids=[event.uid], owner="a")
    [again] = owner.outbox_claim_users(worker_id="b", timing=timing, users=5)
    assert again.event.pk == event.pk and not again.taken_over


def test_no_consumer_claims_a_user_another_consumer_has_claimed_until_that_one_settles() -> None:
    timing = bus_timing()
    uid = uuid.uuid4()
    first = OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=uid)
    then = OutboxEvent.objects.create(type=events.EMAIL_REQUESTED, uid=uid, data={"kind": "verify"})
    other = row()

    [mine] = owner.outbox_claim_users(worker_id="a", timing=timing, users=1)
    assert mine.event.pk == first.pk and UserSyncLease.objects.get(uid=uid).owner == "a"
    # "b" takes the other user, not the next event of the user "a" works on.
    assert [c.event.pk for c in owner.outbox_claim_users(worker_id="b", timing=timing, users=5)] == [other.pk]

    owner.outbox_settle_delivered(pks=[first.pk], free_users=[uid], owner="a")

    assert UserSyncLease.objects.get(uid=uid).owner == ""
    assert [c.event.pk for c in owner.outbox_claim_users(worker_id="b", timing=timing, users=5)] == [then.pk]


def test_a_user_whose_lease_another_consumer_holds_is_not_claimed_until_it_lapses() -> None:
    timing = bus_timing()
    held = row()
    free = row()
    UserSyncLease.objects.create(uid=held.uid, owner="alive:1", expires_at=soon(30))

    assert [c.event.pk for c in owner.outbox_claim_users(worker_id="a", timing=timing, users=5)] == [free.pk]
    assert OutboxEvent.objects.get(pk=held.pk).claimed_by == ""
    UserSyncLease.objects.filter(uid=held.uid).update(expires_at=soon(-1))  # its holder died
    assert [c.event.pk for c in owner.outbox_claim_users(worker_id="a", timing=timing, users=5)] == [held.pk]


def test_a_claim_of_several_users_their_leases_and_coalesced_rows_is_one_statement_on_postgresql(
    orm_compilations_refused,
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "postgresql":
        pytest.skip("SQLite has no writing CTEs: the claim is several statements there")
    uid, busy = uuid.uuid4(), uuid.uuid4()
    prefs = [OutboxEvent.objects.create(type=events.PREFERENCES_UPDATED, uid=uid, data={"revision": n})
             for n in range(3)]
    OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=busy)
    others = [row() for _ in range(3)]
    no_user = OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=None)

    with orm_compilations_refused(), CaptureQueriesContext(connection) as queries:
        claims = owner.outbox_claim_users(worker_id="a", timing=bus_timing(), users=10, exclude_uids=[str(busy)])

    assert len(queries.captured_queries) == 1
    assert [(c.event.pk, c.covered) for c in claims] == [
        (prefs[0].pk, [prefs[1].pk, prefs[2].pk]), *((o.pk, []) for o in others), (no_user.pk, [])]
    assert set(UserSyncLease.objects.filter(owner="a").values_list("uid", flat=True)) == {
        uid, *(o.uid for o in others)}
    assert not UserSyncLease.objects.filter(uid=busy).exists()


@pytest.mark.django_db(transaction=True)
def test_consumers_claiming_at_once_never_hold_one_user_together() -> None:
    """Two consumers claim, hold and settle in a loop over the same users' events: each user is held by at most
    one of them at any moment (its lease, taken by the claim itself), and every event is delivered once."""
    from django.db import connections

    timing = bus_timing()
    users = [uuid.uuid4() for _ in range(6)]
    kinds = [(events.USER_REGISTERED, {}), (events.EMAIL_REQUESTED, {"kind": "verify"})]
    for n in range(4):
        for uid in users:
            event_type, data = kinds[n % 2]
            OutboxEvent.objects.create(type=event_type, uid=uid, data=data)
    holders: dict[uuid.UUID, set[str]] = {uid: set() for uid in users}
    overlaps: list[uuid.UUID] = []
    delivered: list[int] = []
    lock = threading.Lock()

    def on_sqlite_retry_while_locked(call):
        # The SQLite test database is shared-cache in memory, whose table locks fail at once
        # ("database table is locked") instead of waiting out the busy timeout as a file does.
        while True:
            try:
                return call()
            except OperationalError as exc:
                if connection.vendor != "sqlite" or "locked" not in str(exc):
                    raise
                time.sleep(0.005)

    def consumer(name: str) -> None:
        try:
            idle = 0
            while idle < 20:
                claims = on_sqlite_retry_while_locked(
                    functools.partial(owner.outbox_claim_users, worker_id=name, timing=timing, users=3)
                )
                idle = 0 if claims else idle + 1
                with lock:
                    for c in claims:
                        if holders[c.event.uid]:
                            overlaps.append(c.event.uid)
                        holders[c.event.uid].add(name)
                time.sleep(0.01)  # the handlers
                pks = [pk for c in claims for pk in (c.event.pk, *c.covered)]
                with lock:  # let go first: the settle frees the users for the other consumer
                    for c in claims:
                        holders[c.event.uid].discard(name)
                    delivered.extend(pks)
                on_sqlite_retry_while_locked(functools.partial(
                    owner.outbox_settle_delivered, pks=pks, free_users=[c.event.uid for c in claims], owner=name
                ))
                time.sleep(0.005 if claims else 0.02)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=consumer, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert overlaps == []
    assert sorted(delivered) == sorted(OutboxEvent.objects.values_list("pk", flat=True))


def test_a_claim_is_renewed_only_by_its_holder() -> None:
    timing = bus_timing()
    event = row(claimed_by="a", claimed_until=soon(1))
    owner.outbox_claim_renew(pks=[event.pk], worker_id="b", timing=timing)
    event.refresh_from_db()
    assert event.claimed_until < soon(2)
    owner.outbox_claim_renew(pks=[event.pk], worker_id="a", timing=timing)
    event.refresh_from_db()
    assert event.claimed_until > soon(timing.ownership_seconds - 1)


def test_retry_later_is_one_transition_for_both_transports(settings) -> None:
    settings.BUS_REPUBLISH_AFTER_SECONDS = 900
    timing = bus_timing()
    embedded = row(claimed_by="a", claimed_until=soon(10))
    relayed = row(status=PUBLISHED)
    for event in (embedded, relayed):
        owner.outbox_schedule_retry(event_id=event.event_id, attempt=2, error="503", delay=30, timing=timing)
        event.refresh_from_db()
        assert (event.attempts, event.last_error, event.claimed_by, event.claimed_until) == (2, "503", "", None)
    # Embedded: due again after the delay. RabbitMQ: the broker holds it; settle by delay + republish.
    assert soon(28) < embedded.available_at < soon(32)
    assert soon(928) < relayed.available_at < soon(932)


def test_publish_settle_and_republish() -> None:
    timing = bus_timing()
    first, second = row(), row()
    owner.outbox_mark_published(pks=[first.pk, second.pk], timing=timing)
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {PUBLISHED}
    assert owner.outbox_overdue_published(limit=10) == []
    OutboxEvent.objects.filter(pk=first.pk).update(available_at=soon(-1))
    assert [e.pk for e in owner.outbox_overdue_published(limit=10)] == [first.pk]
    owner.outbox_mark_republished(pk=first.pk, timing=timing)
    assert owner.outbox_overdue_published(limit=10) == []
    owner.outbox_settle_delivered(event_ids=[first.event_id, second.event_id])
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {DELIVERED}


def test_settling_by_event_id_and_by_row_marks_delivered_once_and_clears_the_claim_and_error() -> None:
    by_id = row(status=PUBLISHED, last_error="AGENT_TIMEOUT", attempts=1)
    by_pk = row(claimed_by="a", claimed_until=soon(30), last_error="late")
    earlier = soon(-60)
    done = row(status=DELIVERED, delivered_at=earlier)
    untouched = row(status=PUBLISHED, last_error="x")

    owner.outbox_settle_delivered(event_ids=[str(by_id.event_id), done.event_id], pks=[by_pk.pk])
    owner.outbox_settle_delivered()  # nothing to settle: no statement

    for event in (by_id, by_pk):
        event.refresh_from_db()
        assert (event.status, event.claimed_by, event.claimed_until, event.last_error) == (DELIVERED, "", None, "")
        assert soon(-5) < event.delivered_at <= timezone.now()
    assert by_id.attempts == 1
    done.refresh_from_db()
    assert done.delivered_at == earlier  # delivered before: its time stays
    untouched.refresh_from_db()
    assert (untouched.status, untouched.last_error) == (PUBLISHED, "x")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_settle_is_one_prepared_statement_whatever_the_batch() -> None:
    """Batches of any size send the same text (ids as arrays), so psycopg prepares it once and PostgreSQL
    stops planning it; the rows are settled as with IN lists."""
    from project import rawsql

    rows = [row(status=PUBLISHED) for _ in range(12)]
    batches = [rows[0:1], rows[1:3], rows[3:4], rows[4:7], rows[7:8], rows[8:10], rows[10:12]]
    for index, batch in enumerate(batches):
        if index % 2:
            owner.outbox_settle_delivered(pks=[e.pk for e in batch])
        else:
            owner.outbox_settle_delivered(event_ids=[str(e.event_id) for e in batch])
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {DELIVERED}
    prepared = rawsql.fetchone("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                               ["%= ANY(%"])
    assert prepared == (1,)


def test_settling_compiles_no_orm_query(orm_compilations_refused) -> None:

    events_ = [row(status=PUBLISHED) for _ in range(3)]

    with orm_compilations_refused():
        owner.outbox_settle_delivered(event_ids=[e.event_id for e in events_[:2]])
        owner.outbox_settle_delivered(pks=[events_[2].pk])

    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {DELIVERED}


def test_a_dead_letter_is_recorded_once_per_event_and_takes_the_row_out() -> None:
    event = row(status=PUBLISHED)
    owner.dead_letter_record(envelope=event.envelope, attempts=1, reason="401", cause=Cause.AGENT_PERMANENT)
    owner.dead_letter_record(envelope=event.envelope, attempts=3, reason="503", cause=Cause.AGENT_TRANSIENT)
    letter = DeadLetter.objects.get()
    assert (letter.attempts, letter.reason, letter.cause) == (3, "503", Cause.AGENT_TRANSIENT)
    event.refresh_from_db()
    assert (event.status, event.attempts) == (DEAD, 3)
    owner.dead_letter_requeue_embedded(dead_letter=letter)
    event.refresh_from_db()
    assert (event.status, event.attempts, DeadLetter.objects.count()) == (PENDING, 0, 0)


def test_prune_removes_delivered_dead_rows_and_dead_letters_past_retention(settings) -> None:
    settings.OUTBOX_RETENTION_DAYS, settings.BUS_DEAD_RETENTION_DAYS = 7, 30
    old, recent = timezone.now() - timedelta(days=40), timezone.now() - timedelta(days=1)
    gone = [row(status=DELIVERED, delivered_at=old), row(status=DEAD, occurred_at=old)]
    kept = [row(status=DELIVERED, delivered_at=recent), row(status=PENDING, occurred_at=old),
            row(status=PUBLISHED, occurred_at=old)]
    old_dead = row(status=DEAD, occurred_at=old)
    owner.dead_letter_record(envelope=old_dead.envelope, attempts=1, reason="x", cause=Cause.BROKER)
    DeadLetter.objects.update(last_failed_at=old)
    gone.append(old_dead)
    fresh_dead = row(status=DEAD, occurred_at=old)  # its dead letter is recent: an operator may replay it
    owner.dead_letter_record(envelope=fresh_dead.envelope, attempts=1, reason="x", cause=Cause.BROKER)
    kept.append(fresh_dead)

    assert owner.outbox_prune(dry_run=True) == 4  # 3 rows + 1 dead letter
    assert owner.outbox_prune(batch_size=1) == 4
    assert set(OutboxEvent.objects.values_list("pk", flat=True)) == {e.pk for e in kept}
    assert list(DeadLetter.objects.values_list("event_id", flat=True)) == [fresh_dead.event_id]


def test_the_consumer_schedules_pruning_itself(settings) -> None:
    from consumers.runners import Pruner

    settings.OUTBOX_RETENTION_DAYS = 7
    row(status=DELIVERED, delivered_at=timezone.now() - timedelta(days=8))
    pruner = Pruner(interval_seconds=3600)
    assert pruner.maybe() == 1  # at start
    row(status=DELIVERED, delivered_at=timezone.now() - timedelta(days=8))
    assert pruner.maybe() == 0  # not due again for an hour
    pruner.last -= 3601
    assert pruner.maybe() == 1


@pytest.mark.django_db(transaction=True)
def test_a_lease_is_renewed_while_its_holder_works(settings) -> None:
    settings.BUS_OWNERSHIP_SECONDS = 1.5  # renewed every 0.5 s
    uid = uuid.uuid4()
    outcome: list[str] = []

    def second_consumer() -> None:
        try:
            with user_lease(uid, wait_seconds=0):
                outcome.append("acquired")
        except LeaseBusy:
            outcome.append("busy")
        finally:
            connection.close()  # this thread's own: left open, it blocks the test database's teardown

    with user_lease(uid):
        first_expiry = UserSyncLease.objects.get(uid=uid).expires_at
        time.sleep(2.5)  # a handler longer than the window: the lease must outlive it
        assert UserSyncLease.objects.get(uid=uid).expires_at > first_expiry
        thread = threading.Thread(target=second_consumer)
        thread.start()
        thread.join()
    assert outcome == ["busy"]


def test_one_claim_takes_the_most_urgent_event_of_each_of_several_users() -> None:
    timing = bus_timing()
    flooding, other, busy, later = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    prefs = [OutboxEvent.objects.create(type=events.PREFERENCES_UPDATED, uid=flooding, data={"revision": n})
             for n in range(3)]
    OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=busy)  # its user's work is in flight here
    allergy = OutboxEvent.objects.create(type=events.ALLERGIES_REPLACED, uid=other, data={"revision": 1})
    registered = OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=later)

    claims = owner.outbox_claim_users(worker_id="a", timing=timing, users=2, exclude_uids=[str(busy)])

    # Allergy events first, then the oldest; one head per user, its coalesced rows with it.
    assert [c.event.pk for c in claims] == [allergy.pk, prefs[0].pk]
    assert claims[1].covered == [prefs[1].pk, prefs[2].pk]
    assert set(OutboxEvent.objects.filter(claimed_by="a").values_list("pk", flat=True)) == {
        allergy.pk, *(p.pk for p in prefs)}
    # The next claim skips what is claimed: the remaining users.
    rest = owner.outbox_claim_users(worker_id="b", timing=timing, users=5)
    assert {c.event.uid for c in rest} == {busy, later} and registered.pk in {c.event.pk for c in rest}


def test_a_claim_with_coalesced_rows_and_excluded_users_compiles_no_orm_query(orm_compilations_refused) -> None:

    uid, busy = uuid.uuid4(), uuid.uuid4()
    prefs = [OutboxEvent.objects.create(type=events.PREFERENCES_UPDATED, uid=uid, data={"revision": n})
             for n in range(2)]
    OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=busy)

    with orm_compilations_refused():
        [claim] = owner.outbox_claim_users(worker_id="a", timing=bus_timing(), users=3, exclude_uids=[str(busy)])

    assert (claim.event.pk, claim.event.uid, claim.event.data, claim.covered) == (
        prefs[0].pk, uid, {"revision": 0}, [prefs[1].pk])
    assert claim.event.claimed_by == "a" and claim.event.claimed_until > timezone.now()


def test_a_retry_of_a_coalesced_call_is_one_statement_for_all_its_events(settings) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    events_ = [row(status=PUBLISHED) for _ in range(3)]
    with CaptureQueriesContext(connection) as queries:
        owner.outbox_schedule_retry(event_ids=[e.event_id for e in events_], attempt=1, error="503", delay=5,
                                    timing=bus_timing())
    assert len(queries.captured_queries) == 1
    assert set(OutboxEvent.objects.values_list("attempts", "last_error")) == {(1, "503")}


def test_held_messages_have_their_settle_deadline_moved_on(settings) -> None:
    settings.BUS_REPUBLISH_AFTER_SECONDS = 900
    held, settled = row(status=PUBLISHED, available_at=soon(1)), row(status=DELIVERED, available_at=soon(1))
    owner.outbox_settle_deadline_extend(event_ids=[held.event_id, settled.event_id], timing=bus_timing())
    held.refresh_from_db()
    settled.refresh_from_db()
    assert held.available_at > soon(899) and settled.available_at < soon(2)


def test_seconds_until_the_next_delayed_retry() -> None:
    assert owner.outbox_seconds_until_next_due() is None
    OutboxEvent.objects.create(type=events.USER_REGISTERED, available_at=timezone.now() + timedelta(seconds=30))
    OutboxEvent.objects.create(type=events.USER_REGISTERED, available_at=timezone.now() + timedelta(seconds=10))
    assert 5 < owner.outbox_seconds_until_next_due() <= 10


@pytest.mark.django_db(transaction=True)  # so that "outside a transaction" can be tried
def test_write_is_add_without_reading_back() -> None:
    from django.db import transaction

    uid = uuid.uuid4()
    with pytest.raises(owner.OutboxOutsideTransaction):
        owner.outbox_event_write(uid=uid, payload=events.AllergiesReplaced(revision=4))
    with transaction.atomic():
        owner.outbox_event_write(uid=uid, payload=events.AllergiesReplaced(revision=4))
        added = owner.outbox_event_add(uid=uid, payload=events.AllergiesReplaced(revision=4))
    written = OutboxEvent.objects.get(uid=uid, pk__lt=added.pk)

    def same(event: OutboxEvent) -> tuple:
        return (event.type, event.schema, event.data, event.status, event.attempts, event.claimed_by,
                event.traceparent)

    assert same(written) == same(added) == ("allergies.replaced", 2, {"revision": 4}, PENDING, 0, "", None)
    assert written.event_id != added.event_id
    assert abs(written.available_at - written.occurred_at) < timedelta(seconds=1)


@pytest.mark.django_db(transaction=True)
def test_a_user_leased_by_a_claim_whose_head_was_settled_meanwhile_is_let_go_at_once() -> None:
    """The race the claim's read and its UPDATE leave open: another transaction settles the head after the claim
    read it as due; the claim then claims nothing for that user and must not keep its lease (the user would
    wait a whole ownership window for nothing)."""
    from django.db import connections

    if connection.vendor != "postgresql":
        pytest.skip("SQLite writes one transaction at a time: the race needs row locks")
    head = row()
    settled = threading.Event()

    def settle_meanwhile() -> None:
        # Another session locks the row first (uncommitted), then commits the settle while the claim waits for it.
        other = connections.create_connection("default")
        try:
            other.set_autocommit(False)
            with other.cursor() as cursor:
                cursor.execute("UPDATE agent_bridge_outboxevent SET status = %s WHERE id = %s",
                               [DELIVERED.value, head.pk])
            settled.set()
            time.sleep(1.0)  # the claim reads the row as due, takes the lease, and waits on the row lock
            other.commit()
        finally:
            other.close()

    thread = threading.Thread(target=settle_meanwhile)
    thread.start()
    assert settled.wait(10)
    try:
        assert owner.outbox_claim_users(worker_id="a", timing=bus_timing(), users=5) == []
    finally:
        thread.join()
        connection.close()
    assert UserSyncLease.objects.get(uid=head.uid).owner == ""


def test_a_claim_failing_halfway_leaves_no_lease_taken_and_no_row_claimed(monkeypatch) -> None:
    """SQLite claims in several statements: one failing (a busy database) rolls back the others,
    instead of leaving leases and claims that nobody returned to wait out an ownership window."""
    if connection.vendor != "sqlite":
        pytest.skip("on PostgreSQL the claim is one statement")
    event = row()

    def busy(*args, **kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(owner, "_claim_coalesced", busy)  # after the leases and the rows were claimed
    with pytest.raises(OperationalError):
        owner.outbox_claim_users(worker_id="a", timing=bus_timing(), users=5)
    event.refresh_from_db()
    assert (event.claimed_by, event.claimed_until) == ("", None)
    assert not UserSyncLease.objects.filter(uid=event.uid, owner="a").exists()


def test_the_claim_scans_no_outbox_row_it_does_not_need_under_statistics_from_a_burst() -> None:
    """Found by the benchmark's embedded propagation p50 (12 ms, 3 with the bus phase alone): statistics
    taken while a few users had thousands of pending allergy events each (an API burst, then delivered)
    made the planner read the whole outbox per claim, in sequential scans and hash joins."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner")

    burst_users = [uuid.uuid4() for _ in range(16)]
    OutboxEvent.objects.bulk_create([OutboxEvent(type=events.ALLERGIES_REPLACED, uid=burst_users[n % 16],
                                                 data={"revision": 1}) for n in range(8000)])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {OutboxEvent._meta.db_table}")
    OutboxEvent.objects.update(status=DELIVERED)
    OutboxEvent.objects.create(type=events.ALLERGIES_REPLACED, uid=uuid.uuid4(), data={"revision": 1})

    claim = owner._postgres_claim("default")
    params = claim.params(worker_id="w", users=8, excluded=[], now=timezone.now(), until=soon(15), coalesce_limit=500)
    plan = _explain(claim.sql, params, analyze=False)

    whole_table = [n["Node Type"] for n in _plan_nodes(plan)
                   if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == OutboxEvent._meta.db_table]
    assert whole_table == []


def _burst_under_statistics_with_every_row_delivered(status: OutboxEvent.Status, *, claimed_by: str = "") -> None:
    """2,000 delivered rows analyzed, then a burst of 3,000 rows of `status` that the statistics do not know."""
    OutboxEvent.objects.bulk_create([OutboxEvent(type=events.ALLERGIES_REPLACED, uid=uuid.uuid4(),
                                                 data={"revision": 1}, status=DELIVERED) for _ in range(2000)])
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {OutboxEvent._meta.db_table}")
    OutboxEvent.objects.bulk_create([OutboxEvent(type=events.ALLERGIES_REPLACED, uid=uuid.uuid4(), data={"revision": 1},
                                                 status=status, claimed_by=claimed_by) for _ in range(3000)])


def _explain(sql: str, params: dict | None = None, *, analyze: bool = True) -> dict:
    """The root node of the statement's JSON plan (executed with `analyze`: inside the test's transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN ({'ANALYZE, ' if analyze else ''}FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    return (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


def _outbox_rows_read(plan: dict) -> dict[str, int]:
    """Rows each scan of the outbox read in an executed plan (returned or filtered out, every loop)."""
    read = {}
    for node in _plan_nodes(plan):
        if node.get("Relation Name") == OutboxEvent._meta.db_table:
            rows = (node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)) * node.get("Actual Loops", 1)
            read[f"{node['Node Type']} {node.get('Index Name', '')}".strip()] = rows
    return read


def test_a_claim_in_a_burst_looks_its_rows_up_by_key_under_statistics_with_nothing_pending() -> None:
    """Found by profiling a drain of 4,000 events (python -m bench.profile, pg_stat_statements): each claim read
    ~580 buffers (5 ms of the database). Statistics taken while every row was delivered (the usual state) estimate
    one pending row, and the planner read every pending row through a status index to claim the heads, find their
    coalesced rows and claim those, instead of looking a few up by key. Executed (EXPLAIN ANALYZE, inside the
    test's transaction): the rows the outbox's scans read must not grow with the backlog."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner")

    _burst_under_statistics_with_every_row_delivered(PENDING)

    claim = owner._postgres_claim("default")
    params = claim.params(worker_id="w", users=4, excluded=[], now=timezone.now(), until=soon(15), coalesce_limit=500)
    read = _outbox_rows_read(_explain(claim.sql, params))
    assert OutboxEvent.objects.filter(claimed_by="w").count() == 4
    # The oldest due heads are read in index order (a few dozen rows); nothing else is scanned.
    assert sum(read.values()) < 200, read


@pytest.mark.parametrize("status", [PENDING, PUBLISHED])
def test_updates_of_rows_given_by_key_read_only_those_under_statistics_with_none_of_their_status(status) -> None:
    """The relay's and the claims' keyed updates (mark published, renew, release, retry, extend the settle
    deadline) during a burst, under statistics taken while every row was delivered: each must read the rows it
    was given, not every row of their status through a status index (found with the claim's plan, below)."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's planner")
    from django.test.utils import CaptureQueriesContext

    _burst_under_statistics_with_every_row_delivered(status, claimed_by="w")
    given = list(OutboxEvent.objects.order_by("-id")[:20])
    pks, ids, timing = [e.pk for e in given], [e.event_id for e in given], bus_timing()
    calls = {
        PENDING: [lambda: owner.outbox_claim_renew(pks=pks, worker_id="w", timing=timing),
                  lambda: owner.outbox_claim_release(pks=pks, worker_id="w"),
                  lambda: owner.outbox_publish_refused(pks=pks, timing=timing),
                  lambda: owner.outbox_schedule_retry(event_ids=ids, attempt=1, error="e", delay=1, timing=timing),
                  lambda: owner.outbox_mark_published(pks=pks, timing=timing)],
        PUBLISHED: [lambda: owner.outbox_settle_deadline_extend(event_ids=ids, timing=timing),
                    lambda: owner.outbox_schedule_retry(event_ids=ids, attempt=1, error="e", delay=1, timing=timing)],
    }[status]
    for call in calls:
        with CaptureQueriesContext(connection) as captured:
            call()
        (update,) = [q["sql"] for q in captured.captured_queries if q["sql"].startswith("UPDATE")]
        read = _outbox_rows_read(_explain(update))
        assert sum(read.values()) <= 2 * len(given), (read, update[:120])
