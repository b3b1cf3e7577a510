"""Operators' reads: the bus by type (backlog, retrying, oldest age) and dead letters grouped by
type and reason class (no ids or paths, so the groups stay few)."""
from datetime import timedelta

import pytest
from django.utils import timezone

from agent_bridge import events
from agent_bridge.models import OutboxEvent, UserSyncLease
from consumers import operations
from consumers.tests.conftest import dead_event

pytestmark = pytest.mark.django_db


def test_bus_figures_by_type() -> None:
    old = timezone.now() - timedelta(minutes=10)
    OutboxEvent.objects.create(type=events.USER_REGISTERED, occurred_at=old)
    OutboxEvent.objects.create(type=events.USER_REGISTERED, attempts=2, status=OutboxEvent.Status.PUBLISHED)
    OutboxEvent.objects.create(type=events.ALLERGIES_REPLACED)
    OutboxEvent.objects.create(type=events.ALLERGIES_REPLACED, status=OutboxEvent.Status.DELIVERED, occurred_at=old)

    figures = operations.bus_figures_get()

    by_type = {row.type: row for row in figures.types}
    assert (by_type[events.USER_REGISTERED].backlog, by_type[events.USER_REGISTERED].retrying) == (2, 1)
    assert 590 < by_type[events.USER_REGISTERED].oldest_age_seconds < 700
    assert by_type[events.ALLERGIES_REPLACED].backlog == 1
    assert by_type[events.ALLERGIES_REPLACED].oldest_age_seconds < 60  # the delivered one does not count
    assert figures.backlog == 3 and figures.oldest_age_seconds == by_type[events.USER_REGISTERED].oldest_age_seconds


def test_dead_letters_group_by_type_and_reason_class() -> None:
    for uid in ("a1", "b2"):
        reason = f"AgentAuthError 401 INVALID_SERVICE_TOKEN: bad token on POST /users/{uid}"
        dead_event(events.USER_REGISTERED, reason=reason)
    dead_event(events.USER_REGISTERED, reason="AgentUnavailable 503 AGENT_UNAVAILABLE: down")
    dead_event(events.ALLERGIES_REPLACED, reason="no handler for event type 'x'")

    groups = {(g.type, g.reason): g.count for g in operations.bus_figures_get().dead_letters}

    assert groups == {
        (events.USER_REGISTERED, "AgentAuthError 401 INVALID_SERVICE_TOKEN"): 2,
        (events.USER_REGISTERED, "AgentUnavailable 503 AGENT_UNAVAILABLE"): 1,
        (events.ALLERGIES_REPLACED, "no handler for event type 'x'"): 1,
    }
    ids = operations.dead_letter_ids_in_group(
        event_type=events.USER_REGISTERED, reason="AgentAuthError 401 INVALID_SERVICE_TOKEN"
    )
    assert len(ids) == 2


def test_consumers_at_work_are_the_holders_of_live_leases_and_claims() -> None:
    import uuid

    future, past = timezone.now() + timedelta(seconds=30), timezone.now() - timedelta(seconds=30)
    UserSyncLease.objects.create(uid=uuid.uuid4(), owner="host:1", expires_at=future)
    UserSyncLease.objects.create(uid=uuid.uuid4(), owner="host:2", expires_at=past)  # lapsed
    OutboxEvent.objects.create(type=events.USER_REGISTERED, claimed_by="host:3", claimed_until=future)

    assert operations.consumers_at_work() == [
        operations.ConsumerFigures(consumer="host:1", leases=1, claims=0),
        operations.ConsumerFigures(consumer="host:3", leases=0, claims=1),
    ]
