"""Throttles of the credential endpoints, per client address, per email and per user.

Counts live in the throttling store (Redis when REDIS_URL is set, else the throttling_counter
table), shared by every process and never evicted; client addresses come from
throttling.clients.client_address (X-Forwarded-For only behind TRUSTED_PROXY_COUNT proxies).
Rates: settings.THROTTLE_RATES; the policy and its trade-offs: docs/api.md, "Throttles".

Each endpoint has one throttle that charges its limits in order and stops at the first refusal:
per address first, so one address can neither guess fast nor create counters for many emails;
then per (email, address), which is what an attacker at one address runs into; then per email
from everywhere, looser, which bounds distributed guessing. An attacker at one address therefore
never reaches the per-email limit, and the owner, at another address, is not refused.

Only unsafe methods are counted: a GET never touches the store.
"""
from collections.abc import Iterable, Iterator

from rest_framework import exceptions, status
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from identity.addresses import email_canonical
from throttling.clients import client_address
from throttling.limits import Limit, limits_hit
from throttling.stores import StoreUnavailable


class ThrottleUnavailable(exceptions.APIException):
    """The counter store is down: credential endpoints refuse rather than run uncounted."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Temporarily unavailable, try again in a moment."
    default_code = "throttle_unavailable"


def _email_key(raw: object) -> str | None:
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        return email_canonical(raw)
    except (ValueError, UnicodeError):  # not normalisable: the serializer refuses it; still count it
        return raw.strip().lower()


def email_limits(scope: str, *, address: str, email: object, per_pair: bool = True) -> Iterator[Limit]:
    """After `scope` per address: `<scope>_email_address` per (email, address), then `<scope>_email`
    per email. No usable email: none (the address limit still applies)."""
    key = _email_key(email)
    if key is None:
        return
    if per_pair:
        yield Limit(f"{scope}_email_address", f"{key}\0{address}")
    yield Limit(f"{scope}_email", key)


def throttle_check(limits: Iterable[Limit]) -> float | None:
    """limits_hit for DRF views: None when allowed, else seconds to wait; 503 when the store is down."""
    try:
        return limits_hit(limits)
    except StoreUnavailable as exc:
        raise ThrottleUnavailable from exc


class _CredentialThrottle(BaseThrottle):
    _wait: float | None = None

    def limits(self, request: Request) -> Iterator[Limit]:
        raise NotImplementedError

    def allow_request(self, request: Request, view) -> bool:
        if request.method in SAFE_METHODS:
            return True
        self._wait = throttle_check(self.limits(request))
        return self._wait is None

    def wait(self) -> float | None:
        return self._wait


class _EmailBodyThrottle(_CredentialThrottle):
    """Keyed on the `email` of the JSON body (read lazily: a request refused per address is not parsed)."""

    scope: str
    per_pair = True

    def limits(self, request: Request) -> Iterator[Limit]:
        address = client_address(request)
        yield Limit(self.scope, address)
        data = request.data  # a malformed body raises ParseError here → 400
        email = data.get("email") if isinstance(data, dict) else None
        yield from email_limits(self.scope, address=address, email=email, per_pair=self.per_pair)


class LoginThrottle(_EmailBodyThrottle):
    scope = "login"


class SignupThrottle(_EmailBodyThrottle):
    """No per-(email, address) tier: a signup locks nobody out, the per-email limit caps mail to a mailbox."""

    scope = "signup"
    per_pair = False


class EmailActionThrottle(_EmailBodyThrottle):
    """Resend verification and password reset: one count for both (each sends a mail to the address)."""

    scope = "email_action"


class ReconfirmThrottle(_CredentialThrottle):
    """Password re-confirmation (password change, account deletion), per user: a stolen token is not a
    fast password oracle. Counted after authentication, so anonymous requests are 401 uncounted."""

    scope = "reconfirm"

    def limits(self, request: Request) -> Iterator[Limit]:
        yield Limit(self.scope, str(request.user.pk))


LOGIN_THROTTLES = [LoginThrottle]
SIGNUP_THROTTLES = [SignupThrottle]
EMAIL_ACTION_THROTTLES = [EmailActionThrottle]
RECONFIRM_THROTTLES = [ReconfirmThrottle]
ALL_SCOPES = (
    "login", "login_email_address", "login_email",
    "signup", "signup_email",
    "email_action", "email_action_email_address", "email_action_email",
    "reconfirm",
)  # fmt: skip
