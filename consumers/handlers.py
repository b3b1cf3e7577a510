"""One handler per event type: the Agent call (or email) that an event stands for.

Handlers are idempotent (delivery is at least once), return a `Status` (delivered or skipped)
and raise `DeliveryError`s (Agent errors, LeaseBusy, the email errors below), each of which
says how it may be retried; the retry and dead-letter policy lives in consumers.processing.

Every handler runs while its consumer is the only one working on the event's user (the
transport's ownership: the user's lease on the embedded bus, the partition on RabbitMQ; see
consumers.processing.process_envelope), for the whole read-current-state → call-the-Agent →
record-the-result sequence, so Agent calls about one user never interleave, whatever the number
of consumers. Each first checks that the user still exists locally: a deleted user is never
re-created at the Agent (the `user.deleted` handler is owned the same way, so it runs entirely
before or after).

State-carrying handlers (`allergies.replaced`, `preferences.updated`, `user.registered`) send
the state read from the database *now*, not the event's payload. An event is only a "something
changed" signal; a stale, duplicated, replayed or reordered event therefore re-sends the
current state (or nothing, when the Agent already holds that revision) and can never overwrite
a newer state at the Agent with an older one.
"""

import logging
import smtplib
import uuid
from collections.abc import Callable
from typing import Any

from agent_bridge import events, verification
from agent_bridge import services as bridge_services
from agent_bridge.agent_client import AgentClient, AgentUserNotFound
from agent_bridge.delivery import Cause, DeliveryError, Outcome, Retry, Status
from agent_bridge.events import Envelope
from agent_bridge.leases import user_lease_forget
from allergies import selectors as allergy_selectors
from allergies import services as allergy_services
from identity import selectors as identity_selectors
from identity.preferences import agent_patches

logger = logging.getLogger(__name__)

DELIVERED = Status.DELIVERED
SKIPPED = Status.SKIPPED  # nothing left to do, e.g. the user is gone

Handler = Callable[[Envelope, AgentClient], Status]
# Called after a failed delivery attempt with the envelope and its outcome, e.g. to show the
# user that their allergy profile is not yet at the Agent.
FailureRecorder = Callable[[Envelope, Outcome], None]


def _uid(envelope: Envelope) -> uuid.UUID:
    return uuid.UUID(str(envelope["uid"]))


def _agent_user_create_with_snapshot(uid: uuid.UUID, agent: AgentClient) -> bool:
    """Create the user at the Agent with the full current profile (call under the lease).

    True when the Agent created it from this snapshot: the allergy and preference revisions
    read here are then recorded as synced. False when the user already existed at the Agent
    (the snapshot was ignored) or no longer exists here (nothing is created).
    """
    allergies = allergy_selectors.allergy_profile_get_by_uid(uid=uid)
    preferences = identity_selectors.user_preferences_get_by_uid(uid=uid)
    if allergies is None or preferences is None:
        return False
    answer = agent.create_user(
        uid=str(uid),
        preferences=preferences.data,
        allergies={
            "confirmed": allergies.confirmed,
            "intolerances": allergies.intolerances,
            "severity": allergies.severity,
        },
        allergy_flags=allergies.allergy_flags,
    )
    created = bool(answer.get("created"))
    if created:
        allergy_services.allergy_sync_record_success(uid=uid, revision=allergies.revision)
        verification.preferences_sync_record(uid=uid, revision=preferences.revision)
    return created


def handle_user_registered(envelope: Envelope, agent: AgentClient) -> Status:
    """Create the user at the Agent with its full current profile; idempotent at the Agent."""
    uid = _uid(envelope)
    if not identity_selectors.user_exists(uid=uid):
        return SKIPPED  # deleted before we got here: never resurrect it at the Agent
    _agent_user_create_with_snapshot(uid, agent)
    return DELIVERED


def handle_allergies_replaced(envelope: Envelope, agent: AgentClient) -> Status:
    """Send the *current* allergy profile unless the Agent already holds its revision."""
    uid = _uid(envelope)
    state = allergy_selectors.allergy_profile_get_by_uid(uid=uid)
    if state is None:
        return SKIPPED  # the user is gone
    if state.synced_revision >= state.revision:
        return SKIPPED  # a newer (or this) revision is already at the Agent
    try:
        agent.replace_allergies(
            uid=str(uid), confirmed=state.confirmed, intolerances=state.intolerances, severity=state.severity
        )
    except AgentUserNotFound:
        # The snapshot carries this very profile, so when the Agent creates the user from
        # it there is nothing left to retry (and the lease is held for one call less).
        if _agent_user_create_with_snapshot(uid, agent):
            return DELIVERED
        agent.replace_allergies(
            uid=str(uid), confirmed=state.confirmed, intolerances=state.intolerances, severity=state.severity
        )
    allergy_services.allergy_sync_record_success(uid=uid, revision=state.revision)
    return DELIVERED


def record_allergy_failure(envelope: Envelope, outcome: Outcome) -> None:
    """After a failed attempt the profile shows `failing` with the error (DESIGN §6).

    A busy owner is not a failure to reach the Agent: another consumer is syncing this user.
    """
    if envelope.get("uid") and outcome.cause is not Cause.OWNER_BUSY:
        allergy_services.allergy_sync_record_failure(uid=_uid(envelope), error=outcome.error)


def handle_preferences_updated(envelope: Envelope, agent: AgentClient) -> Status:
    """Merge the *full current* preferences at the Agent, after resetting the keys whose
    removals its merge cannot express (identity.preferences.agent_patches).

    The Agent deep-merges, so sending everything we hold (rather than the event's delta) is
    idempotent and makes a lost or reordered delta harmless; a retry after a failure between
    the two merges sends both again.
    """
    uid = _uid(envelope)
    current = identity_selectors.user_preferences_get_by_uid(uid=uid)
    if current is None:
        return SKIPPED  # the user is gone
    patches = agent_patches(current.data, current.reset_keys)
    try:
        agent.update_preferences(uid=str(uid), preferences=patches[0])
    except AgentUserNotFound:
        if _agent_user_create_with_snapshot(uid, agent):
            return DELIVERED  # created from the current document: nothing to reset
        agent.update_preferences(uid=str(uid), preferences=patches[0])
    for patch in patches[1:]:
        agent.update_preferences(uid=str(uid), preferences=patch)
    verification.preferences_sync_record(uid=uid, revision=current.revision)
    return DELIVERED


def handle_interactions_clear_requested(envelope: Envelope, agent: AgentClient) -> Status:
    uid = _uid(envelope)
    if not identity_selectors.user_exists(uid=uid):
        return SKIPPED
    try:
        agent.clear_interactions(uid=str(uid))
    except AgentUserNotFound:
        # The Agent has no such user, hence no history: the clear is done. The Agent must
        # still hold every live user's profile (allergies above all), so repair it now
        # rather than wait for the next profile change; a new user has no history.
        _agent_user_create_with_snapshot(uid, agent)
    bridge_services.interaction_mirror_clear_done(uid=uid)
    return DELIVERED


def _agent_interactions_fetch(uid: uuid.UUID, agent: AgentClient) -> tuple[list[dict[str, Any]], int]:
    """Newest first, in pages of 100, up to INTERACTIONS_MIRROR_MAX_ITEMS items."""
    items: list[dict[str, Any]] = []
    total = 0
    cap = bridge_services.INTERACTIONS_MIRROR_MAX_ITEMS
    while len(items) < cap:
        page = agent.get_interactions(
            uid=str(uid),
            limit=min(bridge_services.INTERACTIONS_PAGE_SIZE, cap - len(items)),
            offset=len(items),
            include_response=True,
        )
        batch = [item for item in page.get("interactions") or [] if isinstance(item, dict)]
        total = int(page.get("total") or 0)
        items.extend(batch)
        if not batch or len(items) >= total:
            break
    return items[:cap], total


def handle_interactions_refresh_requested(envelope: Envelope, agent: AgentClient) -> Status:
    uid = _uid(envelope)
    if not identity_selectors.user_exists(uid=uid):
        return SKIPPED
    try:
        items, total = _agent_interactions_fetch(uid, agent)
    except AgentUserNotFound:
        # No user at the Agent means no history: mirror the empty history (and repair the
        # Agent's copy of the profile, as for a clear).
        _agent_user_create_with_snapshot(uid, agent)
        items, total = [], 0
    stored = bridge_services.interaction_mirror_store(uid=uid, items=items, total=total)
    return DELIVERED if stored else SKIPPED


def handle_user_deleted(envelope: Envelope, agent: AgentClient) -> Status:
    """Erase the user at the Agent, then read the erasure back: an older create may land late."""
    uid = _uid(envelope)
    agent.delete_user(uid=str(uid))  # a 404 counts as done
    user_lease_forget(uid=uid)
    verification.erasure_read_back_start(uid=uid)
    return DELIVERED


def handle_agent_resync_requested(envelope: Envelope, agent: AgentClient) -> Status:
    """Push the user's full current state (resync_agent, drift repair): create the user from a
    snapshot, or, when the Agent has it, replace its allergies and merge our preferences."""
    uid = _uid(envelope)
    allergies = allergy_selectors.allergy_profile_get_by_uid(uid=uid)
    preferences = identity_selectors.user_preferences_get_by_uid(uid=uid)
    if allergies is None or preferences is None:
        return SKIPPED  # the user is gone
    profile = {"confirmed": allergies.confirmed, "intolerances": allergies.intolerances,
               "severity": allergies.severity}
    # After the Agent lost its data most users are missing: one call creates them whole.
    created = agent.create_user(
        uid=str(uid), preferences=preferences.data, allergies=profile, allergy_flags=allergies.allergy_flags
    ).get("created")
    if not created:
        agent.replace_allergies(uid=str(uid), **profile)
        for patch in agent_patches(preferences.data, preferences.reset_keys):
            agent.update_preferences(uid=str(uid), preferences=patch)
    allergy_services.allergy_sync_record_success(uid=uid, revision=allergies.revision)
    verification.preferences_sync_record(uid=uid, revision=preferences.revision)
    return DELIVERED


class EmailSendFailed(DeliveryError):
    """The email backend failed (SMTP error, connection refused): retry now, then later."""

    retry = Retry.NOW_AND_LATER
    cause = Cause.EMAIL
    code = "EMAIL_SEND_FAILED"


class EmailKindUnknown(DeliveryError):
    """An email.requested event with a kind identity.emails does not know: a bug, dead-letter it."""

    retry = Retry.NEVER
    cause = Cause.EMAIL
    code = "UNKNOWN_EMAIL_KIND"


def handle_email_requested(envelope: Envelope, agent: AgentClient) -> Status:
    """Send the email with Django's backend (no Agent call)."""
    # Imported here: identity.emails renders templates and builds link tokens, which the
    # Agent-bound handlers never need.
    from identity import emails

    kind = str((envelope.get("data") or {}).get("kind", ""))
    # No account: no mail (an erased event has no kind left; a reset for an unknown address names
    # nobody), except the deletion notice, whose address waits in its MailNotice row.
    if kind != emails.EmailKind.ACCOUNT_DELETED and not identity_selectors.user_exists(uid=_uid(envelope)):
        return SKIPPED
    try:
        sent = emails.account_email_send_rollback_unsafe(uid=_uid(envelope), kind=kind)
    except emails.UnknownEmailKind as exc:
        raise EmailKindUnknown(f"unknown email kind {kind!r}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise EmailSendFailed(f"{type(exc).__name__}: {exc}"[:300]) from exc
    return DELIVERED if sent else SKIPPED


# Every handler starts a read-back of the user when one of its Agent writes has an unknown
# outcome (agent_bridge.verification): the one hook of verification into the consumer.
_HANDLERS: dict[str, Handler] = {
    events.USER_REGISTERED: handle_user_registered,
    events.EMAIL_REQUESTED: handle_email_requested,
    events.ALLERGIES_REPLACED: handle_allergies_replaced,
    events.PREFERENCES_UPDATED: handle_preferences_updated,
    events.INTERACTIONS_CLEAR_REQUESTED: handle_interactions_clear_requested,
    events.INTERACTIONS_REFRESH_REQUESTED: handle_interactions_refresh_requested,
    events.USER_DELETED: handle_user_deleted,
    events.AGENT_RESYNC_REQUESTED: handle_agent_resync_requested,
    events.AGENT_READ_BACK_DUE: verification.handle_read_back_due,
}
HANDLERS: dict[str, Handler] = {
    event_type: verification.read_back_on_unknown_outcome(handler) for event_type, handler in _HANDLERS.items()
}

FAILURE_RECORDERS: dict[str, FailureRecorder] = {
    events.ALLERGIES_REPLACED: record_allergy_failure,
}
