"""Reads of the allergies app."""
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import connections
from django.db.models import Count, F, Q

from allergies.models import AllergyProfile, AllergyRevision, allergy_flags_for
from allergies.vocabulary import CANONICAL_NAMES
from identity import selectors as identity_selectors
from identity.models import AuthToken, User
from project import rawsql
from project.rawsql import Columns

SYNC_SYNCED = "synced"
SYNC_PENDING = "pending"
SYNC_FAILING = "failing"

# What the user is told about the sync: a stable code and a short message. The operator's detail
# (the Agent's error, with its path) stays in `sync_last_error`, shown in the admin and the logs.
SYNC_MESSAGES: dict[str, str] = {
    "synced": "Your allergy profile is up to date everywhere.",
    "pending": "Saved. It is on its way to your recommendations.",
    "verifying": "Saved. We are checking that your recommendations use it.",
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
    "AgentResponseTimeout": "agent_unreachable",
    "AgentConnectionLost": "agent_unreachable",
    "AgentOutcomeUnknown": "agent_unreachable",
    "AgentUnavailable": "agent_unreachable",
    "AgentTransientError": "agent_unreachable",
    "AgentPermanentError": "agent_rejected",
    "AgentUserNotFound": "agent_rejected",
    "AgentAuthError": "agent_rejected",
    "AgentInvalidPayload": "agent_rejected",
    "AgentMissingUserId": "agent_rejected",
}


_STATE_FIELDS = ("confirmed", "intolerances", "severity", "revision", "updated_at", "synced_revision",
                 "sync_last_error", "sync_failed_at", "sync_verified_at", "sync_verifying")


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
    sync_verified_at: datetime | None = None
    sync_verifying: bool = False

    @property
    def allergy_flags(self) -> list[str]:
        return allergy_flags_for(self.confirmed, self.intolerances)

    @property
    def sync_state(self) -> str:
        """synced: the Agent holds this revision (or a newer one never exists, so: this one), and
        no Agent call of unknown outcome is still being read back.
        failing: not synced, and a delivery attempt failed since this revision was written.
        pending: not synced, and no attempt has failed yet for this revision (or it is being
        verified after an uncertain outcome)."""
        if self.synced_revision >= self.revision and not self.sync_verifying:
            return SYNC_SYNCED
        if self.synced_revision >= self.revision:
            return SYNC_PENDING
        if self.sync_failed_at is not None:
            return SYNC_FAILING
        return SYNC_PENDING

    @property
    def sync_code(self) -> str:
        state = self.sync_state
        if state == SYNC_PENDING and self.synced_revision >= self.revision:
            return "verifying"  # sent, but an Agent call of unknown outcome is being read back
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
            "verified_at": self.sync_verified_at,
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
        return cls.of_fields({name: getattr(profile, name) for name in _STATE_FIELDS})

    @classmethod
    def of_fields(cls, fields: dict) -> "AllergyState":
        """From a profile's field values by attname (a row's converted columns: no model instance needed)."""
        return cls(
            confirmed=list(fields["confirmed"]),
            intolerances=list(fields["intolerances"]),
            severity=dict(fields["severity"]),
            revision=fields["revision"],
            updated_at=fields["updated_at"],
            synced_revision=fields["synced_revision"],
            sync_last_error=fields["sync_last_error"],
            sync_failed_at=fields["sync_failed_at"],
            sync_verified_at=fields["sync_verified_at"],
            sync_verifying=fields["sync_verifying"],
        )


def allergy_profile_get(*, user) -> AllergyState:
    return AllergyState.of(AllergyProfile.objects.filter(user=user).first())


PROFILE_COLUMNS = Columns(AllergyProfile, "p")
_PROFILE_USER_ID = PROFILE_COLUMNS.attnames.index("user_id")
_with_token_sql: dict[str, str] = {}
_by_uid_sql: dict[str, str] = {}


def allergy_profile_get_by_uid(*, uid: uuid.UUID | str) -> AllergyState | None:
    """The user's allergy state for the consumer; None when the user does not exist.

    One statement, the user joined with the profile it may not have, written once per database:
    the allergies handler reads it for every event, and compiling it through the ORM cost more
    CPU than the rest of the read."""
    using = "default"
    sql = _by_uid_sql.get(using)
    if sql is None:
        p, u = PROFILE_COLUMNS, identity_selectors.USER_COLUMNS
        # Only quoted names from the models' metadata are interpolated; the uid is a parameter.
        sql = _by_uid_sql[using] = (
            f"SELECT {p.select(using)} FROM {u.table(using)} u LEFT OUTER JOIN {p.table(using)} p "  # noqa: S608
            f"ON {p.column('user_id', using)} = {u.column('id', using)} WHERE {u.column('uid', using)} = %s"
        )
    uid_param = User._meta.get_field("uid").get_db_prep_value(uid, connections[using])
    row = rawsql.fetchone(sql, [uid_param], using=using)
    if row is None:
        return None
    # The profile's primary key is its user: NULL there means the user has no profile yet.
    if row[_PROFILE_USER_ID] is None:
        return AllergyState.of(None)
    p = PROFILE_COLUMNS
    return AllergyState.of_fields(dict(zip(p.attnames, p.values(row, 0, using), strict=True)))


def allergy_profile_get_with_token(*, raw: str) -> tuple[AuthToken, AllergyState] | None:
    """GET /api/allergies/ in one statement: the usable token whose secret is `raw` (as
    identity.selectors.auth_token_get_usable, same rules), its user and the user's allergy profile;
    None when the token is not usable."""
    using = "default"
    p = PROFILE_COLUMNS
    sql = _with_token_sql.get(using)
    if sql is None:
        sql = _with_token_sql[using] = identity_selectors.auth_token_usable_sql(
            columns=p.select(using),
            joins=f"LEFT OUTER JOIN {p.table(using)} p ON {p.column('user_id', using)} = "
            f"{identity_selectors.USER_COLUMNS.column('id', using)}",
            using=using,
        )
    row = rawsql.fetchone(sql, identity_selectors.auth_token_usable_params(raw=raw, using=using), using=using)
    if row is None:
        return None
    token = identity_selectors.auth_token_from_row(row, using=using)
    start = len(row) - len(p)
    # The profile's primary key is its user: NULL there means the user has no profile yet. Its columns go straight
    # into the state (no model instance: nothing else reads it).
    if row[start + _PROFILE_USER_ID] is None:
        return token, AllergyState.of(None)
    return token, AllergyState.of_fields(dict(zip(p.attnames, p.values(row, start, using), strict=True)))


_for_update_sql: dict[str, str] = {}


def allergy_profile_get_for_update(*, user: User) -> AllergyProfile | None:
    """The user's profile, its row locked until the end of the transaction (`SELECT ... FOR UPDATE` where the
    database has it; SQLite's IMMEDIATE transactions serialise writers anyway). Inside transaction.atomic only.
    None when the user has no profile yet. One written statement, no ORM compilation (every PUT runs it)."""
    using = "default"
    sql = _for_update_sql.get(using)
    if sql is None:
        p = PROFILE_COLUMNS
        lock = " FOR UPDATE" if connections[using].features.has_select_for_update else ""
        sql = _for_update_sql[using] = (
            f"SELECT {p.select(using)} FROM {p.table(using)} p WHERE {p.column('user_id', using)} = %s{lock}"  # noqa: S608
        )
    row = rawsql.fetchone(sql, [user.pk], using=using)
    if row is None:
        return None
    profile = PROFILE_COLUMNS.instance(row, 0, using)
    profile.user = user
    return profile


# --- for operators (the admin) -----------------------------------------------------------

def allergy_profiles_in_sync_state_q(state: str) -> Q:
    """AllergyState.sync_state as a query, so the admin can filter and count by it."""
    behind = Q(synced_revision__lt=F("revision"))
    return {
        SYNC_SYNCED: ~behind,
        SYNC_FAILING: behind & Q(sync_failed_at__isnull=False),
        SYNC_PENDING: behind & Q(sync_failed_at__isnull=True),
    }[state]


def allergy_profile_sync_counts() -> dict[str, int]:
    """How many allergy profiles are synced, pending or failing."""
    states = (SYNC_SYNCED, SYNC_PENDING, SYNC_FAILING)
    return AllergyProfile.objects.aggregate(
        **{state: Count("pk", filter=allergy_profiles_in_sync_state_q(state)) for state in states}
    )


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
