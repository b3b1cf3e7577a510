"""Writes of the identity app. The only place that sends identity's domain signals."""
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from identity import preferences as preference_rules
from identity import selectors, signals, tokens
from identity.addresses import email_canonical, email_canonical_or_none
from identity.devices import ClientInfo
from identity.models import AuthToken, EmailChangeRequest, MailNotice, User, UserPreferences
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


class SessionNotFound(ApplicationError):
    """No live session with that id belongs to the user: another user's, ended or unknown look the same."""

    status_code = 404
    code = "session_not_found"
    message = "No such session."


logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IssuedToken:
    token: AuthToken
    raw: str  # the secret; shown to the client once, never stored


def _email_recipient_uid(user: User | None) -> uuid.UUID:
    """The uid to queue an account email for: `user`'s, or, without one, a uid that names no
    account. A flow that takes an email then does the same work (one lookup, one outbox row)
    whether or not the address has an account, so neither its answer time nor the bus backlog
    tells; the consumer finds nobody under the made-up uid and sends nothing."""
    return user.uid if user is not None else uuid.uuid4()


def user_create(*, email: str, username: str, password: str) -> User | None:
    """Create an unverified user and queue its Agent profile and verification email.

    When the email is taken, nothing is created and the owner is emailed instead, so the
    caller answers both cases alike (no user enumeration): the password is hashed in both cases
    (Argon2 is nearly all of the cost), and a concurrent signup for the same new address ends
    like a sequential one. Returns the new user or None. Raises EmailNotCanonical, or
    WeakPassword.
    """
    email = email_canonical(email)
    user = User(email=email, username=username)
    # Before looking the address up: a weak password is refused alike for taken and free addresses.
    password_validate(password=password, user=user, field="password")
    # Hashed before the lookup and outside the transaction: the same cost (Argon2 is nearly all
    # of it) whether or not the address is taken, and no write lock held while it runs.
    user.set_password(password)
    with transaction.atomic():
        existing = User.objects.filter(email=email).first()
        if existing is None:
            try:
                with transaction.atomic():  # a savepoint: the insert may lose a race, see below
                    _user_insert(user=user)
            except IntegrityError:
                # A concurrent signup committed this address between the lookup and the insert
                # (PostgreSQL: the insert waited for it). Answer as if it had come first.
                existing = User.objects.filter(email=email).first()
                if existing is None:
                    raise
        if existing is not None:
            signals.email_requested.send(sender=User, uid=existing.uid, kind="account_exists")
            return None
        signals.email_requested.send(sender=User, uid=user.uid, kind="verify")
    return user


def user_register(*, user: User, password: str | None) -> User:
    """Save a new, unsaved `user` and queue its creation at the Agent: the one path of every way
    a user is created (signup, `createsuperuser`, the admin's add form)."""
    user.set_password(password)
    return _user_insert(user=user)


def _user_insert(*, user: User) -> User:
    """Save a new `user` whose password is already set, and queue its creation at the Agent."""
    with transaction.atomic():
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
def auth_token_issue(*, user: User, client: ClientInfo | None = None) -> IssuedToken:
    raw = auth_token_generate()
    now = timezone.now()
    client = client or ClientInfo()
    token = AuthToken.objects.create(
        user=user,
        key_hash=auth_token_hash(raw),
        created_at=now,
        expires_at=now + settings.AUTH_TOKEN_TTL,
        device_label=client.device_label,
        network=client.network,
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


def user_login(*, email: str, password: str, client: ClientInfo | None = None) -> tuple[User, IssuedToken]:
    """Check the credentials and issue a token labelled with the client's device and network.

    The password hasher runs whether or not the email is known, so the answer time does not
    reveal registered addresses. A login from a device not seen before queues the new-device
    mail (see _login_notice_if_new_device). Raises InvalidCredentials or EmailNotVerified.
    """
    canonical = email_canonical_or_none(email)
    user = User.objects.filter(email=canonical).first() if canonical is not None else None
    if user is None:
        # Same cost as a real check (this is what Django's ModelBackend does).
        User().set_password(password)
        raise InvalidCredentials
    if not user.check_password(password) or not user.is_active:
        raise InvalidCredentials
    if not user.is_verified:
        raise EmailNotVerified
    client = client or ClientInfo()
    with transaction.atomic():
        logged_in_before = user.last_login is not None
        user.last_login = timezone.now()
        # An UPDATE that counts, not save(update_fields=...): the owner may have deleted the account
        # (from another device) since it was read, and that is a failed login, not a 500. The UPDATE
        # locks the row, so a deletion that starts now waits, and deletes the token issued here too.
        if not User.objects.filter(pk=user.pk).update(last_login=user.last_login):
            raise InvalidCredentials
        issued = auth_token_issue(user=user, client=client)
        if logged_in_before:
            _login_notice_if_new_device(user=user, issued=issued)
    return user, issued


def _login_notice_if_new_device(*, user: User, issued: IssuedToken) -> None:
    """The device rule: a login is from a new device when no other session of the account opened
    in the last NEW_DEVICE_MEMORY_DAYS carries the same device label ("<browser> on <system>").
    The first login of an account never counts (the caller checks), nor does any login while the
    user has turned the mail off."""
    if not user.notify_new_device:
        return
    token = issued.token
    since = token.created_at - timedelta(days=settings.NEW_DEVICE_MEMORY_DAYS)
    known = (
        AuthToken.objects.filter(user=user, device_label=token.device_label, created_at__gte=since)
        .exclude(pk=token.pk)
        .exists()
    )
    if known:
        return
    MailNotice.objects.create(
        uid=user.uid,
        kind=MailNotice.Kind.NEW_DEVICE_LOGIN,
        details={"device": token.device_label, "network": token.network, "at": token.created_at.isoformat()},
    )
    signals.email_requested.send(sender=User, uid=user.uid, kind=signals.EmailKind.NEW_DEVICE_LOGIN)


def user_logout_all(*, user: User) -> int:
    return auth_tokens_revoke_all(user=user)


# --- Email verification -----------------------------------------------------------------
def user_email_verify(*, token: str) -> User:
    """Mark the address in a valid verification token as verified (idempotent).

    The token must still match the account's current address, so a link sent to an older
    address proves nothing. Raises InvalidLinkToken.
    """
    uid = tokens.email_verification_token_uid(token)
    if uid is None:
        raise InvalidLinkToken
    with transaction.atomic():
        user = User.objects.select_for_update().filter(uid=uid, is_active=True).first()
        if user is None or not tokens.email_verification_token_check(token, email=user.email):
            raise InvalidLinkToken
        if not user.is_verified:
            user.is_verified = True
            user.save(update_fields=["is_verified"])
    return user


def verification_email_resend(*, email: str) -> None:
    """Queue a new verification email if `email` belongs to an unverified account, and the same
    work for nobody otherwise (see _email_recipient_uid), so that neither the caller's answer nor its
    time reveals whether the address is registered."""
    canonical = email_canonical_or_none(email)
    with transaction.atomic():
        user = User.objects.filter(email=canonical or "", is_active=True, is_verified=False).first()
        signals.email_requested.send(sender=User, uid=_email_recipient_uid(user), kind="verify")


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
        signals.email_requested.send(sender=User, uid=user.uid, kind=signals.EmailKind.PASSWORD_CHANGED)


def password_reset_request(*, email: str) -> None:
    """Queue a reset email if the address belongs to an active account, and the same work for
    nobody otherwise (see _email_recipient_uid)."""
    canonical = email_canonical_or_none(email)
    with transaction.atomic():
        user = User.objects.filter(email=canonical or "", is_active=True).first()
        signals.email_requested.send(sender=User, uid=_email_recipient_uid(user), kind="password_reset")


def password_reset_confirm(*, token: str, new_password: str) -> User:
    """Set a new password from a reset token and revoke all the user's tokens.

    The token is single-use (it hashes the current password hash, which this changes) and
    expires after PASSWORD_RESET_TTL. Receiving the link also proves the address, so the account
    becomes verified. Raises InvalidLinkToken, or ValidationError for a weak password.
    """
    parts = tokens.password_reset_token_split(token)
    if parts is None:
        raise InvalidLinkToken
    uid, inner = parts
    with transaction.atomic():
        user = User.objects.select_for_update().filter(uid=uid, is_active=True).first()
        if user is None or not tokens.password_reset_token_generator.check_token(user, inner):
            raise InvalidLinkToken
        password_validate(password=new_password, user=user, field="new_password")
        user.set_password(new_password)
        user.is_verified = True
        user.save(update_fields=["password", "is_verified"])
        auth_tokens_revoke_all(user=user)
        signals.email_requested.send(sender=User, uid=user.uid, kind=signals.EmailKind.PASSWORD_RESET_DONE)
    return user


# --- Deletion -------------------------------------------------------------------------------
def user_erase(*, user: User) -> uuid.UUID:
    """Delete the account locally, queue its erasure at the Agent and the deletion notice, atomically.

    Tokens, preferences, allergy history and email-change requests go with it (cascade); the
    user's unsent mail notices are deleted. The address is kept only in the deletion notice's
    MailNotice row, which the consumer deletes when it sends the mail (or the prune after
    MAIL_NOTICE_TTL_HOURS, if it never can). No password check: callers are the account owner
    after re-confirmation (user_delete) and the Django admin.
    """
    uid, email = user.uid, user.email
    with transaction.atomic():
        # The user's row first: a consumer about to add a row that refers to the user waits for
        # this transaction and then finds no user, and one already adding it is waited for, so
        # the cascade below sees its row (selectors.user_locked_for_dependent_write).
        User.objects.select_for_update().filter(pk=user.pk).values_list("pk").first()
        MailNotice.objects.filter(uid=uid).delete()
        user.delete()
        signals.user_deleted.send(sender=User, uid=uid)
        # After user_deleted: whatever erases the user's bus copies then has run already.
        MailNotice.objects.create(uid=uid, kind=MailNotice.Kind.ACCOUNT_DELETED, email=email)
        signals.email_requested.send(sender=User, uid=uid, kind=signals.EmailKind.ACCOUNT_DELETED)
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


def user_preferences_sync_record(*, uid: uuid.UUID, revision: int, keep_reset_keys: bool = False) -> None:
    """The consumer delivered preferences up to `revision` to the Agent. Never moves backwards;
    the reset keys are done once the Agent holds the current revision (a newer one keeps them:
    its delivery resets them again, which is harmless), unless `keep_reset_keys`: while an
    older write may still land at the Agent, they say what it must not bring back."""
    # Conditional UPDATEs: concurrent consumers can only raise it.
    with transaction.atomic():
        prefs = UserPreferences.objects.filter(user__uid=uid)
        prefs.filter(synced_revision__lt=revision).update(synced_revision=revision)
        if not keep_reset_keys:
            user_preferences_reset_keys_clear(uid=uid, revision=revision)


def user_preferences_reset_keys_clear(*, uid: uuid.UUID, revision: int) -> None:
    """The Agent holds `revision` and nothing older can land there any more: forget the reset
    keys, unless the preferences changed since."""
    UserPreferences.objects.filter(user__uid=uid, revision=revision).exclude(reset_keys=[]).update(reset_keys=[])


# --- Email change ---------------------------------------------------------------------------
def email_change_request(*, user: User, new_email: str, password: str) -> None:
    """Start a change of address: nothing changes until the new address confirms a link.

    The work here is the same whatever `new_email` is (the password check, the deletion of the
    user's older request, one request row, one outbox row), so neither the answer nor its cost
    says whether the address has an account. Whose address it is, is decided when the mail is
    sent (identity.emails): a free address gets the link; an address of another account gets
    no link, only a notice to its owner (no takeover); the user's own address gets nothing.
    Raises InvalidPassword.
    """
    if not user.check_password(password):
        raise InvalidPassword(field="password")
    new_email = email_canonical(new_email)
    with transaction.atomic():
        # A new attempt cancels any older pending one: only the latest link works.
        EmailChangeRequest.objects.filter(user=user).delete()
        EmailChangeRequest.objects.create(user=user, new_email=new_email, old_email=user.email)
        signals.email_requested.send(sender=User, uid=user.uid, kind=signals.EmailKind.EMAIL_CHANGE_VERIFY)


def email_change_confirm(*, token: str) -> User:
    """Switch the account to the address of a valid change link; the old address gets a notice.

    The link is single-use (the request row is deleted), expires after EMAIL_CHANGE_TTL, dies
    when the account's address changed since the request, and fails if the new address was
    taken meanwhile. The new address becomes the verified one. Raises InvalidLinkToken.
    """
    request_id = tokens.email_change_token_read(token)
    try:
        request_id = uuid.UUID(request_id) if request_id is not None else None
    except ValueError:
        request_id = None
    if request_id is None:
        raise InvalidLinkToken
    with transaction.atomic():
        change = EmailChangeRequest.objects.select_for_update().filter(pk=request_id).first()
        if change is None:
            raise InvalidLinkToken
        user = User.objects.select_for_update().get(pk=change.user_id)
        usable = (
            user.is_active
            and user.email == change.old_email
            and change.created_at + settings.EMAIL_CHANGE_TTL > timezone.now()
            and selectors.user_get_by_email(email=change.new_email) is None
        )
        if usable:
            old_email = user.email
            user.email, user.is_verified = change.new_email, True
            try:
                with transaction.atomic():
                    user.save(update_fields=["email", "is_verified"])
            except IntegrityError:  # taken between the check and the write
                usable = False
        if not usable:
            change.delete()  # a dead link stays dead
        else:
            EmailChangeRequest.objects.filter(user=user).delete()
            MailNotice.objects.create(uid=user.uid, kind=MailNotice.Kind.EMAIL_CHANGED, email=old_email)
            signals.email_requested.send(sender=User, uid=user.uid, kind=signals.EmailKind.EMAIL_CHANGED)
    if not usable:
        raise InvalidLinkToken
    return user


# --- Sessions and notification settings -------------------------------------------------------
def session_end(*, user: User, session_id: int) -> None:
    """Revoke one live session of `user`. Raises SessionNotFound for any id that is not one:
    another user's, revoked, expired or unknown look the same."""
    ended = AuthToken.objects.filter(
        pk=session_id, user=user, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).update(revoked_at=timezone.now())
    if not ended:
        raise SessionNotFound


def user_notifications_update(*, user: User, new_device_login: bool) -> User:
    user.notify_new_device = new_device_login
    user.save(update_fields=["notify_new_device"])
    return user


# --- Retention --------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccountPruneResult:
    email_change_requests: int
    mail_notices: int
    tokens: int


def account_data_prune(*, now: datetime | None = None) -> AccountPruneResult:
    """Delete what identity keeps past its use: expired email-change requests, mail notices the
    consumer never sent after MAIL_NOTICE_TTL_HOURS, and tokens revoked or expired for longer
    than NEW_DEVICE_MEMORY_DAYS (the new-device rule no longer looks at them)."""
    now = now or timezone.now()
    requests, _ = EmailChangeRequest.objects.filter(created_at__lt=now - settings.EMAIL_CHANGE_TTL).delete()
    notice_ttl = timedelta(hours=settings.MAIL_NOTICE_TTL_HOURS)
    notices, _ = MailNotice.objects.filter(created_at__lt=now - notice_ttl).delete()
    dead_before = now - timedelta(days=settings.NEW_DEVICE_MEMORY_DAYS)
    tokens_, _ = AuthToken.objects.filter(
        Q(revoked_at__lt=dead_before) | Q(expires_at__lt=dead_before), created_at__lt=dead_before
    ).delete()
    if notices:
        logger.warning("pruned %d mail notices that were never sent", notices)
    return AccountPruneResult(email_change_requests=requests, mail_notices=notices, tokens=tokens_)
