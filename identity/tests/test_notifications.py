"""Security notification mails, sent through the outbox, and the notification settings API."""
import json

import pytest
from rest_framework.test import APIClient

from identity import services
from identity.models import MailNotice, User
from identity.tests.test_devices import FIREFOX_UBUNTU, SAFARI_IPHONE

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear(clear_cache):
    pass


def login(email: str, password: str, *, user_agent: str = FIREFOX_UBUNTU, address: str = "203.0.113.7"):
    client = APIClient(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=address)
    response = client.post("/api/login/", {"email": email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response


def test_every_notice_event_holds_only_its_kind(verified_user, password, outbox) -> None:
    login(verified_user.email, password)
    login(verified_user.email, password, user_agent=SAFARI_IPHONE)
    services.user_password_change(
        user=verified_user, current_password=password, new_password="n3w-passphrase-x", keep_token=None
    )
    services.user_delete(user=verified_user, password="n3w-passphrase-x")
    events = outbox("email.requested")
    # The erasure empties the user's events still in flight (their handlers find the user gone);
    # only the deletion notice, raised after it, keeps its kind.
    assert [e.data for e in events] == [{}, {}, {"kind": "account_deleted"}]
    assert "ada@example.com" not in json.dumps([e.envelope for e in events])


# --- Password -------------------------------------------------------------------------------
def test_password_change_mails_the_owner(auth_client, verified_user, password, deliver_mail) -> None:
    User.objects.filter(pk=verified_user.pk).update(username="Zorblax visit evil.example")
    body = {"current_password": password, "new_password": "another-long-passphrase-9"}
    assert auth_client.post("/api/password/change/", body, format="json").status_code == 200
    [message] = deliver_mail()
    assert message.to == [verified_user.email]
    assert "password was changed" in message.subject
    assert "Zorblax" not in message.body


def test_a_failed_password_change_mails_nothing(auth_client, deliver_mail) -> None:
    body = {"current_password": "wrong-password", "new_password": "another-long-passphrase-9"}
    assert auth_client.post("/api/password/change/", body, format="json").status_code == 400
    assert deliver_mail() == []


def test_password_reset_mails_a_notice_after_the_reset(api_client, verified_user, deliver_mail) -> None:
    from identity.tokens import password_reset_token_make

    body = {"token": password_reset_token_make(user=verified_user), "new_password": "brand-new-passphrase-5"}
    assert api_client.post("/api/password/reset/confirm/", body, format="json").status_code == 200
    [message] = deliver_mail()
    assert message.to == [verified_user.email]
    assert "password was reset" in message.subject


# --- Account deleted ------------------------------------------------------------------------
def test_deletion_mails_the_address_then_keeps_nothing(auth_client, verified_user, password, deliver_mail) -> None:
    uid = verified_user.uid
    assert auth_client.delete("/api/account/", {"password": password}, format="json").status_code == 204
    # Until the mail is sent, the address sits in one row, for that mail only.
    [notice] = MailNotice.objects.all()
    assert (notice.uid, notice.kind, notice.email) == (uid, "account_deleted", "ada@example.com")

    [message] = deliver_mail()

    assert message.to == ["ada@example.com"]
    assert "deleted" in message.subject
    assert not MailNotice.objects.exists()


def test_deletion_drops_the_users_unsent_notices(verified_user, password) -> None:
    login(verified_user.email, password)
    login(verified_user.email, password, user_agent=SAFARI_IPHONE)
    assert MailNotice.objects.filter(kind="new_device_login").exists()
    services.user_delete(user=verified_user, password=password)
    assert list(MailNotice.objects.values_list("kind", flat=True)) == ["account_deleted"]


# --- New device -----------------------------------------------------------------------------
def test_the_first_login_of_an_account_mails_nothing(verified_user, password, deliver_mail) -> None:
    login(verified_user.email, password, user_agent=SAFARI_IPHONE)
    assert deliver_mail() == []


def test_a_known_device_mails_nothing(verified_user, password, deliver_mail) -> None:
    login(verified_user.email, password)
    login(verified_user.email, password, address="198.51.100.1")  # same device, other network
    assert deliver_mail() == []


def test_a_new_device_mails_its_label_and_network(verified_user, password, deliver_mail) -> None:
    login(verified_user.email, password)
    login(verified_user.email, password, user_agent=SAFARI_IPHONE, address="2001:db8:7:1::9")

    [message] = deliver_mail()

    assert message.to == [verified_user.email]
    assert "Mobile Safari on iOS" in message.body
    assert "2001:db8:7::/48" in message.body
    assert "2001:db8:7:1::9" not in message.body
    assert not MailNotice.objects.exists()


def test_a_device_forgotten_after_the_memory_is_new_again(verified_user, password, deliver_mail, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from identity.models import AuthToken

    login(verified_user.email, password)
    AuthToken.objects.update(created_at=timezone.now() - timedelta(days=settings.NEW_DEVICE_MEMORY_DAYS + 1))
    login(verified_user.email, password)
    assert len(deliver_mail()) == 1


def test_the_new_device_mail_can_be_turned_off(verified_user, password, deliver_mail, auth_client) -> None:
    assert auth_client.get("/api/notifications/").json() == {"new_device_login": True}
    response = auth_client.patch("/api/notifications/", {"new_device_login": False}, format="json")
    assert response.status_code == 200
    assert response.json() == {"new_device_login": False}
    assert auth_client.get("/api/notifications/").json() == {"new_device_login": False}

    login(verified_user.email, password)
    login(verified_user.email, password, user_agent=SAFARI_IPHONE)

    assert deliver_mail() == []
    assert not MailNotice.objects.exists()


def test_turning_it_off_before_the_mail_went_out_stops_it(verified_user, password, deliver_mail) -> None:
    login(verified_user.email, password)
    login(verified_user.email, password, user_agent=SAFARI_IPHONE)
    User.objects.filter(pk=verified_user.pk).update(notify_new_device=False)
    assert deliver_mail() == []
    assert not MailNotice.objects.exists()


BAD_SETTINGS = [{}, {"new_device_login": "yes"}, {"new_device_login": 1}, {"new_device_login": None}]


@pytest.mark.parametrize("body", BAD_SETTINGS)
def test_bad_settings_are_400_and_change_nothing(auth_client, verified_user, body) -> None:
    response = auth_client.patch("/api/notifications/", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"]["new_device_login"][0]["code"] in ("invalid", "required", "null")
    verified_user.refresh_from_db()
    assert verified_user.notify_new_device is True
