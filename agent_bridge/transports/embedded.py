"""Embedded bus: the outbox table is the queue. Consumers claim rows with an expiring claim,
so a consumer killed mid-event leaves the row to be taken again once the claim lapses."""
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from agent_bridge.models import OutboxEvent


def _claim_seconds() -> float:
    # Long enough for the immediate retries of one Agent call plus a lease wait.
    return settings.AGENT_TIMEOUT_SECONDS * (settings.BUS_IMMEDIATE_TRIES + 1) + settings.BUS_USER_LEASE_SECONDS


def outbox_event_claim_next(*, worker_id: str) -> OutboxEvent | None:
    """Claim the oldest due pending event, or None when there is nothing to do."""
    now = timezone.now()
    due = Q(status=OutboxEvent.Status.PENDING, available_at__lte=now) & (
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )
    candidates = list(OutboxEvent.objects.filter(due).order_by("available_at", "id").values_list("id", flat=True)[:5])
    for pk in candidates:
        with transaction.atomic():
            claimed = OutboxEvent.objects.filter(due, pk=pk).update(
                claimed_by=worker_id, claimed_until=now + timedelta(seconds=_claim_seconds())
            )
        if claimed:
            return OutboxEvent.objects.get(pk=pk)
    return None


def outbox_event_release_for_retry(*, event: OutboxEvent, delay_seconds: float, error: str) -> None:
    OutboxEvent.objects.filter(pk=event.pk).update(
        attempts=event.attempts + 1,
        available_at=timezone.now() + timedelta(seconds=delay_seconds),
        claimed_by="",
        claimed_until=None,
        last_error=error,
    )


def outbox_seconds_until_next_due() -> float | None:
    """Seconds until the next pending event waiting for a delayed retry is due (None: none waits)."""
    now = timezone.now()
    nearest = (
        OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING, available_at__gt=now)
        .order_by("available_at")
        .values_list("available_at", flat=True)
        .first()
    )
    return None if nearest is None else max(0.0, (nearest - now).total_seconds())
