"""Reads of the identity app."""
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.utils import timezone

from identity.models import AuthToken, EmailChangeRequest, MailNotice, User, UserPreferences
from identity.tokens import auth_token_hash
from project import rawsql
from project.rawsql import Columns

TOKEN_COLUMNS = Columns(AuthToken, "t")
USER_COLUMNS = Columns(User, "u")
_usable_token_sql: dict[tuple[str, str, str, str], str] = {}


def user_exists(*, uid: uuid.UUID) -> bool:
    return User.objects.filter(uid=uid).exists()


def user_get_by_uid(*, uid: uuid.UUID) -> User | None:
    return User.objects.filter(uid=uid).first()


def user_locked_for_dependent_write(*, uid: uuid.UUID | str) -> User | None:
    """The user, its row locked until the transaction ends, before writing a row that refers to it
    (a profile, a mirror) from outside the user's own request: the consumer's. An account deletion
    locks the same row first (services.user_erase), so the two cannot interleave: a deletion under
    way makes this wait and then find no user, and a write under way is seen (and deleted) by the
    deletion. Without it, a row inserted between the deletion's cascade and its DELETE of the user
    failed the deletion's commit on the foreign key (a 500 on DELETE /api/account/). Only inside
    `transaction.atomic()`; FOR NO KEY UPDATE (PostgreSQL) is the weakest lock the deletion's waits for."""
    return User.objects.select_for_update(no_key=True).filter(uid=uid).only("pk").first()


def user_get_by_email(*, email: str) -> User | None:
    """The account holding `email` (canonical already): exact equality on the stored canonical form,
    the lookup signup and the unique index use."""
    return User.objects.filter(email=email).first()


def auth_token_usable_sql(*, columns: str = "", joins: str = "", only: str = "", using: str = "default") -> str:
    """The statement behind auth_token_get_usable: token (alias `t`) and user (`u`) columns, then `columns`
    (more, from `joins`, which may use `t` and `u`); or only the expression `only` (a subquery's column, e.g.
    `t.user_id`). Parameters: auth_token_usable_params().

    It runs on every authenticated request, so it is written once rather than compiled by the ORM each time
    (~0.5 ms of Python a query here). The validity rules live only here: live (not revoked, not expired)
    token, active user. Nothing is cached between requests, so a revoked token is refused by the very next
    request in every process.
    """
    key = (using, columns, joins, only)
    sql = _usable_token_sql.get(key)
    if sql is None:
        t, u = TOKEN_COLUMNS, USER_COLUMNS
        selected = only or f"{t.select(using)}, {u.select(using)}{', ' + columns if columns else ''}"
        # Only quoted names from the models' metadata are interpolated; values are parameters.
        sql = (
            f"SELECT {selected} "  # noqa: S608
            f"FROM {t.table(using)} t INNER JOIN {u.table(using)} u ON {u.column('id', using)} = "
            f"{t.column('user_id', using)} {joins} "
            f"WHERE {t.column('key_hash', using)} = %s AND {t.column('revoked_at', using)} IS NULL "
            f"AND {t.column('expires_at', using)} > %s AND {u.column('is_active', using)} = %s"
        )
        _usable_token_sql[key] = sql
    return sql


def auth_token_usable_params(*, raw: str, using: str = "default") -> list[Any]:
    ops = connections[using].ops
    return [auth_token_hash(raw), ops.adapt_datetimefield_value(timezone.now()), True]


def auth_token_from_row(row: Sequence[Any], *, using: str = "default") -> AuthToken:
    """The token, its user attached, from the first columns of a row of auth_token_usable_sql()."""
    token = TOKEN_COLUMNS.instance(row, 0, using)
    token.user = USER_COLUMNS.instance(row, len(TOKEN_COLUMNS), using)
    return token


def auth_token_get_usable(*, raw: str) -> AuthToken | None:
    """The live (not revoked, not expired) token whose secret is `raw`, for an active user, its user attached."""
    row = rawsql.fetchone(auth_token_usable_sql(), auth_token_usable_params(raw=raw))
    return None if row is None else auth_token_from_row(row)


def user_preferences_get(*, user: User) -> dict:
    prefs = UserPreferences.objects.filter(user=user).first()
    return dict(prefs.data) if prefs else {}


@dataclass(frozen=True)
class PreferencesState:
    """A user's preferences as the consumer sends them (identity.preferences.agent_patches)."""

    data: dict[str, Any]
    revision: int
    reset_keys: list[str]


def user_preferences_get_by_uid(*, uid: uuid.UUID) -> PreferencesState | None:
    """The user's preferences for the consumer; None when the user is gone."""
    user = User.objects.filter(uid=uid).only("pk").first()
    if user is None:
        return None
    prefs = UserPreferences.objects.filter(user=user).first()
    if prefs is None:
        return PreferencesState({}, 0, [])
    return PreferencesState(dict(prefs.data), prefs.revision, list(prefs.reset_keys))


def _session_row(token: AuthToken, current: AuthToken | None) -> dict:
    return {
        "id": token.pk,
        "device": token.device_label,
        "network": token.network,
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
        "current": current is not None and token.pk == current.pk,
    }


def session_list(*, user: User, current: AuthToken | None) -> list[dict]:
    """The user's live sessions, newest first, `current` marking the caller's own. No secrets:
    the token's hash is not among the fields."""
    live = AuthToken.objects.filter(user=user, revoked_at__isnull=True, expires_at__gt=timezone.now())
    return [_session_row(token, current) for token in live.order_by("-created_at", "-pk")]


def session_history(*, user: User, current: AuthToken | None) -> list[dict]:
    """Every session still kept for the user, ended ones included (for the data export)."""
    return [_session_row(token, current) for token in AuthToken.objects.filter(user=user).order_by("created_at", "pk")]


def user_notification_settings_get(*, user: User) -> dict:
    return {"new_device_login": user.notify_new_device}


def email_change_pending_get(*, user: User) -> dict | None:
    change = EmailChangeRequest.objects.filter(user=user).order_by("-created_at").first()
    return {"new_email": change.new_email, "requested_at": change.created_at} if change else None


def mail_notices_pending(*, user: User) -> list[dict]:
    notices = MailNotice.objects.filter(uid=user.uid).order_by("created_at", "pk")
    return [
        {"kind": n.kind, "email": n.email, "created_at": n.created_at, "details": dict(n.details)} for n in notices
    ]


def user_preferences_record_get(*, user: User) -> dict:
    prefs = UserPreferences.objects.filter(user=user).first()
    if prefs is None:
        return {"preferences": {}, "revision": 0, "synced_revision": 0, "updated_at": None}
    return {
        "preferences": dict(prefs.data),
        "revision": prefs.revision,
        "synced_revision": prefs.synced_revision,
        "updated_at": prefs.updated_at,
    }
