"""Reads of the consumers app: the state of the bus, for operators and the health check."""
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from agent_bridge.models import OutboxEvent
from allergies import selectors as allergy_selectors
from consumers.models import DeadLetter

UNDELIVERED = (OutboxEvent.Status.PENDING, OutboxEvent.Status.PUBLISHED)


def bus_status_get() -> dict[str, Any]:
    """Backlog (events not yet delivered), the age of the oldest, retries and dead letters."""
    now = timezone.now()
    # A read-back step scheduled for later (never tried, not yet due) is not a backlog.
    scheduled = Q(status=OutboxEvent.Status.PENDING, attempts=0, available_at__gt=now)
    undelivered = OutboxEvent.objects.filter(status__in=UNDELIVERED).exclude(scheduled)
    totals = undelivered.aggregate(
        backlog=Count("id"),
        retrying=Count("id", filter=Q(attempts__gt=0)),
        oldest=Min("occurred_at"),
    )
    by_type: dict[str, dict[str, int]] = {}
    for row in undelivered.values("type").annotate(backlog=Count("id"), retrying=Count("id", filter=Q(attempts__gt=0))):
        by_type[row["type"]] = {"backlog": row["backlog"], "retrying": row["retrying"], "dead_letters": 0}
    for row in DeadLetter.objects.values("type").annotate(count=Count("id")):
        by_type.setdefault(row["type"], {"backlog": 0, "retrying": 0, "dead_letters": 0})["dead_letters"] = row["count"]
    oldest = totals["oldest"]
    return {
        "backlog": totals["backlog"],
        "oldest_pending_age_seconds": int((now - oldest).total_seconds()) if oldest else 0,
        "retrying": totals["retrying"],
        "dead_letters": DeadLetter.objects.count(),
        "by_type": by_type,
    }


def dead_letters_select(
    *,
    event_types: Iterable[str] | None = None,
    uids: Iterable[uuid.UUID | str] | None = None,
    older_than: timedelta | None = None,
    ids: Iterable[int] | None = None,
    limit: int | None = None,
) -> QuerySet[DeadLetter]:
    """Dead letters matching every given filter, oldest failure first (replay order)."""
    selected = DeadLetter.objects.all()
    if event_types:
        selected = selected.filter(type__in=list(event_types))
    if uids:
        selected = selected.filter(uid__in=[uuid.UUID(str(uid)) for uid in uids])
    if older_than is not None:
        selected = selected.filter(last_failed_at__lte=timezone.now() - older_than)
    if ids is not None:
        selected = selected.filter(pk__in=list(ids))
    selected = selected.order_by("last_failed_at", "id")
    return selected[:limit] if limit is not None else selected


def outbox_prunable(*, older_than: timedelta) -> QuerySet[OutboxEvent]:
    """Delivered outbox rows delivered at least `older_than` ago."""
    return OutboxEvent.objects.filter(
        status=OutboxEvent.Status.DELIVERED, delivered_at__lte=timezone.now() - older_than
    )


def allergy_synced_revision_get(*, uid: uuid.UUID | str) -> int | None:
    """The newest allergy revision the Agent holds for the user, or None if unknown."""
    state = allergy_selectors.allergy_profile_get_by_uid(uid=uid)
    return None if state is None else state.synced_revision
