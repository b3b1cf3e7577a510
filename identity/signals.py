"""Domain signals of the identity app; sent only from identity.services, inside the transaction.

Only agent_bridge listens: it turns each signal into an outbox event.
"""
from django.dispatch import Signal

user_registered = Signal()
"""A new account was created. Payload: `user` (identity.User)."""

user_deleted = Signal()
"""An account was deleted locally. Payload: `uid` (uuid.UUID)."""

email_requested = Signal()
"""An email must be sent to a user. Payload: `uid` (uuid.UUID), `kind` (str, one of
identity.emails.KINDS: the links "verify" | "password_reset" | "email_change_verify", and the
notices "account_exists" | "password_changed" | "password_reset_done" |
"email_changed" | "account_deleted" | "new_device_login"). The consumer looks up the address and
builds any link token at send time, so neither the address nor a secret is stored in the outbox;
what it cannot look up then sits in identity.MailNotice until the mail is sent."""

preferences_updated = Signal()
"""Preferences were merged. Payload: `uid` (uuid.UUID), `revision` (int), `delta` (dict)."""
