"""Reads of the identity app."""
import uuid
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from identity.models import AuthToken, EmailChangeRequest, MailNotice, User, UserPreferences
from identity.tokens import auth_token_hash


def user_exists(*, uid: uuid.UUID) -> bool:
    return User.objects.filter(uid=uid).exists()


def user_get_by_uid(*, uid: uuid.UUID) -> User | None:
    return User.objects.filter(uid=uid).first()


def user_get_by_email(*, email: str) -> User | None:
    """The account holding `email` (canonical already), by the lookup signup uses for uniqueness."""
    return User.objects.filter(email__iexact=email).first()


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
