"""Reads of the identity app."""
import uuid
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from identity.models import AuthToken, User, UserPreferences
from identity.tokens import auth_token_hash


def user_exists(*, uid: uuid.UUID) -> bool:
    return User.objects.filter(uid=uid).exists()


def user_get_by_uid(*, uid: uuid.UUID) -> User | None:
    return User.objects.filter(uid=uid).first()


def auth_token_get_usable(*, raw: str) -> AuthToken | None:
    """The live (not revoked, not expired) token whose secret is `raw`, for an active user."""
    return (
        AuthToken.objects.select_related("user")
        .filter(
            key_hash=auth_token_hash(raw),
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            user__is_active=True,
        )
        .first()
    )


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
