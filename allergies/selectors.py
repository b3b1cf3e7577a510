"""Reads of the allergies app."""
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import connections

from allergies.models import AllergyProfile, allergy_flags_for
from identity import selectors as identity_selectors
from identity.models import AuthToken, User
from project import rawsql
from project.rawsql import Columns

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


PROFILE_COLUMNS = Columns(AllergyProfile, "p")
_with_token_sql: dict[str, str] = {}


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
    # The profile's primary key is its user: NULL there means the user has no profile yet.
    profile = p.instance(row, start, using) if row[start + p.attnames.index("user_id")] is not None else None
    if profile is not None:
        profile.user = token.user
    return token, AllergyState.of(profile)


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
