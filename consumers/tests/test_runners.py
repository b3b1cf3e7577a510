"""The embedded consumer's unit of work and the outbox claim, against a real Agent double."""
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from agent_bridge import events
from agent_bridge.delivery import Status
from agent_bridge.models import AgentCopy, OutboxEvent
from agent_bridge.timing import bus_timing
from agent_bridge.transports import Delivery
from agent_bridge.transports.embedded import EmbeddedTransport
from consumers.models import DeadLetter
from consumers.runners import Consumer, run_resiliently
from consumers.tests.conftest import claim, registered

pytestmark = pytest.mark.django_db


@pytest.fixture
def consumer(agent) -> Consumer:
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing())
    return Consumer(transport=transport, stop=transport.stop, agent=agent)


def test_a_delivered_event_is_marked_delivered(consumer, devagent, verified_user) -> None:
    row = registered(verified_user)
    outcome = consumer.handle(claim())
    row.refresh_from_db()
    assert outcome.status == Status.DELIVERED
    assert row.status == OutboxEvent.Status.DELIVERED and row.delivered_at is not None
    assert str(verified_user.uid) in devagent.state.snapshot()["users"]


def test_a_claim_taken_over_from_a_dead_consumer_reads_the_user_back(consumer, devagent, verified_user) -> None:
    row = registered(verified_user)
    assert claim().tag.pk == row.pk  # "test-worker" dies mid-handler: its claim lapses
    OutboxEvent.objects.filter(pk=row.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))

    assert consumer.handle(claim()).status == Status.DELIVERED
    assert AgentCopy.objects.get(uid=verified_user.uid).read_back_chain is not None
    assert OutboxEvent.objects.filter(type=events.AGENT_READ_BACK_DUE, uid=verified_user.uid).count() == 1


def test_a_transient_failure_is_released_for_a_delayed_retry(consumer, devagent, verified_user, settings) -> None:
    settings.BUS_RETRY_DELAYS_SECONDS = [30, 60]
    devagent.state.set_fault({"status": 503})
    row = registered(verified_user)

    consumer.handle(claim())

    row.refresh_from_db()
    assert row.status == OutboxEvent.Status.PENDING
    assert row.attempts == 1 and "503" in row.last_error
    assert row.available_at > timezone.now() + timedelta(seconds=25)
    assert row.claimed_by == ""
    assert claim() is None  # not due yet


def test_an_event_waiting_for_a_retry_does_not_hold_up_the_others(consumer, devagent, verified_user, settings) -> None:
    from identity.models import User

    other = User.objects.create_user(email="other@example.com", password="x-long-passphrase-42", username="o")
    settings.BUS_RETRY_DELAYS_SECONDS = [30]
    devagent.state.set_fault({"status": 503, "paths": str(verified_user.uid)})
    first, second = registered(verified_user), registered(other)

    consumer.handle(claim())
    consumer.handle(claim())

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (OutboxEvent.Status.PENDING, OutboxEvent.Status.DELIVERED)


def test_a_permanent_failure_becomes_a_dead_letter(consumer, devagent, verified_user) -> None:
    devagent.state.set_fault({"status": 401})
    row = registered(verified_user)

    consumer.handle(claim())

    row.refresh_from_db()
    dead = DeadLetter.objects.get(event_id=row.event_id)
    assert row.status == OutboxEvent.Status.DEAD
    assert (dead.type, dead.uid, dead.attempts) == (events.USER_REGISTERED, verified_user.uid, 1)
    assert "INVALID_SERVICE_TOKEN" in dead.reason
    assert dead.envelope == row.envelope


def test_retries_used_up_become_a_dead_letter(consumer, devagent, verified_user, settings) -> None:
    settings.BUS_RETRY_DELAYS_SECONDS = [0, 0]
    devagent.state.set_fault({"status": 503})
    row = registered(verified_user)

    statuses = [consumer.handle(claim()).status for _ in range(3)]

    assert statuses == [Status.RETRY, Status.RETRY, Status.DEAD]
    assert DeadLetter.objects.get(event_id=row.event_id).attempts == 3


def test_run_resiliently_survives_unexpected_errors_and_stops_on_the_flag() -> None:
    stop = threading.Event()
    calls = []

    def session() -> None:
        calls.append(1)
        if len(calls) == 2:
            stop.set()
        raise RuntimeError("boom")

    run_resiliently("test", session, stop)
    assert len(calls) == 2


def test_allergies_go_first_and_a_flood_of_one_user_is_one_agent_call(consumer, devagent, verified_user) -> None:
    from allergies import services as allergy_services
    from conftest import _make_user
    from identity import services as identity_services

    other = _make_user(email="other@example.com", verified=True)
    for index in range(30):  # one user floods preference changes
        identity_services.user_preferences_update(user=verified_user, preferences={"vibes": [f"v{index}"]})

    allergy_services.allergy_profile_replace(
        user=other, confirmed=["peanuts"], intolerances=[], severity={"peanuts": "anaphylactic"}
    )

    first = claim()
    assert first.envelope["type"] == events.ALLERGIES_REPLACED  # ...another user's allergies do not wait
    consumer.handle(first)
    flood = claim()
    assert flood.envelope["type"] == events.PREFERENCES_UPDATED and len(flood.tag.covered) == 29
    devagent.state.reset()
    assert consumer.handle(flood).status in (Status.DELIVERED, Status.SKIPPED)

    assert not OutboxEvent.objects.filter(type=events.PREFERENCES_UPDATED).exclude(
        status=OutboxEvent.Status.DELIVERED
    ).exists()
    sent = [r for r in devagent.state.request_log() if r["path"].startswith("/users/")]
    assert len(sent) <= 2  # one merge (plus a create if the Agent did not know the user yet)


# --- concurrency, runs and coalescing -------------------------------------------------------

def delivery_of(uid: str | None, event_type: str = events.PREFERENCES_UPDATED, *, tag: int, attempt: int = 1):
    from agent_bridge.transports.rabbitmq import Tag

    envelope = {"id": f"00000000-0000-4000-8000-{tag:012d}", "type": event_type, "schema": 2, "uid": uid,
                "occurred_at": "2026-01-01T00:00:00+00:00", "data": {}}
    return Delivery(envelope=envelope, attempt=attempt, tag=Tag(tag, 0))


def test_coalescing_merges_a_users_consecutive_state_carrying_events_of_one_attempt() -> None:
    from consumers.runners import coalesce

    uid = "b90c75f8-d06a-4e15-94f8-41faba334a58"
    run = [delivery_of(uid, tag=1), delivery_of(uid, tag=2), delivery_of(uid, tag=3, attempt=2),
           delivery_of(uid, events.EMAIL_REQUESTED, tag=4), delivery_of(uid, events.EMAIL_REQUESTED, tag=5),
           delivery_of(uid, tag=6), delivery_of(uid, tag=7)]

    calls = coalesce(run)

    assert [(c.tag.delivery_tag, [m.tag.delivery_tag for m in c.covered]) for c in calls] == [
        (1, [2]), (3, []), (4, []), (5, []), (6, [7])]  # a retry and each mail are calls of their own


class FakeTransport:
    """Hands out the given deliveries as RabbitMQ would (runs of users not busy) and records when
    each handler runs; stops the consumer once everything is settled."""

    name = "fake"

    def __init__(self, deliveries, *, stop: threading.Event, handler_seconds: float = 0.05) -> None:
        self.inbox = list(deliveries)
        self.expected = len(deliveries)
        self.stop = stop
        self.handler_seconds = handler_seconds
        self.lock = threading.Lock()
        self.running: dict[str, int] = {}
        self.most_in_flight = 0
        self.most_per_user = 0
        self.handled: list = []
        self.settled: list = []
        self.closed_after: int | None = None

    def open(self) -> None: ...

    def close(self) -> None:
        self.closed_after = len(self.settled)

    def take(self, *, users, busy):
        from agent_bridge.transports.rabbitmq import runs_of

        runs, self.inbox = runs_of(self.inbox, users=users, busy=busy)
        return runs

    def wait(self, futures, *, timeout) -> None:
        from concurrent.futures import FIRST_COMPLETED, wait

        wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)

    def run(self, delivery, work, *args):
        import time

        from agent_bridge.delivery import Outcome

        user = delivery.user
        with self.lock:
            self.running[user] = self.running.get(user, 0) + 1
            self.most_per_user = max(self.most_per_user, self.running[user])
            self.most_in_flight = max(self.most_in_flight, sum(self.running.values()))
            self.handled.append(delivery)
        time.sleep(self.handler_seconds)
        with self.lock:
            self.running[user] -= 1
            if not self.running[user]:
                del self.running[user]
        return Outcome(Status.DELIVERED)

    def ownership_for(self, envelope):
        import contextlib

        return contextlib.nullcontext()

    def settle(self, settled) -> None:
        self.settled.extend(settled)
        if sum(1 + len(d.covered) for d, _ in self.settled) >= self.expected:
            self.stop.set()

    def housekeeping(self) -> None: ...


def run_consumer(transport: FakeTransport, *, concurrency: int) -> None:
    consumer = Consumer(transport=transport, stop=transport.stop, agent=object(), concurrency=concurrency)
    thread = threading.Thread(target=consumer.run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_several_users_are_delivered_at_once_each_users_events_one_at_a_time_in_order() -> None:
    users = [f"b90c75f8-d06a-4e15-94f8-41faba3345{n:02d}" for n in range(6)]
    # Each user: preferences, an email, preferences again (no two consecutive of one type: no coalescing).
    kinds = [events.PREFERENCES_UPDATED, events.EMAIL_REQUESTED, events.PREFERENCES_UPDATED]
    deliveries = [delivery_of(uid, kind, tag=10 * n + k) for k, kind in enumerate(kinds) for n, uid in
                  enumerate(users)]
    transport = FakeTransport(deliveries, stop=threading.Event())

    run_consumer(transport, concurrency=4)

    assert transport.most_in_flight == 4  # other users do not wait for one user's Agent call
    assert transport.most_per_user == 1  # but a user's own events are never handled concurrently
    for uid in users:
        mine = [d.tag.delivery_tag for d in transport.handled if d.envelope["uid"] == uid]
        assert mine == sorted(mine)  # ...nor reordered
    assert sorted(d.tag.delivery_tag for d, _ in transport.settled) == sorted(d.tag.delivery_tag for d in deliveries)


def test_allergy_users_go_first_and_a_flood_is_one_handler_call() -> None:
    flooding, other = "b90c75f8-d06a-4e15-94f8-41faba334a58", "6f6cc0b2-f0d8-48f2-8253-b3defd07ec22"
    flood = [delivery_of(flooding, tag=n) for n in range(1, 40)]
    transport = FakeTransport([*flood, delivery_of(other, events.ALLERGIES_REPLACED, tag=40)], stop=threading.Event())

    run_consumer(transport, concurrency=1)

    assert [d.envelope["type"] for d in transport.handled] == [events.ALLERGIES_REPLACED, events.PREFERENCES_UPDATED]
    assert len(transport.handled[1].covered) == 38  # every flooded message settled by that one call


def test_stopping_finishes_and_settles_the_handlers_in_flight_before_closing() -> None:
    users = [f"b90c75f8-d06a-4e15-94f8-41faba3345{n:02d}" for n in range(3)]
    transport = FakeTransport([delivery_of(uid, tag=n) for n, uid in enumerate(users)], stop=threading.Event(),
                              handler_seconds=0.3)
    transport.expected = 10**6  # never stops by itself
    timer = threading.Timer(0.1, transport.stop.set)  # SIGTERM while the three calls are in flight
    timer.start()

    run_consumer(transport, concurrency=3)

    assert len(transport.settled) == 3 and transport.closed_after == 3

