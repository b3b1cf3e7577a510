"""Anti-entropy: walk users (and tombstones of erased ones), compare the Agent's copy with ours,
repair through the bus; and the bookkeeping of a resync. Driven by `manage.py reconcile_agent`
and `manage.py resync_agent`; the comparison and repairs themselves are agent_bridge.verification.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DatabaseError, close_old_connections
from django.db.models import Count, Exists, F, OuterRef, Q

from agent_bridge import events, verification
from agent_bridge.agent_client import AgentClient, AgentError
from agent_bridge.models import AgentCopy, OutboxEvent
from identity.models import User

logger = logging.getLogger(__name__)


@dataclass
class Summary:
    """What a reconciliation run found: checked = equal + in flight + drifted (+ errors)."""

    checked: int = 0
    equal: int = 0
    in_flight: int = 0
    errors: int = 0
    drifted: Counter = field(default_factory=Counter)  # users per drift kind
    drifted_users: int = 0
    repaired: int = 0  # users whose repair was queued on the bus
    started: float = field(default_factory=time.monotonic)

    def add(self, result: verification.CheckResult, *, repaired: bool) -> None:
        self.checked += 1
        if result.in_flight:
            self.in_flight += 1
        elif result.drifts:
            self.drifted_users += 1
            self.drifted.update(str(kind) for kind in result.drifts)
            self.repaired += int(repaired)
        else:
            self.equal += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "equal": self.equal,
            "in_flight": self.in_flight,
            "errors": self.errors,
            "drifted": self.drifted_users,
            "drifted_by_kind": {kind: self.drifted.get(kind, 0) for kind in verification.DriftKind.values},
            "repaired": self.repaired,
            "seconds": round(time.monotonic() - self.started, 2),
        }


class RateLimiter:
    """At most `rate` calls of :meth:`wait` per second, evenly spaced (never a burst)."""

    def __init__(self, rate: float, *, stop: threading.Event | None = None) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.stop = stop or threading.Event()
        self._next = time.monotonic()

    def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            self.stop.wait(self._next - now)
        self._next = max(now, self._next) + self.interval


def _live_without_copy() -> Any:
    return User.objects.filter(~Exists(AgentCopy.objects.filter(uid=OuterRef("uid"))))


def candidates(*, uids: Iterable[uuid.UUID] | None = None, verified_before: datetime | None = None) -> list[uuid.UUID]:
    """The uids to check, never-checked users first, then oldest checked first (tombstones of
    erased users included). `verified_before` keeps only those not verified equal since."""
    never = _live_without_copy()
    copies = AgentCopy.objects.all()
    if uids is not None:
        wanted = [uuid.UUID(str(u)) for u in uids]
        never, copies = never.filter(uid__in=wanted), copies.filter(uid__in=wanted)
    if verified_before is not None:
        # A live user's verified_at is on its allergy profile; a tombstone's last check is its own.
        stale_live = Q(allergy_profile__sync_verified_at__isnull=True) | Q(
            allergy_profile__sync_verified_at__lt=verified_before
        )
        stale_uids = User.objects.filter(stale_live).values("uid")
        never = never.filter(stale_live)
        copies = copies.filter(
            Q(erased_at__isnull=False, checked_at__isnull=True)
            | Q(erased_at__isnull=False, checked_at__lt=verified_before)
            | Q(erased_at__isnull=True, uid__in=stale_uids)
        )
    first = list(never.order_by("pk").values_list("uid", flat=True))
    rest = copies.order_by(F("checked_at").asc(nulls_first=True), "uid").values_list("uid", flat=True)
    return first + list(rest)  # disjoint: `first` are the users without an AgentCopy row


def oldest_checked(*, limit: int) -> list[uuid.UUID]:
    """The next uids for the continuous reconciler: never checked first, then oldest checked."""
    never = list(_live_without_copy().order_by("pk").values_list("uid", flat=True)[:limit])
    if len(never) >= limit:
        return never
    rest = AgentCopy.objects.order_by(F("checked_at").asc(nulls_first=True), "uid").values_list("uid", flat=True)
    return never + list(rest[: limit - len(never)])


def population() -> int:
    """How many copies continuous reconciliation must verify per period (users + tombstones)."""
    return User.objects.count() + AgentCopy.objects.filter(erased_at__isnull=False).count()


def reconcile_one(
    *, uid: uuid.UUID, agent: AgentClient, dry_run: bool, summary: Summary
) -> verification.CheckResult | None:
    """Check one copy; record and repair unless `dry_run`. None when the Agent could not be read."""
    try:
        result = verification.check(uid=uid, agent=agent)
    except AgentError as exc:
        summary.errors += 1
        summary.checked += 1
        logger.warning("reconcile could not read uid=%s: %s", uid, exc)
        return None
    if not dry_run:
        verification.check_record(result, source=verification.CheckSource.RECONCILE, repair=True)
    summary.add(result, repaired=not dry_run)
    return result


def reconcile(
    *,
    uids: Iterable[uuid.UUID],
    agent: AgentClient,
    dry_run: bool,
    limiter: RateLimiter,
    on_progress: Callable[[Summary], None] = lambda summary: None,
    on_drift: Callable[[verification.CheckResult], None] = lambda result: None,
) -> Summary:
    summary = Summary()
    for uid in uids:
        if limiter.stop.is_set():
            break
        limiter.wait()
        result = reconcile_one(uid=uid, agent=agent, dry_run=dry_run, summary=summary)
        if result is not None and result.drifts:
            on_drift(result)
        on_progress(summary)
    return summary


def continuous_rate(*, count: int, period_seconds: float, max_rate: float) -> float:
    """Reads per second that verify `count` copies within the period (with a 25 % margin for
    reads lost to in-flight changes and errors), never above `max_rate`."""
    needed = 1.25 * count / max(period_seconds, 1.0)
    return min(max_rate, max(needed, 0.01))


def reconcile_forever(
    *,
    agent: AgentClient,
    period_seconds: float,
    max_rate: float,
    stop: threading.Event,
    batch: int = 100,
    on_batch: Callable[[Summary, float], None] = lambda summary, rate: None,
    refresh_connections: Callable[[], None] = close_old_connections,
) -> Summary:
    """Verify every copy within `period_seconds`, oldest checked first, at the lowest rate that
    does it (capped at `max_rate`), until `stop` is set. Database connections are refreshed
    before each batch (a daemon outlives database restarts)."""
    total = Summary()
    while not stop.is_set():
        refresh_connections()
        try:
            rate = continuous_rate(count=population(), period_seconds=period_seconds, max_rate=max_rate)
            limiter = RateLimiter(rate, stop=stop)
            uids = oldest_checked(limit=batch)
            if not uids:
                stop.wait(min(60.0, period_seconds))
                continue
            summary = reconcile(uids=uids, agent=agent, dry_run=False, limiter=limiter)
        except DatabaseError as exc:
            logger.warning("reconcile: database unavailable (%s); retrying", exc)
            stop.wait(5.0)
            continue
        for name in ("checked", "equal", "in_flight", "errors", "drifted_users", "repaired"):
            setattr(total, name, getattr(total, name) + getattr(summary, name))
        total.drifted.update(summary.drifted)
        on_batch(total, rate)
    return total


# --- resync ----------------------------------------------------------------------------------


def resync_candidates(*, uids: Iterable[uuid.UUID] | None = None, joined_before: datetime | None = None) -> Iterator:
    users = User.objects.order_by("pk")
    if uids is not None:
        users = users.filter(uid__in=[uuid.UUID(str(u)) for u in uids])
    if joined_before is not None:
        users = users.filter(date_joined__lt=joined_before)
    return users.values_list("uid", flat=True).iterator(chunk_size=2000)


@dataclass(frozen=True)
class ResyncProgress:
    total: int
    delivered: int  # done, or skipped because the user is gone
    dead: int

    @property
    def finished(self) -> bool:
        return self.delivered + self.dead >= self.total


def resync_progress(*, event_ids: list[int]) -> ResyncProgress:
    """How far the resync events with these outbox ids got (ids are contiguous per batch)."""
    if not event_ids:
        return ResyncProgress(0, 0, 0)
    # An id range, not an IN list of 100k ids; drift repairs in the range have another reason.
    rows = OutboxEvent.objects.filter(
        type=events.AGENT_RESYNC_REQUESTED, pk__gte=min(event_ids), pk__lte=max(event_ids), data__reason="resync"
    )
    counts = dict(rows.values_list("status").annotate(n=Count("pk")))
    total = len(event_ids)
    delivered = min(total, counts.get(OutboxEvent.Status.DELIVERED, 0))
    return ResyncProgress(total=total, delivered=delivered, dead=counts.get(OutboxEvent.Status.DEAD, 0))
