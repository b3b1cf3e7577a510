"""The Agent's copy of a user, verified rather than assumed: comparison, read-back, repair.

One owner for `AgentCopy` and `AgentDriftCount` (agent_bridge.models); the consumer and the
`reconcile_agent` / `resync_agent` commands go through these functions.

- **Comparison** (:func:`compare`): allergies exactly (the three lists and `allergy_flags`),
  preferences *as merged* (the Agent deep-merges what we send into what it learned, so its copy
  is right when merging ours into it changes nothing), except the user's *reset keys* (values the
  user removed, which a merge cannot show coming back): those must be exactly ours. Existence
  both ways. The reset keys are kept while a read-back runs (:func:`preferences_sync_record`),
  so that an older write landing late cannot re-add unseen what the user removed.
- **Read-back after an uncertain outcome.** When an Agent write was sent but no answer came
  (:class:`AgentOutcomeUnknown`), the Agent may apply it later, even after a newer write. The
  handler wrapper :func:`read_back_on_unknown_outcome` starts a *read-back chain*: delayed
  `agent.read_back_due` events in the outbox (so a crash loses none), one per delay of
  AGENT_READ_BACK_DELAYS_SECONDS. Each step reads the user back (`GET /users/{uid}`), compares
  with the current state and repairs a difference; the allergy profile shows `pending` (never
  `synced`) until the last step of the newest chain found the copy equal.
- **Repair goes through the bus**, never around it: a drift becomes an `agent.resync_requested`
  (full state) or `user.deleted` event, so per-user order, retries and dead letters still hold,
  and a fresh read-back chain checks that the repair landed.
- **Comparisons are only made at rest**: while an event that changes the user's copy is still
  undelivered the copy is *in flight*, not drifted, and the check is skipped.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from agent_bridge import events
from agent_bridge.agent_client import AgentClient, AgentOutcomeUnknown, AgentUserNotFound
from agent_bridge.events import Envelope
from agent_bridge.models import AgentCopy, AgentDriftCount, OutboxEvent
from agent_bridge.outbox import outbox_event_add
from allergies import selectors as allergy_selectors
from allergies import services as allergy_services
from allergies.contract import allergy_flags_for
from identity import selectors as identity_selectors
from identity import services as identity_services
from identity.models import User
from identity.preferences import agent_patches, preferences_deep_merge

logger = logging.getLogger(__name__)

DriftKind = AgentDriftCount.Kind

#: Events that change the Agent's copy of a user: while one is undelivered, the copy is in flight.
_COPY_CHANGING = (
    events.USER_REGISTERED,
    events.ALLERGIES_REPLACED,
    events.PREFERENCES_UPDATED,
    events.USER_DELETED,
    events.AGENT_RESYNC_REQUESTED,
)
_UNDELIVERED = (OutboxEvent.Status.PENDING, OutboxEvent.Status.PUBLISHED)
#: Events whose handlers write the user's copy at the Agent (a user.deleted is always read back).
_COPY_WRITING = tuple(event_type for event_type in _COPY_CHANGING if event_type != events.USER_DELETED)


class CheckSource(StrEnum):
    READ_BACK = "read_back"
    RECONCILE = "reconcile"


@dataclass(frozen=True)
class Expected:
    """What the Agent should hold for a user: nothing (`exists` False), or this state."""

    uid: uuid.UUID
    exists: bool
    allergies: dict[str, Any] | None = None  # {"confirmed", "intolerances", "severity"}
    preferences: dict[str, Any] | None = None
    #: Preference keys the Agent must hold exactly as in `preferences`: the user removed values
    #: from them, and merging ours into a copy that got them back would change nothing.
    exact_preference_keys: tuple[str, ...] = ()
    preferences_revision: int = 0


@dataclass(frozen=True)
class CheckResult:
    uid: uuid.UUID
    drifts: tuple[DriftKind, ...] = ()
    in_flight: bool = False  # not compared: a change was still on its way
    preferences_revision: int = 0  # the revision of ours that was compared

    @property
    def equal(self) -> bool:
        return not self.in_flight and not self.drifts


def read_back_delays() -> tuple[float, ...]:
    """The read-back schedule (seconds after the previous step); never empty."""
    delays = tuple(float(d) for d in settings.AGENT_READ_BACK_DELAYS_SECONDS if float(d) >= 0)
    return delays or (0.0,)


def read_back_horizon_seconds() -> float:
    return sum(read_back_delays())


def _next_delay(step: int) -> float:
    """Delay before step `step` (0-based); past the horizon an unfinished chain (the copy was in
    flight at the last step) looks again after the shortest delay."""
    delays = read_back_delays()
    return delays[step] if step < len(delays) else delays[0]


# --- comparison (pure) --------------------------------------------------------------------


def compare(expected: Expected, held: dict[str, Any] | None) -> tuple[DriftKind, ...]:
    """The kinds of drift between what the Agent holds (`held`, None when it has no such user)
    and what it should hold."""
    if not expected.exists:
        return (DriftKind.LEFTOVER,) if held is not None else ()
    if held is None:
        return (DriftKind.MISSING,)
    drifts: list[DriftKind] = []
    ours = expected.allergies or {"confirmed": [], "intolerances": [], "severity": {}}
    allergies = held.get("allergies") if isinstance(held.get("allergies"), dict) else {}
    theirs = {
        "confirmed": allergies.get("confirmed", []),
        "intolerances": allergies.get("intolerances", []),
        "severity": allergies.get("severity", {}),
    }
    flags = allergy_flags_for(ours["confirmed"], ours["intolerances"])
    if theirs != ours or held.get("allergy_flags") != flags:
        drifts.append(DriftKind.ALLERGIES)
    preferences = held.get("preferences")
    ours_preferences = expected.preferences or {}
    if (
        not isinstance(preferences, dict)
        or preferences_deep_merge(preferences, ours_preferences) != preferences
        or any(preferences.get(key) != ours_preferences.get(key) for key in expected.exact_preference_keys)
    ):
        drifts.append(DriftKind.PREFERENCES)
    return tuple(drifts)


# --- reading both copies -----------------------------------------------------------------


def expected_get(*, uid: uuid.UUID) -> Expected:
    allergies = allergy_selectors.allergy_profile_get_by_uid(uid=uid)
    preferences = identity_selectors.user_preferences_get_by_uid(uid=uid)
    if allergies is None or preferences is None:
        return Expected(uid=uid, exists=False)
    return Expected(
        uid=uid,
        exists=True,
        allergies={
            "confirmed": list(allergies.confirmed),
            "intolerances": list(allergies.intolerances),
            "severity": dict(allergies.severity),
        },
        # What the Agent's copy must contain after our merges (reset keys emptied).
        preferences=agent_patches(preferences.data, preferences.reset_keys)[-1],
        exact_preference_keys=tuple(sorted(preferences.reset_keys)),
        preferences_revision=preferences.revision,
    )


def read_back_running(*, uid: uuid.UUID) -> bool:
    """Whether a read-back chain of the user is under way (an older write may still land)."""
    return AgentCopy.objects.filter(uid=uid, read_back_chain__isnull=False).exists()


def preferences_sync_record(*, uid: uuid.UUID, revision: int) -> None:
    """The consumer delivered preferences up to `revision`. While a read-back runs the reset keys
    stay (its last step clears them): an older write of unknown outcome may still land and
    re-add a removed value, which only an exact comparison of those keys can see."""
    identity_services.user_preferences_sync_record(
        uid=uid, revision=revision, keep_reset_keys=read_back_running(uid=uid)
    )


def copy_in_flight(*, uid: uuid.UUID) -> bool:
    """Whether an event that changes the Agent's copy of the user is still undelivered."""
    return OutboxEvent.objects.filter(uid=uid, status__in=_UNDELIVERED, type__in=_COPY_CHANGING).exists()


def agent_user_read(*, uid: uuid.UUID, agent: AgentClient) -> dict[str, Any] | None:
    try:
        return agent.get_user(uid=str(uid))
    except AgentUserNotFound:
        return None


def check(*, uid: uuid.UUID | str, agent: AgentClient) -> CheckResult:
    """Read the user back and compare, unless a change is in flight before or after the read.

    Our state is read on both sides of the Agent read: if anything moved meanwhile (a
    delivery started or finished), the Agent's answer may predate it, so no verdict is given.
    Raises the Agent client's errors (transient ones are retried by whoever called).
    """
    uid = uuid.UUID(str(uid))
    if copy_in_flight(uid=uid):
        return CheckResult(uid, in_flight=True)
    expected = expected_get(uid=uid)
    held = agent_user_read(uid=uid, agent=agent)
    if copy_in_flight(uid=uid) or expected_get(uid=uid) != expected:
        return CheckResult(uid, in_flight=True)
    return CheckResult(uid, drifts=compare(expected, held), preferences_revision=expected.preferences_revision)


# --- recording and repairing ------------------------------------------------------------


def drift_count(*, kind: DriftKind, at: datetime) -> None:
    AgentDriftCount.objects.get_or_create(kind=kind)
    AgentDriftCount.objects.filter(kind=kind).update(count=F("count") + 1, last_found_at=at)


#: Repairs in a row (each checked by a read-back) before automatic repair gives up on a user whose
#: copy keeps differing, rather than loop; the reconciler tries again within its period.
MAX_REPAIRS = 3


def check_record(result: CheckResult, *, source: CheckSource, repair: bool, repairs: int = 0) -> None:
    """Stamp the check, count drift by kind and (with `repair`) repair it through the bus.
    `repairs` is how many repairs in a row already led to this check."""
    now = timezone.now()
    with transaction.atomic():
        # The user's row before the copy, the order of an account deletion (which locks the user,
        # deletes the profile and then writes the tombstone): the copy first could deadlock the two.
        identity_selectors.user_locked_for_dependent_write(uid=result.uid)
        AgentCopy.objects.update_or_create(uid=result.uid, defaults={"checked_at": now})
        if result.equal:
            allergy_services.allergy_sync_record_verified(uid=result.uid, at=now, resolved=False)
        for kind in result.drifts:
            drift_count(kind=kind, at=now)
        if result.drifts:
            logger.warning(
                "agent copy drift uid=%s kinds=%s source=%s repair=%s",
                result.uid,
                ",".join(result.drifts),
                source,
                repair,
            )
        if repair and result.drifts:
            drift_repair(uid=result.uid, drifts=result.drifts, repairs=repairs)


def drift_repair(*, uid: uuid.UUID, drifts: tuple[DriftKind, ...], repairs: int = 0) -> None:
    """Queue the repair (call inside a transaction): erase a leftover, else push the full state;
    then read back again to see it landed."""
    if repairs >= MAX_REPAIRS:
        logger.error(
            "agent copy of uid=%s still differs (%s) after %s repairs in a row; left to reconcile_agent",
            uid, ",".join(drifts), repairs,
        )
        AgentCopy.objects.filter(uid=uid).update(read_back_chain=None)
        return
    if DriftKind.LEFTOVER in drifts:
        outbox_event_add(event_type=events.USER_DELETED, uid=uid, data={})
    else:
        # The Agent is known not to hold the profile: say so to the user until it does.
        allergy_services.allergy_sync_record_unconfirmed(uids=[uid])
        outbox_event_add(event_type=events.AGENT_RESYNC_REQUESTED, uid=uid, data={"reason": ",".join(drifts)})
    read_back_start(uid=uid, repairs=repairs + 1)


def erasure_read_back_start(*, uid: uuid.UUID) -> None:
    """The Agent erased the user (`user.deleted` delivered): read the erasure back over the horizon.

    An older write of ours that creates the user (`POST /users/{uid}`) may still land after the
    DELETE: one whose answer timed out, or whose consumer died waiting for it (which recorded no
    unknown outcome). Any write was sent before the DELETE, so a chain from now covers them all.
    A chain already running is a repair's (its count of repairs bounds the loop against an Agent
    that keeps the user): it is left alone."""
    if not read_back_running(uid=uid):
        read_back_start(uid=uid)


def read_back_start(*, uid: uuid.UUID | str, repairs: int = 0) -> uuid.UUID:
    """Start (or restart, superseding the previous one) the read-back chain of a user.

    A new uncertain outcome restarts the horizon from now: the write it stands for may land up
    to a horizon later. Returns the chain id.
    """
    uid = uuid.UUID(str(uid))
    chain = uuid.uuid4()
    now = timezone.now()
    with transaction.atomic():
        # The user's row and profile before the copy, the order of an account deletion (the user,
        # its cascade, then the tombstone): the other order deadlocked the two, and the deletion
        # answered 500.
        allergy_services.allergy_sync_record_verifying(uid=uid)
        copy, _ = AgentCopy.objects.select_for_update().get_or_create(uid=uid)
        copy.read_back_chain = chain
        copy.read_back_since = copy.read_back_since or now
        copy.save(update_fields=["read_back_chain", "read_back_since"])
        outbox_event_add(
            event_type=events.AGENT_READ_BACK_DUE,
            uid=uid,
            data={"chain": str(chain), "step": 0, "repairs": repairs},
            not_before=now + timedelta(seconds=_next_delay(0)),
        )
    logger.info("read-back started uid=%s chain=%s horizon_s=%s", uid, chain, read_back_horizon_seconds())
    return chain


def handle_read_back_due(envelope: Envelope, agent: AgentClient) -> str:
    """One step of a read-back chain (the `agent.read_back_due` handler)."""
    uid = uuid.UUID(str(envelope["uid"]))
    data = envelope.get("data") or {}
    chain, step, repairs = str(data.get("chain", "")), int(data.get("step", 0)), int(data.get("repairs", 0))
    # Runs while the consumer owns the user (the transport's ownership): no lease of its own.
    copy = AgentCopy.objects.filter(uid=uid).first()
    if copy is None or str(copy.read_back_chain) != chain:
        return "skipped"  # superseded by a newer chain, or already resolved
    result = check(uid=uid, agent=agent)
    with transaction.atomic():
        # A drift is repaired, and the repair starts a new chain that supersedes this one.
        check_record(result, source=CheckSource.READ_BACK, repair=True, repairs=repairs)
        if result.drifts:
            return "delivered"
        if result.equal and step + 1 >= len(read_back_delays()):
            AgentCopy.objects.filter(uid=uid, read_back_chain=chain).update(
                read_back_chain=None, read_back_since=None
            )
            # Nothing older can land any more: the reset keys kept for this check are done.
            identity_services.user_preferences_reset_keys_clear(uid=uid, revision=result.preferences_revision)
            allergy_services.allergy_sync_record_verified(uid=uid, at=timezone.now(), resolved=True)
            logger.info("read-back resolved uid=%s chain=%s steps=%s", uid, chain, step + 1)
        else:
            outbox_event_add(
                event_type=events.AGENT_READ_BACK_DUE,
                uid=uid,
                data={"chain": chain, "step": step + 1, "repairs": repairs},
                not_before=timezone.now() + timedelta(seconds=_next_delay(step + 1)),
            )
    return "delivered"


Handler = Callable[[Envelope, AgentClient], str]


def read_back_after_takeover(envelope: Envelope) -> None:
    """An earlier delivery of `envelope` may have died mid-handler (its consumer killed while the
    Agent held a write, which a live consumer would have recorded as an unknown outcome): take
    the outcome as unknown and read the user back. Call before the handler runs again."""
    if envelope.get("uid") and envelope.get("type") in _COPY_WRITING:
        read_back_start(uid=envelope["uid"])


def read_back_on_unknown_outcome(handler: Handler) -> Handler:
    """Wrap a consumer handler: an Agent write of unknown outcome starts the user's read-back
    (durably, before the error goes on to the retry policy, which retries it as transient)."""

    @functools.wraps(handler)
    def wrapped(envelope: Envelope, agent: AgentClient) -> str:
        try:
            return handler(envelope, agent)
        except AgentOutcomeUnknown:
            if envelope.get("uid"):
                read_back_start(uid=envelope["uid"])
            raise

    return wrapped


# --- tombstones, resync ------------------------------------------------------------------


def tombstone_add(*, uid: uuid.UUID) -> None:
    """Remember (uid only) that the account was deleted here, so reconciliation can verify the
    erasure at the Agent. Call in the deletion's transaction.

    The erasure also ends any read-back of the user: the bus empties the chain's pending event
    (so it could never resolve it); the delivery of `user.deleted` starts a fresh chain that reads
    the erasure back (:func:`erasure_read_back_start`), and reconciliation verifies it later."""
    AgentCopy.objects.update_or_create(
        uid=uid, defaults={"erased_at": timezone.now(), "read_back_chain": None, "read_back_since": None}
    )


def resync_request(*, uids: list[uuid.UUID]) -> list[int]:
    """Queue a full-state push of each user (one transaction); returns the outbox row ids.

    Their allergy profiles show `pending` until the push is delivered."""
    with transaction.atomic():
        allergy_services.allergy_sync_record_unconfirmed(uids=uids)
        rows = [
            outbox_event_add(event_type=events.AGENT_RESYNC_REQUESTED, uid=uid, data={"reason": "resync"})
            for uid in uids
        ]
    return [row.pk for row in rows]


# --- status --------------------------------------------------------------------------------


def verification_status_get() -> dict[str, Any]:
    """For bus_status and the admin: verification coverage and drift found, by kind."""
    now = timezone.now()
    users = User.objects.aggregate(
        users=Count("pk"),
        never_verified=Count("pk", filter=Q(allergy_profile__sync_verified_at__isnull=True)),
        oldest=Min("allergy_profile__sync_verified_at"),
    )
    copies = AgentCopy.objects.aggregate(
        verifying=Count("uid", filter=Q(read_back_chain__isnull=False)),
        tombstones=Count("uid", filter=Q(erased_at__isnull=False)),
    )
    drift = dict.fromkeys(DriftKind.values, 0)
    drift.update(dict(AgentDriftCount.objects.values_list("kind", "count")))
    oldest = users["oldest"]
    return {
        "users": users["users"],
        "never_verified": users["never_verified"],
        "oldest_verified_age_seconds": int((now - oldest).total_seconds()) if oldest else None,
        "verifying": copies["verifying"],
        "tombstones": copies["tombstones"],
        "read_back_horizon_seconds": read_back_horizon_seconds(),
        "drift": drift,
    }
