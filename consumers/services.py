"""Writes of the consumers app: what became of each delivery, dead-letter replay, outbox pruning."""
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent_bridge import events
from agent_bridge.events import Envelope
from agent_bridge.models import OutboxEvent
from consumers import selectors
from consumers.models import DeadLetter
from project import metrics

logger = logging.getLogger("consumers.replay")


def outbox_event_mark_delivered(*, event_id: uuid.UUID | str) -> None:
    OutboxEvent.objects.filter(event_id=event_id).update(
        status=OutboxEvent.Status.DELIVERED,
        delivered_at=timezone.now(),
        claimed_by="",
        claimed_until=None,
        last_error="",
    )


def outbox_settle_deadline(*, after_seconds: float = 0.0) -> datetime:
    """When an event handed to RabbitMQ must have been settled; past it the relay publishes it again."""
    return timezone.now() + timedelta(seconds=after_seconds + settings.BUS_REPUBLISH_AFTER_SECONDS)


def outbox_event_note_retry(*, event_id: uuid.UUID | str, attempt: int, error: str, delay_seconds: float) -> None:
    OutboxEvent.objects.filter(event_id=event_id).update(
        attempts=attempt, last_error=error, available_at=outbox_settle_deadline(after_seconds=delay_seconds)
    )


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
    if created:
        metrics.dead_letter_recorded(event_type=dead_letter.type)
    return dead_letter


# --- replay --------------------------------------------------------------------------------

REPLAYED = "replayed"
SKIPPED = "skipped"
FAILED = "failed"
WOULD_REPLAY = "would replay"
WOULD_SKIP = "would skip"


@dataclass
class ReplayItem:
    event_id: str
    type: str
    uid: str | None
    outcome: str  # replayed | skipped | failed | would replay | would skip
    detail: str = ""


@dataclass
class ReplayReport:
    dry_run: bool
    items: list[ReplayItem] = field(default_factory=list)
    aborted: str = ""  # why the run stopped early (the broker went away), else ""

    def count(self, outcome: str) -> int:
        return sum(1 for item in self.items if item.outcome == outcome)

    @property
    def replayed(self) -> int:
        return self.count(REPLAYED)

    @property
    def skipped(self) -> int:
        return self.count(SKIPPED)

    @property
    def failed(self) -> int:
        return self.count(FAILED)


ProgressCallback = Callable[[int, int, ReplayItem], None]


def _stale_allergy_reason(dead_letter: DeadLetter) -> str:
    """Why an allergy dead letter is not worth re-sending ("" when it is).

    The Agent already holds this revision or a newer one (the profile's `synced_revision`),
    so re-sending could at best repeat it and at worst (were the handler not careful) move
    the Agent back to an older state.
    """
    if dead_letter.type != events.ALLERGIES_REPLACED or dead_letter.uid is None:
        return ""
    revision = (dead_letter.envelope.get("data") or {}).get("revision")
    synced = selectors.allergy_synced_revision_get(uid=dead_letter.uid)
    if isinstance(revision, int) and synced is not None and revision <= synced:
        return f"stale: revision {revision}, the Agent already has revision {synced}"
    return ""


def _replayable(dead_letter: DeadLetter) -> bool:
    envelope = dead_letter.envelope
    return isinstance(envelope, dict) and bool(envelope.get("id")) and bool(envelope.get("type")) and (
        "raw" not in envelope
    )


def _dead_letter_resolve_stale(dead_letter: DeadLetter, reason: str) -> None:
    """A superseded event counts as done, as the handler's own "skipped" would."""
    with transaction.atomic():
        DeadLetter.objects.filter(pk=dead_letter.pk).delete()
        OutboxEvent.objects.filter(event_id=dead_letter.event_id, status=OutboxEvent.Status.DEAD).update(
            status=OutboxEvent.Status.DELIVERED, delivered_at=timezone.now(), last_error=f"replay skipped: {reason}"
        )


def _outbox_row_for(dead_letter: DeadLetter) -> OutboxEvent:
    """The event's outbox row, recreated from the stored envelope if it is gone."""
    envelope = dead_letter.envelope
    row, _ = OutboxEvent.objects.get_or_create(
        event_id=dead_letter.event_id,
        defaults={
            "type": dead_letter.type,
            "uid": dead_letter.uid,
            "data": envelope.get("data") or {},
            "status": OutboxEvent.Status.DEAD,
        },
    )
    return row


def _replay_embedded(dead_letter: DeadLetter) -> None:
    # The embedded consumer never touches a dead row, so one transaction is all it takes.
    with transaction.atomic():
        row = _outbox_row_for(dead_letter)
        OutboxEvent.objects.filter(pk=row.pk).update(
            status=OutboxEvent.Status.PENDING,
            attempts=0,
            available_at=timezone.now(),
            claimed_by="",
            claimed_until=None,
            last_error="",
        )
        DeadLetter.objects.filter(pk=dead_letter.pk).delete()


def _replay_amqp(dead_letter: DeadLetter, publish: Callable[[Envelope], None]) -> None:
    """Publish with confirms; the dead letter goes only once the broker confirmed.

    The outbox row is set back to `published` *before* publishing: a consumer that takes the
    message at once must find a row it can mark delivered (or dead again) that nothing later
    overwrites. If publishing fails the row goes back to `dead`. If this process dies between
    the two, the row shows as backlog and the dead letter stays, so running the replay again
    repairs it (delivery is at least once, handlers are idempotent).
    """
    with transaction.atomic():
        row = _outbox_row_for(dead_letter)
        OutboxEvent.objects.filter(pk=row.pk).update(
            status=OutboxEvent.Status.PUBLISHED,
            attempts=0,
            published_at=timezone.now(),
            available_at=outbox_settle_deadline(),
            last_error="",
        )
    try:
        publish(dead_letter.envelope)
    except BaseException:
        OutboxEvent.objects.filter(pk=row.pk, status=OutboxEvent.Status.PUBLISHED).update(
            status=OutboxEvent.Status.DEAD, attempts=dead_letter.attempts, last_error=dead_letter.reason
        )
        raise
    # Unless the replayed event already failed again (the consumer updated this dead letter).
    DeadLetter.objects.filter(pk=dead_letter.pk, last_failed_at=dead_letter.last_failed_at).delete()


class _ConfirmedPublisher:
    """A lazily opened broker connection that publishes to the work exchange with confirms."""

    def __init__(self) -> None:
        self.connection = None
        self.channel = None

    def __call__(self, envelope: Envelope) -> None:
        from agent_bridge.transports import rabbitmq as amqp

        if self.channel is None:
            self.connection = amqp.connect_rollback_unsafe(name="kairos-replay")
            self.channel = self.connection.channel()
            amqp.topology_declare(self.channel, amqp.topology_from_settings())
            self.channel.confirm_delivery()
        amqp.envelope_publish(self.channel, amqp.topology_from_settings(), envelope)

    def close(self) -> None:
        from agent_bridge.transports import rabbitmq as amqp

        amqp.connection_close_quietly(self.connection)


def dead_letter_replay(
    *,
    event_types: Iterable[str] | None = None,
    uids: Iterable[uuid.UUID | str] | None = None,
    older_than: timedelta | None = None,
    ids: Iterable[int] | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    on_progress: ProgressCallback | None = None,
    publish: Callable[[Envelope], None] | None = None,
) -> ReplayReport:
    """Send dead letters back to the consumer, oldest failure first.

    Filters combine with AND; `older_than` keeps dead letters whose last failure is at least
    that old. AMQP mode (AMQP_URL set) publishes each event with publisher confirms and
    deletes its dead letter only after the confirm; embedded mode makes its outbox row due
    again. An allergy event whose revision the Agent already holds is skipped: its dead letter
    is deleted as resolved, not re-sent. `dry_run` only reports what would happen.
    `publish` replaces the broker publisher (tests).
    """
    selected = list(
        selectors.dead_letters_select(event_types=event_types, uids=uids, older_than=older_than, ids=ids, limit=limit)
    )
    report = ReplayReport(dry_run=dry_run)
    amqp_mode = bool(settings.AMQP_URL) or publish is not None
    publisher = None
    if amqp_mode and not dry_run and publish is None:
        publisher = _ConfirmedPublisher()
        publish = publisher
    from pika.exceptions import NackError, UnroutableError

    from agent_bridge.transports.rabbitmq import CONNECTION_ERRORS

    try:
        for index, dead_letter in enumerate(selected, start=1):
            item = ReplayItem(
                event_id=str(dead_letter.event_id),
                type=dead_letter.type,
                uid=str(dead_letter.uid) if dead_letter.uid else None,
                outcome="",
            )
            stale = _stale_allergy_reason(dead_letter)
            if not _replayable(dead_letter):
                item.outcome, item.detail = FAILED, "not an event envelope; inspect it in the admin"
            elif dry_run:
                item.outcome, item.detail = (WOULD_SKIP, stale) if stale else (WOULD_REPLAY, "")
            elif stale:
                _dead_letter_resolve_stale(dead_letter, stale)
                item.outcome, item.detail = SKIPPED, stale
            elif amqp_mode:
                try:
                    _replay_amqp(dead_letter, publish)
                    item.outcome = REPLAYED
                except (NackError, UnroutableError) as exc:  # this one was refused: try the rest
                    item.outcome, item.detail = FAILED, f"{type(exc).__name__}: {exc}"[:300]
                except CONNECTION_ERRORS as exc:
                    item.outcome, item.detail = FAILED, f"broker unavailable: {type(exc).__name__}"
                    report.aborted = item.detail
            else:
                _replay_embedded(dead_letter)
                item.outcome = REPLAYED
            report.items.append(item)
            logger.info(
                "replay %s event_id=%s event_type=%s uid=%s%s",
                item.outcome,
                item.event_id,
                item.type,
                item.uid,
                f" detail={item.detail!r}" if item.detail else "",
            )
            if on_progress is not None:
                on_progress(index, len(selected), item)
            if report.aborted:
                break
    finally:
        if publisher is not None:
            publisher.close()
    return report


# --- retention -----------------------------------------------------------------------------


def outbox_prune(
    *,
    older_than_days: int | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete delivered outbox rows delivered more than `older_than_days` ago (default
    OUTBOX_RETENTION_DAYS), `batch_size` rows per transaction so that the table is never
    locked for long. Pending, published and dead rows are never pruned. Returns the count
    deleted (or, with `dry_run`, that would be)."""
    days = settings.OUTBOX_RETENTION_DAYS if older_than_days is None else older_than_days
    if days < 0:
        raise ValueError("older_than_days must be >= 0")
    prunable = selectors.outbox_prunable(older_than=timedelta(days=days))
    if dry_run:
        return prunable.count()
    total = 0
    while True:
        with transaction.atomic():
            pks = list(prunable.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not pks:
                return total
            deleted, _ = OutboxEvent.objects.filter(pk__in=pks).delete()
        total += deleted
        if on_batch is not None:
            on_batch(total)
