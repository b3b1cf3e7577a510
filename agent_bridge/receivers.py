"""Domain signals → outbox events, in the sender's transaction (the only signal listeners).

Each receiver builds its event's declared payload (agent_bridge.events); payloads name the
revision that changed, never the personal data itself.
"""
import uuid
from typing import Any

from django.dispatch import receiver

from agent_bridge import events, verification
from agent_bridge.outbox import bus_user_erase, outbox_event_add, outbox_event_write
from allergies import signals as allergy_signals
from identity import signals as identity_signals


@receiver(identity_signals.user_registered)
def on_user_registered(sender: Any, *, user: Any, **kwargs: Any) -> None:
    outbox_event_add(uid=user.uid, payload=events.UserRegistered())


@receiver(identity_signals.user_deleted)
def on_user_deleted(sender: Any, *, uid: uuid.UUID, **kwargs: Any) -> None:
    # The bus's own copies go with the account, in the same transaction (DESIGN §8).
    bus_user_erase(uid=uid)
    outbox_event_add(uid=uid, payload=events.UserDeleted())
    verification.tombstone_add(uid=uid)  # so reconciliation can verify the erasure at the Agent


@receiver(identity_signals.email_requested)
def on_email_requested(sender: Any, *, uid: uuid.UUID, kind: str, **kwargs: Any) -> None:
    outbox_event_add(uid=uid, payload=events.EmailRequested(kind=kind))


@receiver(identity_signals.preferences_updated)
def on_preferences_updated(sender: Any, *, uid: uuid.UUID, revision: int, **kwargs: Any) -> None:
    outbox_event_add(uid=uid, payload=events.PreferencesUpdated(revision=revision))


@receiver(allergy_signals.allergy_profile_replaced)
def on_allergy_profile_replaced(sender: Any, *, uid: uuid.UUID, revision: int, **kwargs: Any) -> None:
    # Every PUT/DELETE /api/allergies/ raises one: the owner's INSERT that waits for nothing.
    outbox_event_write(uid=uid, payload=events.AllergiesReplaced(revision=revision))
