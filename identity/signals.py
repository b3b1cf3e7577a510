"""Domain signals of the identity app; sent only from identity.services, inside the transaction.

Only agent_bridge listens: it turns each signal into an outbox event.
"""
from enum import StrEnum

from django.dispatch import Signal


class EmailKind(StrEnum):
    """The kinds of `email_requested` (and of identity.emails' templates)."""

    VERIFY = "verify"
    ACCOUNT_EXISTS = "account_exists"
    PASSWORD_RESET = "password_reset"  # noqa: S105 (a kind name, not a secret)
    EMAIL_CHANGE_VERIFY = "email_change_verify"  # the link to the new address, or a notice to its owner
    PASSWORD_CHANGED = "password_changed"  # noqa: S105
    PASSWORD_RESET_DONE = "password_reset_done"  # noqa: S105
    # Notices whose facts are captured in identity.MailNotice (its Kind has the same values).
    EMAIL_CHANGED = "email_changed"  # to the old address
    ACCOUNT_DELETED = "account_deleted"
    NEW_DEVICE_LOGIN = "new_device_login"


user_registered = Signal()
"""A new account was created. Payload: `user` (identity.User)."""

user_deleted = Signal()
"""An account was deleted locally. Payload: `uid` (uuid.UUID)."""

email_requested = Signal()
"""An email must be sent to a user. Payload: `uid` (uuid.UUID), `kind` (EmailKind). The consumer
looks up the address and builds any link token at send time, so neither the address nor a secret
is stored in the outbox; what it cannot look up then sits in identity.MailNotice until the mail
is sent."""

preferences_updated = Signal()
"""Preferences were merged. Payload: `uid` (uuid.UUID), `revision` (int), `delta` (dict)."""
