"""Domain signals of the identity app; sent only from identity.services, inside the transaction.

Only agent_bridge listens: it turns each signal into an outbox event.
"""
from django.dispatch import Signal

user_registered = Signal()
"""A new account was created. Payload: `user` (identity.User)."""

user_deleted = Signal()
"""An account was deleted locally. Payload: `uid` (uuid.UUID)."""

email_requested = Signal()
"""An email must be sent to a user. Payload: `uid` (uuid.UUID), `kind` (str: "verify" |
"account_exists" | "password_reset"). The consumer looks up the address and builds any link
token at send time, so neither the address nor a secret is stored in the outbox."""

preferences_updated = Signal()
"""Preferences were merged. Payload: `uid` (uuid.UUID), `revision` (int), `delta` (dict)."""
