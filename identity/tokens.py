"""Secrets for the identity app: login tokens, email-verification and password-reset link tokens."""
import hashlib
import re
import secrets
import uuid

from django.conf import settings
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import signing

# 32 random bytes → 43 url-safe characters.
AUTH_TOKEN_BYTES = 32


def auth_token_generate() -> str:
    return secrets.token_urlsafe(AUTH_TOKEN_BYTES)


def auth_token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


# --- Email verification -----------------------------------------------------------
# `<uid hex>:<timestamp>:<signature>`, signed with a salt that includes the address: it proves
# we sent it to that address and expires after EMAIL_VERIFICATION_TTL, yet carries no address
# (a token seen in a log, a browser history or a Referer header shows none). It grants
# nothing but "this address is verified", so it is no credential.
_VERIFY_SALT = "identity.email-verification"
_UID_HEX = re.compile(r"[0-9a-f]{32}")


def _verification_signer(email: str) -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=f"{_VERIFY_SALT}:{email}")


def email_verification_token_make(*, uid: uuid.UUID | str, email: str) -> str:
    return _verification_signer(email).sign(uuid.UUID(str(uid)).hex)


def email_verification_token_uid(token: str) -> uuid.UUID | None:
    """The uid a well-formed token names (not yet checked: see email_verification_token_check)."""
    uid_hex, sep, _rest = token.partition(":")
    if not sep or not _UID_HEX.fullmatch(uid_hex):
        return None
    return uuid.UUID(hex=uid_hex)


def email_verification_token_check(token: str, *, email: str) -> bool:
    """True when `token` was made for `email` (the account's current address) and has not expired."""
    try:
        _verification_signer(email).unsign(token, max_age=settings.EMAIL_VERIFICATION_TTL)
    except (signing.BadSignature, ValueError):  # SignatureExpired is a BadSignature
        return False
    return True


# --- Password reset -----------------------------------------------------------------
class _PasswordResetTokenGenerator(PasswordResetTokenGenerator):
    """Django's generator: it hashes the password hash and last login into the token, so the token
    dies once the password changes (single use); it expires after PASSWORD_RESET_TIMEOUT, which the
    settings derive from PASSWORD_RESET_TTL."""

    key_salt = "identity.tokens.password-reset"


password_reset_token_generator = _PasswordResetTokenGenerator()
# Django's token: base-36 timestamp, "-", hex digest (32 characters today; some room kept).
_RESET_INNER = re.compile(r"[0-9a-z]{1,13}-[0-9a-f]{20,64}")


def password_reset_token_make(*, user) -> str:
    """`<uid hex>.<Django reset token>`: the confirm body carries no uid, so the token names the user."""
    return f"{user.uid.hex}.{password_reset_token_generator.make_token(user)}"


def password_reset_token_split(token: str) -> tuple[uuid.UUID, str] | None:
    """(uid, Django token) or None when the token is not exactly of the shape we make.

    Exact patterns, not int()/UUID() leniency: int(x, 16) takes "-", "+", "_", spaces and "0x",
    which uuid.UUID then refuses with an exception (a 500, before this was strict).
    """
    uid_hex, sep, inner = token.partition(".")
    if not sep or not _UID_HEX.fullmatch(uid_hex) or not _RESET_INNER.fullmatch(inner):
        return None
    return uuid.UUID(hex=uid_hex), inner


# --- Email change --------------------------------------------------------------------------
# A signed, timestamped id of an EmailChangeRequest row: no address in its readable payload
# (links end up in logs and browser histories). Single use: confirming deletes the row.
_EMAIL_CHANGE_SALT = "identity.email-change"


def email_change_token_make(*, request_id) -> str:
    return signing.dumps({"r": str(request_id)}, salt=_EMAIL_CHANGE_SALT)


def email_change_token_read(token: str) -> str | None:
    """The request id in the token, or None when it is tampered, malformed or expired."""
    try:
        payload = signing.loads(token, salt=_EMAIL_CHANGE_SALT, max_age=settings.EMAIL_CHANGE_TTL)
    except (signing.BadSignature, ValueError, TypeError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("r"), str):
        return None
    return payload["r"]
