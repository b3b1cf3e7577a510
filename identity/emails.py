"""Account emails, sent by the consumer for `email.requested` events (never from a view).

The event holds only the uid and the kind: the address is looked up and any link token is built
here, at send time, so no secret ever sits in the outbox or the broker.
"""
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.timesince import timeuntil

from identity import selectors, tokens

KINDS = ("verify", "account_exists", "password_reset")
#: The only names a template under identity/email/ may use (tests/security checks it).
CONTEXT_NAMES = frozenset({"email", "link", "valid_for", "login_link", "reset_link"})


class UnknownEmailKind(ValueError):
    """The event names a kind of email we don't have (a contract bug: not worth retrying)."""


def _frontend(path: str) -> str:
    return settings.FRONTEND_BASE_URL.rstrip("/") + path


def _duration(delta: timedelta) -> str:
    """"3 days", "2 hours"."""
    now = timezone.now()
    return timeuntil(now + delta, now)


def account_email_context(*, user, kind: str) -> dict[str, str]:
    """The template context of one email; builds the link token (a secret) right now.

    Only what we wrote goes into an email: no username nor any other text a client chose.
    Anyone can sign up with someone else's address, so a free-text field would let them write
    their own words (a link, an instruction) into a genuine Kairos email to that person.
    """
    context = {"email": user.email}
    if kind == "verify":
        token = tokens.email_verification_token_make(uid=user.uid, email=user.email)
        context |= {"link": _frontend(f"/verify/{token}"), "valid_for": _duration(settings.EMAIL_VERIFICATION_TTL)}
    elif kind == "password_reset":
        token = tokens.password_reset_token_make(user=user)
        context |= {
            "link": _frontend(f"/reset-password?token={token}"),
            "valid_for": _duration(settings.PASSWORD_RESET_TTL),
        }
    elif kind == "account_exists":
        context |= {"login_link": _frontend("/login"), "reset_link": _frontend("/reset-password")}
    else:
        raise UnknownEmailKind(kind)
    return context


def account_email_send_rollback_unsafe(*, uid: uuid.UUID, kind: str) -> bool:
    """Send one account email through Django's email backend. Talks to the outside world and
    cannot be rolled back: call it from the consumer, outside any transaction that may roll back.

    Returns False (nothing sent) when the user no longer exists, or for a verification email to
    an address that is already verified. Raises UnknownEmailKind for a kind not in KINDS, and
    whatever the email backend raises (SMTP errors, ...) so the caller can retry.
    """
    if kind not in KINDS:
        raise UnknownEmailKind(kind)
    user = selectors.user_get_by_uid(uid=uid)
    if user is None or not user.is_active:
        return False
    if kind == "verify" and user.is_verified:
        return False
    context = account_email_context(user=user, kind=kind)
    subject = " ".join(render_to_string(f"identity/email/{kind}_subject.txt", context).split())
    body = render_to_string(f"identity/email/{kind}_body.txt", context)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email], fail_silently=False)
    return True
