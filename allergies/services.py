"""Writes of the allergies app. The only place that sends allergies' domain signals."""
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import F
from django.utils import timezone

from allergies import selectors, signals
from allergies.history import allergy_changes
from allergies.models import AllergyProfile, AllergyRevision, allergy_flags_for
from allergies.selectors import AllergyState
from allergies.validation import CleanProfile, allergy_profile_clean
from identity import selectors as identity_selectors
from identity.models import AuthToken, User
from project import rawsql

MAX_SYNC_ERROR_LENGTH = 1000
# What a replacement writes (the rest of the row belongs to the sync records below).
REPLACED_FIELDS = ("confirmed", "intolerances", "severity", "revision", "updated_at", "sync_failed_at")


def allergy_profile_replace(
    *,
    user: User,
    confirmed: list[str],
    intolerances: list[str],
    severity: dict[str, str],
    session: AuthToken | None = None,
) -> AllergyState:
    """Replace the whole profile, record the revision in its history and queue it for the Agent.

    Names are normalised and the rules checked here too (AllergyProfileInvalid), so no caller
    can store a profile the API would refuse. The row is locked for the transaction, so
    concurrent replacements get distinct revisions and the outbox receives them in order.
    `session` is the token the change came from (None outside the API).
    """
    clean = allergy_profile_clean(confirmed=confirmed, intolerances=intolerances, severity=severity)
    return _replace(user=user, clean=clean, session=session)


def _replace(*, user: User, clean: CleanProfile, session: AuthToken | None) -> AllergyState:
    # Every DELETE (and PUT off PostgreSQL) runs this: its statements are written by hand (project.rawsql, no ORM
    # compilation) and pipelined (PostgreSQL): the locked update is one round trip, the history row, the outbox
    # row (the receiver's) and the end of the (implicit) transaction one more. The same writes in one transaction.
    with rawsql.atomic_pipeline():
        return _replace_locked(user=user, clean=clean, session=session,
                               replaced=_profile_update_locked(user=user, clean=clean))


def allergy_profile_replace_authenticated(*, raw: str, clean: CleanProfile) -> tuple[AuthToken, AllergyState] | None:
    """allergy_profile_replace for the usable token whose secret is `raw` (identity.selectors.auth_token_get_usable's
    rules) and its user, the token read in the locked update's own statement: PUT /api/allergies/ in 2 round trips
    (token + locked update; history + outbox + the transaction's end) and 3 statements, not 3 and 5 apart. None,
    and nothing written, when the token is not usable. The token is checked by the statement that writes, so a
    token revoked before it is refused as by a separate read (no cache). Elsewhere than PostgreSQL: the token
    read, then the replacement."""
    connection = connections["default"]
    if connection.vendor != "postgresql":
        token = identity_selectors.auth_token_get_usable(raw=raw)
        return None if token is None else (token, _replace(user=token.user, clean=clean, session=token))
    # The statement stands in for Django's per-request health check (rawsql.first_statement_checked): a
    # persistent connection found dead by it is replaced and the transaction tried once more. Only when the first
    # statement failed: nothing was committed then (the server rolls back a transaction whose connection died).
    return rawsql.first_statement_checked(lambda answered: _replace_authenticated(raw=raw, clean=clean,
                                                                                  answered=answered))


def _replace_authenticated(
    *, raw: str, clean: CleanProfile, answered: Callable[[], None],
) -> tuple[AuthToken, AllergyState] | None:
    with rawsql.atomic_pipeline():
        found = _profile_update_locked_with_token(raw=raw, clean=clean)
        answered()
        if found is None:
            return None  # nothing written: the (empty) transaction ends
        token, replaced = found
        return token, _replace_locked(user=token.user, clean=clean, session=token, replaced=replaced)


def _replace_locked(
    *, user: User, clean: CleanProfile, session: AuthToken | None, replaced: tuple[dict, dict] | None,
) -> AllergyState:
    """The rest of a replacement, inside its transaction, after the locked update (`replaced`; None: no row yet)."""
    if replaced is None:  # the first write: create the row (race-safe, raises nothing), then update it
        AllergyProfile.objects.bulk_create([AllergyProfile(user=user)], ignore_conflicts=True)
        replaced = _profile_update_locked(user=user, clean=clean)
    before, after = replaced
    revision = after["revision"]
    rawsql.insert_values(AllergyRevision, {
        "user_id": user.pk,
        "revision": revision,
        "created_at": after["updated_at"],
        "changes": allergy_changes(
            before=before,
            after={"confirmed": clean.confirmed, "intolerances": clean.intolerances, "severity": clean.severity},
        ),
        "session_id": session.pk if session is not None else None,
        "session_device": session.device_label if session is not None else "",
    })
    signals.allergy_profile_replaced.send(
        sender=AllergyProfile,
        uid=user.uid,
        revision=revision,
        confirmed=list(after["confirmed"]),
        intolerances=list(after["intolerances"]),
        severity=dict(after["severity"]),
        allergy_flags=allergy_flags_for(after["confirmed"], after["intolerances"]),
    )
    return AllergyState.of_fields(after)


_LISTS = ("confirmed", "intolerances", "severity")
_PROFILE = selectors.PROFILE_COLUMNS
# What the lock reads of the row as it was: its key, its revision, and its lists and severity for the history.
_LOCKED_SOURCE = rawsql.Columns(AllergyProfile, "p", only=("user_id", "revision", *_LISTS))
_LOCKED = rawsql.Columns(AllergyProfile, "locked", only=_LOCKED_SOURCE.attnames)
_BEFORE = rawsql.Columns(AllergyProfile, "locked", only=_LISTS)
# What the UPDATE returns of the row now: every column but the lists and severity, which are `clean`'s (sent, not
# read back: no JSON out of the server and decoded again for values the request already holds).
_AFTER = rawsql.Columns(AllergyProfile, "p", only=[a for a in _PROFILE.attnames if a not in _LISTS])
_AFTER_USER_ID = _AFTER.attnames.index("user_id")
_update_locked_sql: dict[str, str] = {}


def _profile_update_locked(*, user: User, clean: CleanProfile) -> tuple[dict, dict] | None:
    """The user's profile locked and replaced by `clean` at the next revision: (its lists and severity before,
    its fields now by attname); None when the user has no profile row yet. The revision is incremented under the
    row's lock, so concurrent writers get distinct revisions. Inside transaction.atomic only.

    PostgreSQL: one statement (the row locked in a CTE, `UPDATE ... RETURNING` both versions). Elsewhere the
    locked read, then the UPDATE (SQLite's IMMEDIATE transactions serialise writers anyway)."""
    using = "default"
    connection = connections[using]
    now = timezone.now()
    if connection.vendor != "postgresql":
        profile = selectors.allergy_profile_get_for_update(user=user)
        if profile is None:
            return None
        before = _lists(profile)
        profile.confirmed, profile.intolerances, profile.severity = clean.confirmed, clean.intolerances, clean.severity
        profile.revision += 1
        # The new revision has not been tried yet: it is pending, not failing. The last error stays visible
        # until the Agent holds the profile.
        profile.sync_failed_at = None
        profile.updated_at = now
        rawsql.update(profile, REPLACED_FIELDS)
        return before, {name: getattr(profile, name) for name in _PROFILE.attnames}
    sql = _update_locked_sql.get(using)
    if sql is None:
        locked, update = _update_locked_parts(using, user_is="= %s")
        sql = _update_locked_sql[using] = (
            f"WITH {locked} {update} RETURNING {_BEFORE.select(using)}, {_AFTER.select(using)}")
    row = rawsql.fetchone(sql, [user.pk, *_update_params(clean, now, connection)], using=using)
    if row is None:
        return None
    return _replaced_from(row, 0, clean)


def _update_locked_parts(using: str, *, user_is: str) -> tuple[str, str]:
    """The CTE `locked` (the profile row of the user `user_id {user_is}`, locked) and the UPDATE from it (its
    parameters: _update_params), without RETURNING. Only quoted names from the model's metadata are interpolated."""
    quote = connections[using].ops.quote_name
    table = _PROFILE.table(using)
    # FOR UPDATE in the CTE: `locked` is the row as the lock found it (the latest committed version), so the
    # revision and the history's "before" never come from a stale snapshot (a plain UPDATE ... FROM would).
    # sync_failed_at: the new revision has not been tried yet, it is pending, not failing (the last error
    # stays visible until the Agent holds the profile).
    locked = (f"locked AS (SELECT {_LOCKED_SOURCE.select(using)} FROM {table} p "  # noqa: S608
              f"WHERE {_PROFILE.column('user_id', using)} {user_is} FOR UPDATE)")
    update = (
        f"UPDATE {table} p SET {quote('confirmed')} = %s, {quote('intolerances')} = %s, {quote('severity')} = %s, "  # noqa: S608
        f"{quote('revision')} = {_LOCKED.column('revision', using)} + 1, {quote('updated_at')} = %s, "
        f"{quote('sync_failed_at')} = NULL "
        f"FROM locked WHERE {_PROFILE.column('user_id', using)} = {_LOCKED.column('user_id', using)}"
    )
    return locked, update


_UPDATED = [AllergyProfile._meta.get_field(name) for name in ("confirmed", "intolerances", "severity", "updated_at")]


def _update_params(clean: CleanProfile, now: datetime, connection) -> list:
    confirmed, intolerances, severity, updated_at = _UPDATED
    return [confirmed.get_db_prep_save(clean.confirmed, connection),
            intolerances.get_db_prep_save(clean.intolerances, connection),
            severity.get_db_prep_save(clean.severity, connection), updated_at.get_db_prep_save(now, connection)]


def _replaced_from(row, start: int, clean: CleanProfile) -> tuple[dict, dict]:
    """(lists before, fields now) from a row holding _BEFORE's then _AFTER's columns from `start`: values by
    attname, no model instance (nothing reads one)."""
    after = dict(zip(_AFTER.attnames, _AFTER.values(row, start + len(_BEFORE)), strict=True))
    after["confirmed"], after["intolerances"], after["severity"] = clean.confirmed, clean.intolerances, clean.severity
    return dict(zip(_BEFORE.attnames, _BEFORE.values(row, start), strict=True)), after


_with_token_sql: dict[str, str] = {}


def _profile_update_locked_with_token(*, raw: str, clean: CleanProfile) -> tuple[AuthToken, tuple | None] | None:
    """_profile_update_locked for the user of the usable token `raw`, in the token's statement (PostgreSQL):
    (the token, its user attached; what _profile_update_locked returns), None when the token is not usable (the
    UPDATE then matches nothing). The token is read once, in the statement's one snapshot: the row it locks and
    updates is its user's exactly when the token is returned."""
    using = "default"
    connection = connections[using]
    sql = _with_token_sql.get(using)
    if sql is None:
        # The usable token and its user read once (`tok`, materialized: the lock's subquery and the final SELECT
        # read the same rows, one index lookup and one set of token parameters instead of two).
        token_user_id = connection.ops.quote_name(AuthToken._meta.get_field("user").column)
        locked, update = _update_locked_parts(using, user_is=f"IN (SELECT {token_user_id} FROM tok)")  # noqa: S608
        # Named output columns: `locked` and `p` share their column names.
        returning = ", ".join(
            [f"{column} AS b{i}" for i, column in enumerate(_BEFORE.select(using).split(", "))]
            + [f"{column} AS a{i}" for i, column in enumerate(_AFTER.select(using).split(", "))])
        # Only quoted names from the models' metadata are interpolated; values are parameters.
        sql = _with_token_sql[using] = (
            f"WITH tok AS MATERIALIZED ({identity_selectors.auth_token_usable_sql(using=using)}), {locked}, "  # noqa: S608
            f"upd AS ({update} RETURNING {returning}) SELECT tok.*, upd.* FROM tok LEFT OUTER JOIN upd ON TRUE")
    token_params = identity_selectors.auth_token_usable_params(raw=raw, using=using)
    row = rawsql.fetchone(sql, [*token_params, *_update_params(clean, timezone.now(), connection)], using=using)
    if row is None:
        return None
    token = identity_selectors.auth_token_from_row(row, using=using)
    start = len(identity_selectors.TOKEN_COLUMNS) + len(identity_selectors.USER_COLUMNS)
    if row[start + len(_BEFORE) + _AFTER_USER_ID] is None:  # no profile row yet: nothing updated
        return token, None
    return token, _replaced_from(row, start, clean)


def _lists(profile: AllergyProfile) -> dict:
    return {"confirmed": profile.confirmed, "intolerances": profile.intolerances, "severity": profile.severity}


def allergy_profile_clear(*, user: User, session: AuthToken | None = None) -> AllergyState:
    """Empty the profile (a new revision, synced to the Agent like any replacement)."""
    return allergy_profile_replace(user=user, confirmed=[], intolerances=[], severity={}, session=session)


def allergy_history_prune(*, now: datetime | None = None) -> int:
    """Delete history revisions older than ALLERGY_HISTORY_RETENTION_DAYS; returns how many."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.ALLERGY_HISTORY_RETENTION_DAYS)
    deleted, _ = AllergyRevision.objects.filter(created_at__lt=cutoff).delete()
    return deleted


_sync_success_sql: dict[str, str] = {}


def allergy_sync_record_success(*, uid: uuid.UUID | str, revision: int) -> None:
    """The Agent now holds `revision` of the user's profile (called by the consumer).

    `synced_revision` only moves forward; the error is cleared once the Agent holds the current
    revision. One UPDATE written once per database (the consumer's hot path: compiling its CASE
    and GREATEST expressions through the ORM cost more CPU than sending it), prepared on the server
    once the connection has run it a few times (`rawsql.execute`). Its SET expressions
    all see the row as it was, so "synced now" is: it already was, or `revision` reaches the
    current one; updated_at is left alone (it dates the user's change, not the sync)."""
    using = "default"
    connection = connections[using]
    sql = _sync_success_sql.get(using)
    if sql is None:
        quote = connection.ops.quote_name

        def column(model: type, name: str) -> str:
            return quote(model._meta.get_field(name).column)

        synced, current = column(AllergyProfile, "synced_revision"), column(AllergyProfile, "revision")
        error, failed_at = column(AllergyProfile, "sync_last_error"), column(AllergyProfile, "sync_failed_at")
        # SQLite's two-argument MAX is PostgreSQL's GREATEST (as django.db.models.functions.Greatest).
        greatest = "MAX" if connection.vendor == "sqlite" else "GREATEST"
        synced_now = f"({synced} >= {current} OR {current} <= %s)"
        # Only quoted names from the models' metadata are interpolated; values are parameters.
        sql = _sync_success_sql[using] = (
            f"UPDATE {quote(AllergyProfile._meta.db_table)} SET {synced} = {greatest}({synced}, %s), "  # noqa: S608
            f"{error} = CASE WHEN {synced_now} THEN '' ELSE {error} END, "
            f"{failed_at} = CASE WHEN {synced_now} THEN NULL ELSE {failed_at} END "
            f"WHERE {column(AllergyProfile, 'user')} IN (SELECT {quote(User._meta.pk.column)} "
            f"FROM {quote(User._meta.db_table)} WHERE {column(User, 'uid')} = %s)"
        )
    uid_param = User._meta.get_field("uid").get_db_prep_value(uid, connection)
    rawsql.execute(sql, [revision, revision, revision, uid_param], using=using)


def allergy_sync_record_failure(*, uid: uuid.UUID | str, error: str) -> None:
    """A delivery attempt failed; the profile shows `failing` until a later attempt succeeds.

    The consumer always sends the current revision, so a failure recorded now is a failure of
    the current revision (in the rare race where the user changes the profile during the
    attempt, the new revision shows `failing` one attempt early; the Agent was failing anyway).
    """
    AllergyProfile.objects.filter(user__uid=uid, synced_revision__lt=F("revision")).update(
        sync_last_error=error[:MAX_SYNC_ERROR_LENGTH], sync_failed_at=timezone.now()
    )


def _profile_mark(*, uid: uuid.UUID | str, **changes: object) -> None:
    """Set verification columns on the user's profile, creating the (empty) row if need be; the
    user's row is locked first, so an account deletion cannot interleave (nothing if it is gone)."""
    with transaction.atomic():
        user = identity_selectors.user_locked_for_dependent_write(uid=uid)
        if user is None:
            return
        AllergyProfile.objects.get_or_create(user=user)  # an absent profile is an empty one at revision 0
        AllergyProfile.objects.filter(user=user).update(**changes)


def allergy_sync_record_verifying(*, uid: uuid.UUID | str) -> None:
    """An Agent call about the user had an unknown outcome: not `synced` until it is read back."""
    _profile_mark(uid=uid, sync_verifying=True)


def allergy_sync_record_verified(*, uid: uuid.UUID | str, at: datetime, resolved: bool) -> None:
    """The Agent's copy was read back equal at `at`; `resolved` ends a read-back after an
    uncertain outcome (only the read-back itself may end it)."""
    changes: dict = {"sync_verified_at": at}
    if resolved:
        changes["sync_verifying"] = False
    _profile_mark(uid=uid, **changes)


def allergy_sync_record_unconfirmed(*, uids: list[uuid.UUID]) -> None:
    """The Agent is not known to hold these profiles (drift found, or a resync was asked for):
    `synced_revision` goes back to 0 so each shows `pending` until it is sent again. The only
    write that lowers `synced_revision`; the consumer's success raises it again."""
    AllergyProfile.objects.filter(user__uid__in=uids, revision__gt=0).update(synced_revision=0)
