"""Throttles of the public account endpoints, per client address and per email address.

Rates come from settings.THROTTLE_RATES (scopes below; `THROTTLE_RATES=off` in the environment
disables them, for load tests only). Counts live in the default cache, a database table, so every
gunicorn worker and process sees the same counts. Every attempt counts, failed or not.

| scope | counted per | endpoints | default |
| --- | --- | --- | --- |
| `login` / `login_email` | client IP / email | POST /api/login/ | 10/min, 5/min |
| `signup` / `signup_email` | client IP / email | POST /api/signup/ | 20/hour, 5/hour |
| `email_action` / `email_action_email` | client IP / email | POST /api/verify/resend/ and | 10/hour, 3/hour |
|  |  | POST /api/password/reset/ (one count) |  |
| `email_action` / `email_action_email` | client IP / new address | POST /api/email/change/ | 10/hour, 3/hour |
|  `email_change_user` | user | POST /api/email/change/ | 5/hour |
| `export` | user | GET /api/account/export/ | 5/hour |
"""
import hashlib

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class _SettingsRateThrottle(SimpleRateThrottle):
    """Reads its rate from settings at request time, so overrides (and tests) take effect."""

    def get_rate(self) -> str | None:
        if not getattr(settings, "THROTTLING_ENABLED", True):
            return None
        return settings.THROTTLE_RATES.get(self.scope)  # None: SimpleRateThrottle lets everything through


class _IPThrottle(_SettingsRateThrottle):
    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class _EmailThrottle(_SettingsRateThrottle):
    """Keyed by a hash of the normalised email in the body; no email, no count (the IP one still applies)."""

    email_field = "email"  # the body field that holds the address

    def get_cache_key(self, request, view) -> str | None:
        data = request.data  # a malformed body raises ParseError here → 400
        email = data.get(self.email_field) if isinstance(data, dict) else None
        if not isinstance(email, str) or not email.strip():
            return None
        digest = hashlib.sha256(email.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()
        return self.cache_format % {"scope": self.scope, "ident": digest}


class LoginIPThrottle(_IPThrottle):
    scope = "login"


class LoginEmailThrottle(_EmailThrottle):
    scope = "login_email"


class SignupIPThrottle(_IPThrottle):
    scope = "signup"


class SignupEmailThrottle(_EmailThrottle):
    scope = "signup_email"


class EmailActionIPThrottle(_IPThrottle):
    scope = "email_action"


class EmailActionEmailThrottle(_EmailThrottle):
    scope = "email_action_email"


class _UserThrottle(_SettingsRateThrottle):
    """Keyed by the authenticated user (the endpoint needs a token)."""

    def get_cache_key(self, request, view) -> str | None:
        if request.user is None or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class EmailChangeAddressThrottle(EmailActionEmailThrottle):
    """The new address shares the per-address count of the other email flows: one mailbox gets
    at most that many mails of ours, whichever flow (or account) asks."""

    email_field = "new_email"


class EmailChangeUserThrottle(_UserThrottle):
    scope = "email_change_user"


class ExportUserThrottle(_UserThrottle):
    scope = "export"


LOGIN_THROTTLES = [LoginIPThrottle, LoginEmailThrottle]
SIGNUP_THROTTLES = [SignupIPThrottle, SignupEmailThrottle]
EMAIL_ACTION_THROTTLES = [EmailActionIPThrottle, EmailActionEmailThrottle]
EMAIL_CHANGE_THROTTLES = [EmailActionIPThrottle, EmailChangeAddressThrottle, EmailChangeUserThrottle]
EXPORT_THROTTLES = [ExportUserThrottle]
