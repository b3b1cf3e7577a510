import re
import uuid

import pytest
from django.core import mail

from identity.emails import UnknownEmailKind, account_email_send_rollback_unsafe

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def frontend(settings):
    settings.FRONTEND_BASE_URL = "https://app.example.com/"


def test_verification_email_link_verifies_the_address(api_client, user) -> None:
    assert account_email_send_rollback_unsafe(uid=user.uid, kind="verify") is True

    [message] = mail.outbox
    assert message.to == [user.email]
    assert "Verify" in message.subject
    link = re.search(r"https://app\.example\.com/verify/(\S+)", message.body)
    assert link, message.body
    assert api_client.get(f"/api/verify/{link[1]}/").status_code == 200
    user.refresh_from_db()
    assert user.is_verified


def test_reset_email_link_resets_the_password(api_client, verified_user) -> None:
    assert account_email_send_rollback_unsafe(uid=verified_user.uid, kind="password_reset") is True

    [message] = mail.outbox
    link = re.search(r"https://app\.example\.com/reset-password\?token=(\S+)", message.body)
    assert link, message.body
    body = {"token": link[1], "new_password": "brand-new-passphrase-5"}
    assert api_client.post("/api/password/reset/confirm/", body, format="json").status_code == 200


def test_account_exists_email_has_no_token(verified_user) -> None:
    assert account_email_send_rollback_unsafe(uid=verified_user.uid, kind="account_exists") is True
    [message] = mail.outbox
    assert message.to == [verified_user.email]
    assert "https://app.example.com/login" in message.body
    assert "token" not in message.body


def test_plain_text_is_not_html_escaped(verified_user, settings) -> None:
    settings.FRONTEND_BASE_URL = "https://app.example.com/tom&jerry"
    account_email_send_rollback_unsafe(uid=verified_user.uid, kind="account_exists")
    assert "https://app.example.com/tom&jerry/login" in mail.outbox[0].body


def test_a_gone_user_gets_no_email(db) -> None:
    assert account_email_send_rollback_unsafe(uid=uuid.uuid4(), kind="verify") is False
    assert mail.outbox == []


def test_no_verification_email_once_verified(verified_user) -> None:
    assert account_email_send_rollback_unsafe(uid=verified_user.uid, kind="verify") is False
    assert mail.outbox == []


def test_unknown_kind_raises(verified_user) -> None:
    with pytest.raises(UnknownEmailKind):
        account_email_send_rollback_unsafe(uid=verified_user.uid, kind="newsletter")
