"""Writes of the identity app. The only place that sends identity's domain signals."""
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone

from identity import signals
from identity.models import AuthToken, User
from identity.tokens import auth_token_generate, auth_token_hash


class InvalidCredentials(Exception):
    """Unknown email or wrong password: deliberately the same error for both."""


class EmailNotVerified(Exception):
    """Right password, but the address is not verified yet."""


@dataclass(frozen=True)
class IssuedToken:
    token: AuthToken
    raw: str  # the secret; shown to the client once, never stored


def user_create(*, email: str, username: str, password: str) -> User | None:
    """Create an unverified user and queue its Agent profile and verification email.

    When the email is taken, nothing is created and the owner is emailed instead, so the
    caller answers both cases alike (no user enumeration). Returns the new user or None.
    """
    email = User.objects.normalize_email(email).lower()
    with transaction.atomic():
        existing = User.objects.filter(email__iexact=email).first()
        if existing is not None:
            signals.email_requested.send(sender=User, uid=existing.uid, kind="account_exists")
            return None
        user = User(email=email, username=username)
        validate_password(password, user)
        user.set_password(password)
        user.save()
        signals.user_registered.send(sender=User, user=user)
        signals.email_requested.send(sender=User, uid=user.uid, kind="verify")
    return user


# --- Login tokens ---------------------------------------------------------------------
def auth_token_issue(*, user: User) -> IssuedToken:
    raw = auth_token_generate()
    now = timezone.now()
    token = AuthToken.objects.create(
        user=user, key_hash=auth_token_hash(raw), created_at=now, expires_at=now + settings.AUTH_TOKEN_TTL
    )
    return IssuedToken(token=token, raw=raw)


def auth_token_revoke(*, token: AuthToken) -> None:
    AuthToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def auth_tokens_revoke_all(*, user: User, keep: AuthToken | None = None) -> int:
    """Revoke every live token of `user` except `keep`; returns how many were revoked."""
    tokens = AuthToken.objects.filter(user=user, revoked_at__isnull=True)
    if keep is not None:
        tokens = tokens.exclude(pk=keep.pk)
    return tokens.update(revoked_at=timezone.now())


def user_login(*, email: str, password: str) -> tuple[User, IssuedToken]:
    """Check the credentials and issue a token.

    The password hasher runs whether or not the email is known, so the answer time does not
    reveal registered addresses. Raises InvalidCredentials or EmailNotVerified.
    """
    user = User.objects.filter(email__iexact=email.strip()).first()
    if user is None:
        # Same cost as a real check (this is what Django's ModelBackend does).
        User().set_password(password)
        raise InvalidCredentials
    if not user.check_password(password) or not user.is_active:
        raise InvalidCredentials
    if not user.is_verified:
        raise EmailNotVerified
    with transaction.atomic():
        user.last_login = timezone.now()
        user.save(update_fields=["last_login"])
        issued = auth_token_issue(user=user)
    return user, issued
