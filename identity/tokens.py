"""Secrets for the identity app: login tokens, email-verification and password-reset link tokens."""
import hashlib
import secrets

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
# A signed, timestamped {uid, email}: it proves we sent it to that address and expires after
# EMAIL_VERIFICATION_TTL. It grants nothing but "this address is verified", so it is no credential.
_VERIFY_SALT = "identity.email-verification"


def email_verification_token_make(*, uid, email: str) -> str:
    return signing.dumps({"uid": str(uid), "email": email}, salt=_VERIFY_SALT, compress=True)


def email_verification_token_read(token: str) -> dict | None:
    """The signed payload, or None when the token is tampered, malformed or expired."""
    try:
        payload = signing.loads(token, salt=_VERIFY_SALT, max_age=settings.EMAIL_VERIFICATION_TTL)
    except (signing.BadSignature, ValueError, TypeError):  # SignatureExpired is a BadSignature
        return None
    if not isinstance(payload, dict) or not {"uid", "email"} <= payload.keys():
        return None
    return payload


# --- Password reset -----------------------------------------------------------------
class _PasswordResetTokenGenerator(PasswordResetTokenGenerator):
    """Django's generator: it hashes the password hash and last login into the token, so the token
    dies once the password changes (single use); it expires after PASSWORD_RESET_TIMEOUT, which the
    settings derive from PASSWORD_RESET_TTL."""

    key_salt = "identity.tokens.password-reset"


password_reset_token_generator = _PasswordResetTokenGenerator()


def password_reset_token_make(*, user) -> str:
    """`<uid hex>.<Django reset token>`: the confirm body carries no uid, so the token names the user."""
    return f"{user.uid.hex}.{password_reset_token_generator.make_token(user)}"


def password_reset_token_split(token: str) -> tuple[str, str] | None:
    """(uid hex, Django token) or None when the token has the wrong shape."""
    uid_hex, sep, inner = token.partition(".")
    if not sep or len(uid_hex) != 32 or not inner:
        return None
    try:
        int(uid_hex, 16)
    except ValueError:
        return None
    return uid_hex, inner


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
