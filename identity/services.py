"""Writes of the identity app. The only place that sends identity's domain signals."""
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.utils import timezone

from identity import preferences as preference_rules
from identity import signals, tokens
from identity.addresses import email_canonical
from identity.models import AuthToken, User, UserPreferences
from identity.tokens import auth_token_generate, auth_token_hash
from project.errors import ApplicationError, FieldProblem


class InvalidCredentials(ApplicationError):
    """Unknown email or wrong password: deliberately the same error for both."""

    status_code = 401
    code = "invalid_credentials"
    message = "Invalid email or password."


class EmailNotVerified(ApplicationError):
    """Right password, but the address is not verified yet."""

    status_code = 403
    code = "email_not_verified"
    message = "Please verify your email before logging in."


class InvalidPassword(ApplicationError):
    """The password given to re-confirm an action is wrong (raised with the field's name)."""

    code = "invalid_password"
    message = "Incorrect password."


class WeakPassword(ApplicationError):
    """A new password that Django's AUTH_PASSWORD_VALIDATORS refuse (raised with the field's name)."""

    code = "weak_password"


class InvalidLinkToken(ApplicationError):
    """A verification or reset token that is tampered, malformed, expired or already used."""

    code = "invalid_token"
    message = "This link is invalid or has expired."


class PreferencesRefused(ApplicationError):
    """Preferences that break identity.preferences' rules (per key, under `preferences.<key>`)."""

    code = "invalid_preferences"


@dataclass(frozen=True)
class IssuedToken:
    token: AuthToken
    raw: str  # the secret; shown to the client once, never stored


def user_create(*, email: str, username: str, password: str) -> User | None:
    """Create an unverified user and queue its Agent profile and verification email.

    When the email is taken, nothing is created and the owner is emailed instead, so the
    caller answers both cases alike (no user enumeration). Returns the new user or None.
    """
    email = email_canonical(email)
    user = User(email=email, username=username)
    # Before looking the address up: a weak password is refused alike for taken and free addresses.
    password_validate(password=password, user=user, field="password")
    with transaction.atomic():
        existing = User.objects.filter(email__iexact=email).first()
        if existing is not None:
            signals.email_requested.send(sender=User, uid=existing.uid, kind="account_exists")
            return None
        user_register(user=user, password=password)
        signals.email_requested.send(sender=User, uid=user.uid, kind="verify")
    return user


def user_register(*, user: User, password: str | None) -> User:
    """Save a new, unsaved `user` and queue its creation at the Agent: the one path of every way
    a user is created (signup, `createsuperuser`, the admin's add form)."""
    with transaction.atomic():
        user.set_password(password)
        user.save()
        signals.user_registered.send(sender=User, user=user)
    return user


def password_validate(*, password: str, user: User, field: str) -> None:
    """AUTH_PASSWORD_VALIDATORS, the one place they run. Raises WeakPassword on `field`."""
    try:
        validate_password(password, user)
    except DjangoValidationError as exc:
        problems = [FieldProblem(" ".join(error.messages), error.code or "weak_password") for error in exc.error_list]
        raise WeakPassword(errors={field: problems}) from exc


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


def user_logout_all(*, user: User) -> int:
    return auth_tokens_revoke_all(user=user)


# --- Email verification -----------------------------------------------------------------
def user_email_verify(*, token: str) -> User:
    """Mark the address in a valid verification token as verified (idempotent).

    The token must still match the account's current address, so a link sent to an older
    address proves nothing. Raises InvalidLinkToken.
    """
    payload = tokens.email_verification_token_read(token)
    if payload is None:
        raise InvalidLinkToken
    try:
        uid = uuid.UUID(str(payload["uid"]))
    except ValueError as exc:
        raise InvalidLinkToken from exc
    with transaction.atomic():
        user = User.objects.select_for_update().filter(uid=uid, is_active=True).first()
        if user is None or user.email.lower() != str(payload["email"]).lower():
            raise InvalidLinkToken
        if not user.is_verified:
            user.is_verified = True
            user.save(update_fields=["is_verified"])
    return user


def verification_email_resend(*, email: str) -> None:
    """Queue a new verification email if `email` belongs to an unverified account; silently
    nothing otherwise, so the caller's answer does not reveal whether the address is registered."""
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email.strip(), is_active=True, is_verified=False).first()
        if user is not None:
            signals.email_requested.send(sender=User, uid=user.uid, kind="verify")


# --- Profile and password -----------------------------------------------------------------
def user_update(*, user: User, username: str) -> User:
    user.username = username
    user.save(update_fields=["username"])
    return user


def user_password_change(
    *, user: User, current_password: str, new_password: str, keep_token: AuthToken | None
) -> None:
    """Change the password and revoke every other token of the user (other sessions log out).

    Raises InvalidPassword, or Django's ValidationError when the new password is too weak.
    """
    if not user.check_password(current_password):
        raise InvalidPassword(field="current_password")
    password_validate(password=new_password, user=user, field="new_password")
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        auth_tokens_revoke_all(user=user, keep=keep_token)


def password_reset_request(*, email: str) -> None:
    """Queue a reset email if the address belongs to an active account; silently nothing otherwise."""
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email.strip(), is_active=True).first()
        if user is not None:
            signals.email_requested.send(sender=User, uid=user.uid, kind="password_reset")


def password_reset_confirm(*, token: str, new_password: str) -> User:
    """Set a new password from a reset token and revoke all the user's tokens.

    The token is single-use (it hashes the current password hash, which this changes) and
    expires after PASSWORD_RESET_TTL. Receiving the link also proves the address, so the account
    becomes verified. Raises InvalidLinkToken, or ValidationError for a weak password.
    """
    parts = tokens.password_reset_token_split(token)
    if parts is None:
        raise InvalidLinkToken
    uid_hex, inner = parts
    with transaction.atomic():
        user = User.objects.select_for_update().filter(uid=uuid.UUID(hex=uid_hex), is_active=True).first()
        if user is None or not tokens.password_reset_token_generator.check_token(user, inner):
            raise InvalidLinkToken
        password_validate(password=new_password, user=user, field="new_password")
        user.set_password(new_password)
        user.is_verified = True
        user.save(update_fields=["password", "is_verified"])
        auth_tokens_revoke_all(user=user)
    return user


# --- Deletion -------------------------------------------------------------------------------
def user_erase(*, user: User) -> uuid.UUID:
    """Delete the account locally and queue its erasure at the Agent, atomically.

    Tokens and preferences go with it (cascade). No password check: callers are the account
    owner after re-confirmation (user_delete) and the Django admin.
    """
    uid = user.uid
    with transaction.atomic():
        user.delete()
        signals.user_deleted.send(sender=User, uid=uid)
    return uid


def user_delete(*, user: User, password: str) -> uuid.UUID:
    """The owner deletes the account, re-confirming with the password. Raises InvalidPassword."""
    if not user.check_password(password):
        raise InvalidPassword(field="password")
    return user_erase(user=user)


# --- Preferences ----------------------------------------------------------------------------
def _preferences_checked(compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return compute()
    except preference_rules.PreferencesInvalid as exc:
        raise PreferencesRefused(
            errors={
                f"preferences.{key}" if key else "preferences": [FieldProblem(p.message, p.code)]
                for key, p in exc.problems.items()
            }
        ) from exc


def _preferences_write(
    *, user: User, new_data: Callable[[dict[str, Any]], dict[str, Any]], delta: dict[str, Any]
) -> UserPreferences:
    """Lock the row, compute the new document from the current one, and when it changed store
    it with the keys the Agent must reset, bump the revision and queue the sync."""
    with transaction.atomic():
        UserPreferences.objects.get_or_create(user=user)  # race-safe create, then lock the row
        prefs = UserPreferences.objects.select_for_update().get(pk=user.pk)
        data = _preferences_checked(lambda: new_data(prefs.data))
        if data == prefs.data:
            return prefs  # nothing changed: no revision, no event
        # Reset keys accumulate until the Agent has a revision that includes them.
        resets = set(prefs.reset_keys) | preference_rules.preferences_reset_keys(prefs.data, data)
        prefs.data = data
        prefs.reset_keys = sorted(resets)
        prefs.revision += 1
        prefs.save(update_fields=["data", "reset_keys", "revision", "updated_at"])
        signals.preferences_updated.send(sender=User, uid=user.uid, revision=prefs.revision, delta=delta)
    return prefs


def user_preferences_update(*, user: User, preferences: dict[str, Any]) -> UserPreferences:
    """PATCH: each key named replaces the stored one; a key set to None is removed.
    Raises PreferencesRefused."""
    return _preferences_write(
        user=user, new_data=lambda current: preference_rules.preferences_patch_apply(current, preferences),
        delta=preferences,
    )


def user_preferences_replace(*, user: User, preferences: dict[str, Any]) -> UserPreferences:
    """PUT (and clearing, with {}): the whole document. Raises PreferencesRefused."""
    return _preferences_write(
        user=user, new_data=lambda current: preference_rules.preferences_clean(preferences), delta=preferences
    )


def user_preferences_sync_record(*, uid: uuid.UUID, revision: int) -> None:
    """The consumer delivered preferences up to `revision` to the Agent. Never moves backwards;
    the reset keys are done once the Agent holds the current revision (a newer one keeps them:
    its delivery resets them again, which is harmless)."""
    # Conditional UPDATEs: concurrent consumers can only raise it.
    with transaction.atomic():
        prefs = UserPreferences.objects.filter(user__uid=uid)
        prefs.filter(synced_revision__lt=revision).update(synced_revision=revision)
        prefs.filter(revision=revision).exclude(reset_keys=[]).update(reset_keys=[])
