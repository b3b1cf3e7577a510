"""Writes of the consumers app: recording what became of each delivery."""
import uuid

from django.db import transaction
from django.utils import timezone

from agent_bridge.events import Envelope
from agent_bridge.models import OutboxEvent
from consumers.models import DeadLetter


def outbox_event_mark_delivered(*, event_id: uuid.UUID | str) -> None:
    OutboxEvent.objects.filter(event_id=event_id).update(
        status=OutboxEvent.Status.DELIVERED,
        delivered_at=timezone.now(),
        claimed_by="",
        claimed_until=None,
        last_error="",
    )


def outbox_event_note_retry(*, event_id: uuid.UUID | str, attempt: int, error: str) -> None:
    OutboxEvent.objects.filter(event_id=event_id).update(attempts=attempt, last_error=error)


def dead_letter_record(*, envelope: Envelope, attempts: int, reason: str) -> DeadLetter:
    """Record a dead letter (idempotent per event) and take the event out of the outbox flow."""
    now = timezone.now()
    event_id = envelope["id"]
    with transaction.atomic():
        dead_letter, created = DeadLetter.objects.get_or_create(
            event_id=event_id,
            defaults={
                "type": envelope.get("type", ""),
                "uid": envelope.get("uid"),
                "envelope": envelope,
                "attempts": attempts,
                "reason": reason,
                "first_failed_at": now,
                "last_failed_at": now,
            },
        )
        if not created:
            dead_letter.attempts = max(dead_letter.attempts, attempts)
            dead_letter.reason = reason
            dead_letter.last_failed_at = now
            dead_letter.save(update_fields=["attempts", "reason", "last_failed_at"])
        OutboxEvent.objects.filter(event_id=event_id).update(
            status=OutboxEvent.Status.DEAD, attempts=attempts, last_error=reason, claimed_by="", claimed_until=None
        )
    return dead_letter
