"""Writes of agent_bridge's interaction-history mirror (DESIGN §7).

agent_bridge is the bridge itself, so it writes its own outbox events directly (no signal),
always in the same transaction as the mirror change they go with.
"""
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agent_bridge import events
from agent_bridge.models import InteractionMirror
from agent_bridge.outbox import outbox_event_add
from identity import selectors as identity_selectors
from identity.models import User

#: Most history items the consumer copies from the Agent (newest first); older ones are not
#: mirrored. Pages of 100, the Agent's largest.
INTERACTIONS_MIRROR_MAX_ITEMS = 500
INTERACTIONS_PAGE_SIZE = 100
# Fields of the Agent's InteractionSummary (seed 000 §9) that the mirror does not keep.
# The uid is the user's own; the rest, agent_response included, is what the history shows.
_DROPPED_FIELDS = ("uid",)


def _max_age() -> timedelta:
    return timedelta(seconds=settings.INTERACTIONS_MIRROR_MAX_AGE_SECONDS)


def _is_stale(mirror: InteractionMirror | None, now) -> bool:
    return mirror is None or mirror.synced_at is None or now - mirror.synced_at > _max_age()


def _refresh_outstanding(mirror: InteractionMirror | None, now) -> bool:
    # A request older than the max age counts as lost (e.g. dead-lettered): ask again.
    return mirror is not None and mirror.refresh_requested_at is not None and (
        now - mirror.refresh_requested_at <= _max_age()
    )


def interaction_mirror_refresh_request_if_stale(*, user: User, force: bool = False) -> bool:
    """Queue `interactions.refresh_requested` when the mirror is missing or older than
    INTERACTIONS_MIRROR_MAX_AGE_SECONDS (or at once with `force`: the user asked), unless one is
    outstanding. True while a refresh is outstanding (the caller answers `refreshing: true`)."""
    now = timezone.now()
    mirror = InteractionMirror.objects.filter(user=user).first()
    if not (force or _is_stale(mirror, now)) or _refresh_outstanding(mirror, now):
        # The common read path takes no lock.
        return _refresh_outstanding(mirror, now)
    with transaction.atomic():
        mirror, _ = InteractionMirror.objects.select_for_update().get_or_create(user=user)
        if (force or _is_stale(mirror, now)) and not _refresh_outstanding(mirror, now):
            mirror.refresh_requested_at = now
            mirror.save(update_fields=["refresh_requested_at"])
            outbox_event_add(uid=user.uid, payload=events.InteractionsRefreshRequested())
    return _refresh_outstanding(mirror, now)


def interaction_history_clear(*, user: User) -> None:
    """Empty the mirror now and queue `interactions.clear_requested` for the Agent."""
    with transaction.atomic():
        mirror, _ = InteractionMirror.objects.select_for_update().get_or_create(user=user)
        mirror.items = []
        mirror.agent_total = 0
        # The empty mirror is what the user asked for: no refresh until it is older than the max age.
        mirror.synced_at = timezone.now()
        mirror.clear_pending = True
        mirror.save()
        outbox_event_add(uid=user.uid, payload=events.InteractionsClearRequested())


def interaction_mirror_store(*, uid: uuid.UUID | str, items: list[dict[str, Any]], total: int) -> bool:
    """Store the history fetched from the Agent (consumer). False when not stored: the user is
    gone, or a clear is pending (the fetched history is about to be erased at the Agent)."""
    with transaction.atomic():
        user = identity_selectors.user_locked_for_dependent_write(uid=uid)
        if user is None:
            return False
        mirror, _ = InteractionMirror.objects.select_for_update().get_or_create(user=user)
        mirror.refresh_requested_at = None
        stored = not mirror.clear_pending
        if stored:
            mirror.items = [{k: v for k, v in item.items() if k not in _DROPPED_FIELDS} for item in items]
            mirror.agent_total = total
            mirror.synced_at = timezone.now()
        mirror.save()
    return stored


def interaction_mirror_clear_done(*, uid: uuid.UUID | str) -> None:
    """The Agent has erased the history (consumer): the empty mirror is now in sync."""
    InteractionMirror.objects.filter(user__uid=uid, clear_pending=True).update(
        clear_pending=False, items=[], agent_total=0, synced_at=timezone.now()
    )
