"""Issue 11, finding 14: no text an attacker chose reaches a mailbox.

The attack: anyone can sign up with someone else's address, and the free-text username was put
raw into the verification email to that address, so a genuine Kairos email could carry the
attacker's link or instruction. Now the emails hold only text we wrote (identity/emails.py):
checked by sending every kind of email after a hostile signup, and by reading every template.
"""
import re
from pathlib import Path

import pytest
from django.core import mail
from rest_framework.test import APIClient

from identity.emails import CONTEXT_NAMES, KINDS, account_email_context, account_email_send_rollback_unsafe
from identity.models import User

pytestmark = [pytest.mark.security, pytest.mark.django_db]

TEMPLATES = Path(__file__).resolve().parents[2] / "identity" / "templates" / "identity" / "email"
HOSTILE = "Your account is locked. Call +1 555 0100 or visit https://kairos-support.example/unlock"


@pytest.fixture(autouse=True)
def no_throttles(settings) -> None:
    settings.THROTTLING_ENABLED = False


def test_a_hostile_username_reaches_no_email(outbox) -> None:
    client = APIClient()
    body = {"username": HOSTILE, "email": "victim@example.com", "password": "a-long-passphrase-42"}
    assert client.post("/api/signup/", body, format="json").status_code == 201
    assert client.post("/api/signup/", body, format="json").status_code == 201  # "account exists"
    assert client.post("/api/password/reset/", {"email": "victim@example.com"}, format="json").status_code == 202
    user = User.objects.get()
    assert user.username == HOSTILE  # stored (it is the user's display name), but never mailed
    # Kinds whose facts live in a MailNotice or an email-change request send nothing without them
    # (tests/security/test_account_erasure.py and identity's tests send those); the rest all send.
    sent = [kind for kind in KINDS if account_email_send_rollback_unsafe(uid=user.uid, kind=kind)]
    assert {"verify", "account_exists", "password_reset"} <= set(sent)
    assert len(mail.outbox) == len(sent)
    for kind in {"verify", "account_exists", "password_reset", "password_changed", "password_reset_done"}:
        assert set(account_email_context(user=user, kind=kind)) <= CONTEXT_NAMES
    for message in mail.outbox:
        text = message.subject + "\n" + message.body
        for fragment in ("kairos-support", "555 0100", "locked", "unlock"):
            assert fragment not in text, (message.subject, fragment)


def test_the_email_templates_use_only_our_own_values() -> None:
    """A template that starts using a user-chosen value (username, a note...) fails here."""
    used = set()
    for path in TEMPLATES.glob("*.txt"):
        used |= set(re.findall(r"{{\s*([a-zA-Z_][\w.]*)", path.read_text()))
        assert "{%" not in path.read_text().replace("{% autoescape off %}", "").replace("{% endautoescape %}", ""), (
            f"{path.name}: template logic could print context it was not meant to"
        )
    assert used, "the templates use some values"
    assert used <= CONTEXT_NAMES, f"templates use {sorted(used - CONTEXT_NAMES)}"
    assert "username" not in CONTEXT_NAMES
