"""Reads of the identity app."""
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.utils import timezone

from identity.models import AuthToken, User, UserPreferences
from identity.tokens import auth_token_hash
from project import rawsql
from project.rawsql import Columns

TOKEN_COLUMNS = Columns(AuthToken, "t")
USER_COLUMNS = Columns(User, "u")
_usable_token_sql: dict[tuple[str, str, str], str] = {}


def user_exists(*, uid: uuid.UUID) -> bool:
    return User.objects.filter(uid=uid).exists()


def user_get_by_uid(*, uid: uuid.UUID) -> User | None:
    return User.objects.filter(uid=uid).first()


def auth_token_usable_sql(*, columns: str = "", joins: str = "", using: str = "default") -> str:
    """The statement behind auth_token_get_usable: token (alias `t`) and user (`u`) columns, then `columns`
    (more, from `joins`, which may use `t` and `u`). Parameters: auth_token_usable_params().

    It runs on every authenticated request, so it is written once rather than compiled by the ORM each time
    (~0.5 ms of Python a query here). The validity rules live only here: live (not revoked, not expired)
    token, active user. Nothing is cached between requests, so a revoked token is refused by the very next
    request in every process.
    """
    key = (using, columns, joins)
    sql = _usable_token_sql.get(key)
    if sql is None:
        t, u = TOKEN_COLUMNS, USER_COLUMNS
        # Only quoted names from the models' metadata are interpolated; values are parameters.
        sql = (
            f"SELECT {t.select(using)}, {u.select(using)}{', ' + columns if columns else ''} "  # noqa: S608
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
