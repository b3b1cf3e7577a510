"""Reads of the consumers app: the state of the bus, for operators and the health check."""
from typing import Any

from django.db.models import Count, Min, Q
from django.utils import timezone

from agent_bridge.models import OutboxEvent
from consumers.models import DeadLetter

UNDELIVERED = (OutboxEvent.Status.PENDING, OutboxEvent.Status.PUBLISHED)


def bus_status_get() -> dict[str, Any]:
    """Backlog (events not yet delivered), the age of the oldest, retries and dead letters."""
    now = timezone.now()
    undelivered = OutboxEvent.objects.filter(status__in=UNDELIVERED)
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
