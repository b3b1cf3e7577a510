"""Reads of the allergies app."""
import uuid
from dataclasses import dataclass
from datetime import datetime

from allergies.models import AllergyProfile, AllergyRevision, allergy_flags_for
from identity.models import User

SYNC_SYNCED = "synced"
SYNC_PENDING = "pending"
SYNC_FAILING = "failing"


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
    def sync(self) -> dict:
        state = self.sync_state
        return {
            "state": state,
            "revision": self.revision,
            "synced_revision": self.synced_revision,
            "last_error": (self.sync_last_error or None) if state != SYNC_SYNCED else None,
        }

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


def _revision_row(revision: AllergyRevision) -> dict:
    return {
        "revision": revision.revision,
        "created_at": revision.created_at,
        "changes": revision.changes,
        "session": {"id": revision.session_id, "device": revision.session_device}
        if revision.session_id is not None
        else None,
    }


def allergy_history_page_get(*, user, limit: int, offset: int) -> dict:
    """One page of the profile's revisions, newest first: {history, total, limit, offset}."""
    revisions = AllergyRevision.objects.filter(user=user)
    page = revisions.order_by("-revision")[offset : offset + limit]
    return {
        "history": [_revision_row(revision) for revision in page],
        "total": revisions.count(),
        "limit": limit,
        "offset": offset,
    }


def allergy_history_all(*, user) -> list[dict]:
    """Every kept revision, oldest first (for the data export)."""
    return [_revision_row(revision) for revision in AllergyRevision.objects.filter(user=user).order_by("revision")]
