"""Domain signals → outbox events, in the sender's transaction (the only signal listeners)."""
import uuid
from typing import Any

from django.dispatch import receiver

from agent_bridge import events, verification
from agent_bridge.outbox import outbox_event_add
from allergies import signals as allergy_signals
from identity import signals as identity_signals


@receiver(identity_signals.user_registered)
def on_user_registered(sender: Any, *, user: Any, **kwargs: Any) -> None:
    outbox_event_add(event_type=events.USER_REGISTERED, uid=user.uid, data={})


@receiver(identity_signals.user_deleted)
def on_user_deleted(sender: Any, *, uid: uuid.UUID, **kwargs: Any) -> None:
    outbox_event_add(event_type=events.USER_DELETED, uid=uid, data={})
    verification.tombstone_add(uid=uid)  # so reconciliation can verify the erasure at the Agent


@receiver(identity_signals.email_requested)
def on_email_requested(sender: Any, *, uid: uuid.UUID, kind: str, **kwargs: Any) -> None:
    outbox_event_add(event_type=events.EMAIL_REQUESTED, uid=uid, data={"kind": kind})


@receiver(identity_signals.preferences_updated)
def on_preferences_updated(sender: Any, *, uid: uuid.UUID, revision: int, delta: dict, **kwargs: Any) -> None:
    outbox_event_add(event_type=events.PREFERENCES_UPDATED, uid=uid, data={"revision": revision, "delta": delta})


@receiver(allergy_signals.allergy_profile_replaced)
def on_allergy_profile_replaced(
    sender: Any,
    *,
    uid: uuid.UUID,
    revision: int,
    confirmed: list[str],
    intolerances: list[str],
    severity: dict[str, str],
    allergy_flags: list[str],
    **kwargs: Any,
) -> None:
    outbox_event_add(
        event_type=events.ALLERGIES_REPLACED,
        uid=uid,
        data={
            "revision": revision,
            "confirmed": confirmed,
            "intolerances": intolerances,
            "severity": severity,
            "allergy_flags": allergy_flags,
        },
    )
