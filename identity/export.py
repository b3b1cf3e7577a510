"""The data export (GET /api/account/export/): everything held about one user, as one document.

It reads every app through its selectors: identity's account, sessions, settings and notices,
allergies' profile and history, agent_bridge's interaction mirror. Reads only; the caller can
only ever pass its own user, so no parameter names another account.
"""
from typing import Any

from django.utils import timezone

from agent_bridge import selectors as bridge_selectors
from allergies import selectors as allergy_selectors
from identity import selectors
from identity.models import AuthToken, User

EXPORT_FORMAT = "kairos-account-export"
EXPORT_VERSION = 1


def account_export_build(*, user: User, current: AuthToken | None) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": timezone.now(),
        "account": {
            "uid": user.uid,
            "username": user.username,
            "email": user.email,
            "is_verified": user.is_verified,
            "date_joined": user.date_joined,
            "last_login": user.last_login,
        },
        "pending_email_change": selectors.email_change_pending_get(user=user),
        "notification_settings": selectors.user_notification_settings_get(user=user),
        "sessions": selectors.session_history(user=user, current=current),
        "allergies": {
            "profile": allergy_selectors.allergy_profile_get(user=user),  # shaped by the output serializer
            "history": allergy_selectors.allergy_history_all(user=user),
        },
        "preferences": selectors.user_preferences_record_get(user=user),
        "interactions": bridge_selectors.interaction_mirror_export(user=user),
        "pending_notices": selectors.mail_notices_pending(user=user),
    }
