"""identity.services: what each service writes, raises and mails, whoever calls it (the API
drives some of these; the endpoints' answers are in test_views.py and test_account_views.py)."""
import json
import uuid
from unittest import mock

import pytest
from rest_framework.test import APIClient

from identity import selectors, services
from identity.models import AuthToken, MailNotice, User, UserPreferences
from identity.tests.test_devices import FIREFOX_UBUNTU, SAFARI_IPHONE

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clear_cache")]


def login(email: str, password: str, *, user_agent: str = FIREFOX_UBUNTU, address: str = "203.0.113.7"):
    client = APIClient(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=address)
    response = client.post("/api/login/", {"email": email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response


# --- Security notices (MailNotice), raised by the services and mailed by identity.emails ------
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


# --- user_delete ------------------------------------------------------------------------------
def test_deletion_and_its_event_are_atomic(verified_user, password, outbox) -> None:
    """If the event cannot be written, the account is not deleted either."""
    uid = verified_user.uid
    failing = mock.patch("agent_bridge.receivers.outbox_event_add", side_effect=RuntimeError("outbox down"))
    with failing, pytest.raises(RuntimeError):
        services.user_delete(user=verified_user, password=password)
    assert User.objects.filter(uid=uid).exists()
    assert outbox("user.deleted") == []


def test_deletion_writes_its_events_inside_the_transaction(verified_user, password) -> None:
    """user.deleted (the Agent's erasure) and the deletion notice mail, both in the transaction."""
    from django.db import connection

    seen = []

    def record(**kwargs):
        payload = kwargs["payload"]
        seen.append((payload.TYPE, getattr(payload, "kind", None), connection.in_atomic_block))

    with mock.patch("agent_bridge.receivers.outbox_event_add", side_effect=record):
        services.user_delete(user=verified_user, password=password)
    assert seen == [("user.deleted", None, True), ("email.requested", "account_deleted", True)]


# --- Preferences: the rules hold for every caller; the Agent's sync record --------------------
def test_the_service_enforces_the_rules_for_every_caller(verified_user) -> None:
    """The admin or a shell cannot store a shape the API would refuse."""
    with pytest.raises(services.PreferencesRefused) as refused:
        services.user_preferences_replace(user=verified_user, preferences={"vibes": "quiet"})
    assert [p.code for p in refused.value.errors["preferences.vibes"]] == ["not_a_list"]
    with pytest.raises(services.PreferencesRefused):
        services.user_preferences_update(user=verified_user, preferences={"secret": 1})
    assert selectors.user_preferences_get(user=verified_user) == {}


def test_sync_record_never_moves_backwards(verified_user) -> None:
    for _ in range(3):
        services.user_preferences_update(user=verified_user, preferences={"vibes": [str(uuid.uuid4())]})
    services.user_preferences_sync_record(uid=verified_user.uid, revision=3)
    services.user_preferences_sync_record(uid=verified_user.uid, revision=2)
    assert UserPreferences.objects.get(user=verified_user).synced_revision == 3
    services.user_preferences_sync_record(uid=uuid.uuid4(), revision=9)  # a gone user: nothing to do


def test_sync_record_of_the_current_revision_ends_the_resets(verified_user) -> None:
    services.user_preferences_update(user=verified_user, preferences={"dietary": ["vegan"]})
    services.user_preferences_update(user=verified_user, preferences={"dietary": None})
    services.user_preferences_update(user=verified_user, preferences={"vibes": ["quiet"]})

    services.user_preferences_sync_record(uid=verified_user.uid, revision=2)  # an older revision: keep them
    assert UserPreferences.objects.get(user=verified_user).reset_keys == ["dietary"]
    services.user_preferences_sync_record(uid=verified_user.uid, revision=3)
    assert UserPreferences.objects.get(user=verified_user).reset_keys == []
