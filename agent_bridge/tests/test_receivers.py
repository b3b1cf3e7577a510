"""agent_bridge.receivers: each domain signal becomes its declared event, in the sender's
transaction, carrying no personal data (the services that send them: identity and allergies)."""
import uuid

import pytest
from django.db import transaction

from agent_bridge import events
from agent_bridge.models import AgentCopy, OutboxEvent
from agent_bridge.outbox import OutboxOutsideTransaction
from allergies import signals as allergy_signals
from identity import signals as identity_signals

pytestmark = pytest.mark.django_db

UID = uuid.UUID("0b7d5a7e-3c1f-4e44-9d0c-6f1e2a3b4c5d")

SIGNALS = {
    "user_registered": (identity_signals.user_registered, {"user": type("U", (), {"uid": UID})()},
                        events.USER_REGISTERED, {}),
    "email_requested": (identity_signals.email_requested, {"uid": UID, "kind": identity_signals.EmailKind.VERIFY},
                        events.EMAIL_REQUESTED, {"kind": "verify"}),
    "preferences_updated": (identity_signals.preferences_updated,
                            {"uid": UID, "revision": 3, "delta": {"vibes": ["x"]}},
                            events.PREFERENCES_UPDATED, {"revision": 3}),
    "allergy_profile_replaced": (
        allergy_signals.allergy_profile_replaced,
        {"uid": UID, "revision": 4, "confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "severe"},
         "allergy_flags": ["peanuts"]},
        events.ALLERGIES_REPLACED, {"revision": 4},
    ),
    "user_deleted": (identity_signals.user_deleted, {"uid": UID}, events.USER_DELETED, {}),
}


@pytest.mark.parametrize(("signal", "kwargs", "event_type", "data"), SIGNALS.values(), ids=SIGNALS)
def test_each_signal_becomes_its_event_with_only_the_declared_payload(signal, kwargs, event_type, data) -> None:
    with transaction.atomic():
        signal.send(sender=None, **kwargs)

    [event] = OutboxEvent.objects.all()
    assert (event.type, event.uid, event.data, event.schema) == (event_type, UID, data, events.schema_of(event_type))


@pytest.mark.django_db(transaction=True)  # no test transaction around the signal
@pytest.mark.parametrize(("signal", "kwargs", "event_type", "data"), SIGNALS.values(), ids=SIGNALS)
def test_no_event_is_written_outside_the_senders_transaction(signal, kwargs, event_type, data) -> None:
    with pytest.raises(OutboxOutsideTransaction):
        signal.send(sender=None, **kwargs)
    assert not OutboxEvent.objects.exists()


def test_a_deletion_erases_the_bus_copies_and_leaves_a_tombstone() -> None:
    delivered = OutboxEvent.objects.create(type=events.PREFERENCES_UPDATED, uid=UID, data={"revision": 1},
                                           status=OutboxEvent.Status.DELIVERED)
    in_flight = OutboxEvent.objects.create(type=events.ALLERGIES_REPLACED, uid=UID, data={"revision": 2})

    with transaction.atomic():
        identity_signals.user_deleted.send(sender=None, uid=UID)

    assert not OutboxEvent.objects.filter(pk=delivered.pk).exists()
    assert OutboxEvent.objects.get(pk=in_flight.pk).data == {}
    assert list(OutboxEvent.objects.filter(type=events.USER_DELETED).values_list("uid", flat=True)) == [UID]
    assert AgentCopy.objects.get(uid=UID).erased_at is not None
