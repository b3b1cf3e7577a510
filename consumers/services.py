"""Dead-letter replay and outbox pruning, as operations: selection, publishing, reporting.

The row writes they need are agent_bridge.outbox's (the one owner of delivery state).
"""
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from django.conf import settings

from agent_bridge import events
from agent_bridge import outbox as owner
from agent_bridge.delivery import Cause
from agent_bridge.events import Envelope
from agent_bridge.timing import bus_timing
from consumers import selectors
from consumers.models import DeadLetter

logger = logging.getLogger(__name__)


# --- replay --------------------------------------------------------------------------------

class ReplayOutcome(StrEnum):
    REPLAYED = "replayed"
    SKIPPED = "skipped"
    FAILED = "failed"
    WOULD_REPLAY = "would replay"
    WOULD_SKIP = "would skip"


REPLAYED = ReplayOutcome.REPLAYED
SKIPPED = ReplayOutcome.SKIPPED
FAILED = ReplayOutcome.FAILED
WOULD_REPLAY = ReplayOutcome.WOULD_REPLAY
WOULD_SKIP = ReplayOutcome.WOULD_SKIP


@dataclass
class ReplayItem:
    event_id: str
    type: str
    uid: str | None
    outcome: ReplayOutcome | str  # "" until decided
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
    return (
        dead_letter.cause != Cause.MALFORMED
        and isinstance(envelope, dict)
        and bool(envelope.get("id"))
        and bool(envelope.get("type"))
    )


class _ConfirmedPublisher:
    """A lazily opened broker connection that publishes to the work exchange with confirms."""

    def __init__(self) -> None:
        self.connection = None
        self.channel = None

    def __call__(self, envelope: Envelope) -> None:
        from agent_bridge.transports import rabbitmq as amqp

        if self.channel is None:
            self.connection = amqp.connect(name="kairos-replay")
            self.channel = self.connection.channel()
            amqp.topology_declare(self.channel, amqp.topology_from_settings())
            self.channel.confirm_delivery()
        amqp.envelope_publish_rollback_unsafe(self.channel, amqp.topology_from_settings(), envelope)

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
    from agent_bridge.transports.rabbitmq import CONNECTION_ERRORS, PUBLISH_REFUSED

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
                owner.dead_letter_resolve_stale(dead_letter=dead_letter, reason=stale)
                item.outcome, item.detail = SKIPPED, stale
            elif amqp_mode:
                try:
                    owner.dead_letter_republish(dead_letter=dead_letter, publish=publish, timing=bus_timing())
                    item.outcome = REPLAYED
                except PUBLISH_REFUSED as exc:  # this one was refused: try the rest
                    item.outcome, item.detail = FAILED, f"{type(exc).__name__}: {exc}"[:300]
                except CONNECTION_ERRORS as exc:
                    item.outcome, item.detail = FAILED, f"broker unavailable: {type(exc).__name__}"
                    report.aborted = item.detail
            else:
                owner.dead_letter_requeue_embedded(dead_letter=dead_letter)
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

outbox_prune = owner.outbox_prune
