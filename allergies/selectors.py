"""Reads of the allergies app."""
import uuid
from dataclasses import dataclass
from datetime import datetime

from allergies.models import AllergyProfile, allergy_flags_for
from allergies.vocabulary import CANONICAL_NAMES
from identity.models import User

SYNC_SYNCED = "synced"
SYNC_PENDING = "pending"
SYNC_FAILING = "failing"

# What the user is told about the sync: a stable code and a short message. The operator's detail
# (the Agent's error, with its path) stays in `sync_last_error`, shown in the admin and the logs.
SYNC_MESSAGES: dict[str, str] = {
    "synced": "Your allergy profile is up to date everywhere.",
    "pending": "Saved. It is on its way to your recommendations.",
    "agent_unreachable": "Saved. The recommendation service cannot be reached right now; we keep trying.",
    "agent_rejected": "Saved, but the recommendation service refused it; our team has been alerted.",
    "sync_failed": "Saved, but not yet sent to your recommendations; we keep trying.",
}
SYNC_STATES: tuple[str, ...] = (SYNC_SYNCED, SYNC_PENDING, SYNC_FAILING)
SYNC_CODES: tuple[str, ...] = tuple(SYNC_MESSAGES)
# The first word of a recorded failure is the error's class (consumers.processing._describe).
_FAILURE_CODES: dict[str, str] = {
    "AgentConnectionError": "agent_unreachable",
    "AgentTimeout": "agent_unreachable",
    "AgentUnavailable": "agent_unreachable",
    "AgentTransientError": "agent_unreachable",
    "AgentPermanentError": "agent_rejected",
    "AgentUserNotFound": "agent_rejected",
    "AgentAuthError": "agent_rejected",
    "AgentInvalidPayload": "agent_rejected",
    "AgentMissingUserId": "agent_rejected",
}


@dataclass(frozen=True)
class AllergyState:
    """An allergy profile as the API and the consumer see it (a user without one is at revision 0)."""

    confirmed: list[str]
    intolerances: list[str]
    severity: dict[str, str]
    revision: int
    updated_at: datetime | None
    synced_revision: int
    sync_last_error: str
    sync_failed_at: datetime | None

    @property
    def allergy_flags(self) -> list[str]:
        return allergy_flags_for(self.confirmed, self.intolerances)

    @property
    def sync_state(self) -> str:
        """synced: the Agent holds this revision (or a newer one never exists, so: this one).
        failing: not synced, and a delivery attempt failed since this revision was written.
        pending: not synced, and no attempt has failed yet for this revision."""
        if self.synced_revision >= self.revision:
            return SYNC_SYNCED
        if self.sync_failed_at is not None:
            return SYNC_FAILING
        return SYNC_PENDING

    @property
    def sync_code(self) -> str:
        state = self.sync_state
        if state != SYNC_FAILING:
            return state
        return _FAILURE_CODES.get(self.sync_last_error.split(" ", 1)[0], "sync_failed")

    @property
    def sync(self) -> dict:
        code = self.sync_code
        return {
            "state": self.sync_state,
            "code": code,
            "message": SYNC_MESSAGES[code],
            "revision": self.revision,
            "synced_revision": self.synced_revision,
        }

    @property
    def custom(self) -> list[str]:
        """Listed names that are not in the canonical vocabulary (kept as the user wrote them, folded)."""
        return [name for name in [*self.confirmed, *self.intolerances] if name not in CANONICAL_NAMES]

    @property
    def recognised(self) -> list[str]:
        return [name for name in [*self.confirmed, *self.intolerances] if name in CANONICAL_NAMES]

    @classmethod
    def of(cls, profile: AllergyProfile | None) -> "AllergyState":
        if profile is None:
            return cls([], [], {}, 0, None, 0, "", None)
        return cls(
            confirmed=list(profile.confirmed),
            intolerances=list(profile.intolerances),
            severity=dict(profile.severity),
            revision=profile.revision,
            updated_at=profile.updated_at,
            synced_revision=profile.synced_revision,
            sync_last_error=profile.sync_last_error,
            sync_failed_at=profile.sync_failed_at,
        )


def allergy_profile_get(*, user) -> AllergyState:
    return AllergyState.of(AllergyProfile.objects.filter(user=user).first())


def allergy_profile_get_by_uid(*, uid: uuid.UUID | str) -> AllergyState | None:
    """The user's allergy state for the consumer; None when the user does not exist."""
    user = User.objects.filter(uid=uid).only("pk").first()
    if user is None:
        return None
    return AllergyState.of(AllergyProfile.objects.filter(user=user).first())
