"""The embedded consumer's unit of work and the outbox claim, against a real Agent double."""
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from agent_bridge import events
from agent_bridge.delivery import Status
from agent_bridge.models import OutboxEvent
from agent_bridge.timing import bus_timing
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
