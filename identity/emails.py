"""Account emails, sent by the consumer for `email.requested` events (never from a view).

The event holds only the uid and the kind: the address is looked up and any link token is built
here, at send time, so no secret ever sits in the outbox or the broker. What cannot be looked up
at send time (the old address after an email change, the address of a deleted account, the
device of a login) was captured in an identity.MailNotice row, deleted once the mail is sent.

Security notices carry no text a user typed (no username): they may go to an address whose
owner did not choose that text.
"""
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.timesince import timeuntil

from identity import selectors, tokens
from identity.models import EmailChangeRequest, MailNotice
from identity.signals import EmailKind

# Kinds whose facts sit in a MailNotice row (captured when they happened).
NOTICE_KINDS = tuple(EmailKind(kind.value) for kind in MailNotice.Kind)
KINDS = tuple(EmailKind)
#: The only names a template under identity/email/ may use (tests/security checks it). None is
#: free text a user typed: `device` is a label made of letters, digits, spaces and hyphens
#: (identity/devices.py), `network` a coarse prefix, `at` a time, the rest our own links.
CONTEXT_NAMES = frozenset(
    {"email", "link", "valid_for", "login_link", "reset_link", "sessions_link", "device", "network", "at"}
)


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
    elif kind in ("account_exists", "email_change_taken"):
        context |= {"login_link": _frontend("/login"), "reset_link": _frontend("/reset-password")}
    elif kind in ("password_changed", "password_reset_done"):
        context |= {"reset_link": _frontend("/reset-password")}
    else:
        raise UnknownEmailKind(kind)
    return context


def _email_change_context(*, user) -> tuple[EmailChangeRequest, dict[str, str]] | None:
    """(request, context) of the link for the user's pending change not mailed yet, or None.

    Requests replace each other, so an event finds the latest request, whichever request raised
    it: an older request's event sends the newer link, and the newer one's then sends nothing."""
    change = EmailChangeRequest.objects.filter(user=user, link_sent_at__isnull=True).order_by("-created_at").first()
    if change is None or change.created_at + settings.EMAIL_CHANGE_TTL <= timezone.now():
        return None
    token = tokens.email_change_token_make(request_id=change.pk)
    return change, {
        "link": _frontend(f"/email-change?token={token}"),
        "valid_for": _duration(settings.EMAIL_CHANGE_TTL),
    }


def _email_change_send_rollback_unsafe(*, user) -> bool:
    """The mail of the user's pending email change, decided by whose the new address is now:
    free → the confirmation link to it; another account's → a notice to that owner, no link (and
    the request is dropped); the user's own → nothing. Decided here, not in the request, so the
    request costs the same whatever the address."""
    pending = _email_change_context(user=user)
    if pending is None:
        return False  # mailed, confirmed, replaced or expired since
    change, context = pending
    owner = selectors.user_get_by_email(email=change.new_email)
    if owner is None:
        _send("email_change_verify", change.new_email, context)
        EmailChangeRequest.objects.filter(pk=change.pk).update(link_sent_at=timezone.now())
        return True
    change.delete()
    if owner.pk == user.pk or not owner.is_active:
        return False
    _send("email_change_taken", owner.email, account_email_context(user=owner, kind="email_change_taken"))
    return True


def _send(kind: str, recipient: str, context: dict[str, str]) -> None:
    subject = " ".join(render_to_string(f"identity/email/{kind}_subject.txt", context).split())
    body = render_to_string(f"identity/email/{kind}_body.txt", context)
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient], fail_silently=False)


def _notice_send_rollback_unsafe(*, uid: uuid.UUID, kind: str) -> bool:
    """Send the oldest unsent notice of (uid, kind), then delete its row (so its facts live no
    longer than needed). A crash between the two sends it again: at least once, like every event."""
    notice = MailNotice.objects.filter(uid=uid, kind=kind).order_by("created_at", "pk").first()
    if notice is None:
        return False
    recipient = notice.email
    if not recipient:  # new_device_login: the account's current address
        user = selectors.user_get_by_uid(uid=uid)
        if user is None or not user.is_active or not user.notify_new_device:
            notice.delete()
            return False
        recipient = user.email
    context = {"email": recipient, "reset_link": _frontend("/reset-password"), "sessions_link": _frontend("/sessions")}
    context |= {key: str(value) for key, value in notice.details.items()}
    _send(kind, recipient, context)
    notice.delete()
    return True


def account_email_send_rollback_unsafe(*, uid: uuid.UUID, kind: str) -> bool:
    """Send one account email through Django's email backend. Talks to the outside world and
    cannot be rolled back: call it from the consumer, outside any transaction that may roll back.

    Returns False (nothing sent) when the user no longer exists, or for a verification email to
    an address that is already verified. Raises UnknownEmailKind for a kind not in KINDS, and
    whatever the email backend raises (SMTP errors, ...) so the caller can retry.
    """
    if kind not in KINDS:
        raise UnknownEmailKind(kind)
    if kind in NOTICE_KINDS:
        return _notice_send_rollback_unsafe(uid=uid, kind=kind)
    user = selectors.user_get_by_uid(uid=uid)
    if user is None or not user.is_active:
        return False
    if kind == "verify" and user.is_verified:
        return False
    if kind == EmailKind.EMAIL_CHANGE_VERIFY:
        return _email_change_send_rollback_unsafe(user=user)
    _send(kind, user.email, account_email_context(user=user, kind=kind))
    return True
