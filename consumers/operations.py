"""Reads for operators: the bus by event type, dead letters by type and reason, consumers at
work, RabbitMQ partitions and their owners. Shared by the admin's operator page (consumers/console.py) and /metrics
(project/metrics_http.py); never by a public endpoint, since a request can move these figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Case, CharField, Count, F, Max, Min, Q, QuerySet, Value, When
from django.db.models.functions import Left, StrIndex, Substr
from django.utils import timezone

from agent_bridge.models import OutboxEvent, PartitionLease, UserSyncLease
from consumers.models import DeadLetter

UNDELIVERED = (OutboxEvent.Status.PENDING, OutboxEvent.Status.PUBLISHED)
REASON_MAX = 80


@dataclass(frozen=True)
class TypeFigures:
    type: str
    backlog: int
    retrying: int
    oldest_age_seconds: float


@dataclass(frozen=True)
class DeadLetterGroup:
    type: str
    reason: str  # the reason's class: its text before the first ":" (no ids, no paths)
    count: int
    last_failed_at: datetime


@dataclass(frozen=True)
class ConsumerFigures:
    consumer: str  # the worker id (host:pid:...)
    leases: int  # users whose Agent calls it serialises right now
    claims: int  # embedded bus: outbox rows it has claimed


@dataclass(frozen=True)
class BusFigures:
    types: list[TypeFigures]
    dead_letters: list[DeadLetterGroup]

    @property
    def backlog(self) -> int:
        return sum(row.backlog for row in self.types)

    @property
    def oldest_age_seconds(self) -> float:
        return max((row.oldest_age_seconds for row in self.types), default=0.0)

    @property
    def dead_letter_count(self) -> int:
        return sum(group.count for group in self.dead_letters)


def _with_reason_class(dead_letters: QuerySet[DeadLetter]) -> QuerySet[DeadLetter]:
    """Annotates `reason_class`: the reason's text before its first ':' (the error class, status
    and code that `consumers.processing` puts first), else its first REASON_MAX characters."""
    return dead_letters.annotate(colon_at=StrIndex("reason", Value(":"))).annotate(
        reason_class=Case(
            When(colon_at__gt=1, then=Left(Substr("reason", 1, F("colon_at") - 1), REASON_MAX)),
            default=Left("reason", REASON_MAX),
            output_field=CharField(),
        )
    )


def bus_figures_get() -> BusFigures:
    now = timezone.now()
    rows = (
        OutboxEvent.objects.filter(status__in=UNDELIVERED)
        .values("type")
        .annotate(backlog=Count("id"), retrying=Count("id", filter=Q(attempts__gt=0)), oldest=Min("occurred_at"))
        .order_by("type")
    )
    types = [
        TypeFigures(
            type=row["type"],
            backlog=row["backlog"],
            retrying=row["retrying"],
            oldest_age_seconds=max(0.0, (now - row["oldest"]).total_seconds()),
        )
        for row in rows
    ]
    groups = (
        _with_reason_class(DeadLetter.objects.all())
        .values("type", "reason_class")
        .annotate(count=Count("id"), last=Max("last_failed_at"))
        .order_by("type", "reason_class")
    )
    dead = [
        DeadLetterGroup(type=row["type"], reason=row["reason_class"], count=row["count"], last_failed_at=row["last"])
        for row in groups
    ]
    return BusFigures(types=types, dead_letters=dead)


def dead_letter_ids_in_group(*, event_type: str, reason: str) -> list[int]:
    """The dead letters of one (type, reason class) group, for a replay of that group."""
    return list(
        _with_reason_class(DeadLetter.objects.filter(type=event_type))
        .filter(reason_class=reason)
        .values_list("pk", flat=True)
    )


def consumers_at_work() -> list[ConsumerFigures]:
    """Consumers holding a user lease or (embedded bus) an outbox claim now."""
    now = timezone.now()
    leases = dict(
        UserSyncLease.objects.filter(expires_at__gt=now).exclude(owner="")
        .values("owner").annotate(n=Count("uid")).values_list("owner", "n")
    )
    claims = dict(
        OutboxEvent.objects.filter(status=OutboxEvent.Status.PENDING, claimed_until__gt=now).exclude(claimed_by="")
        .values("claimed_by").annotate(n=Count("id")).values_list("claimed_by", "n")
    )
    return [
        ConsumerFigures(consumer=name, leases=leases.get(name, 0), claims=claims.get(name, 0))
        for name in sorted(set(leases) | set(claims))
    ]


@dataclass(frozen=True)
class PartitionFigures:
    partition: str  # the work queue, `<prefix>.work.<n>`
    owner: str  # the consumer connection holding it ("" when nobody does)
    expires_in_seconds: float | None  # until the owner must renew it


def partitions_get() -> list[PartitionFigures]:
    """RabbitMQ partitions and the consumer that owns each now (none on the embedded bus)."""
    now = timezone.now()
    figures = []
    for lease in PartitionLease.objects.order_by("name"):
        held = bool(lease.owner) and lease.expires_at is not None and lease.expires_at > now
        figures.append(
            PartitionFigures(
                partition=lease.name,
                owner=lease.owner if held else "",
                expires_in_seconds=(lease.expires_at - now).total_seconds() if held else None,
            )
        )
    return figures
