"""identity.account_views over the HTTP API: email change, sessions, notification settings
(the export: test_export.py)."""
import json
import re
from datetime import timedelta
from unittest import mock

import pytest
from django.core import signing
from rest_framework.test import APIClient

from identity import tokens
from identity.models import AuthToken, EmailChangeRequest, MailNotice, User
from identity.tests.test_devices import FIREFOX_UBUNTU, SAFARI_IPHONE

pytestmark = pytest.mark.django_db


NEW = "new-address@example.com"
LINK = re.compile(r"https://app\.example\.com/email-change\?token=(\S+)")


@pytest.fixture(autouse=True)
def frontend(settings, clear_cache):
    settings.FRONTEND_BASE_URL = "https://app.example.com"


@pytest.fixture
def other_user(db):
    return User.objects.create_user("grace@example.com", "another-passphrase-77", username="grace", is_verified=True)


def change(client: APIClient, new_email: str, password: str):
    return client.post("/api/email/change/", {"new_email": new_email, "password": password}, format="json")


def confirm(token: str):
    return APIClient().post("/api/email/change/confirm/", {"token": token}, format="json")


def link_token(message) -> str:
    found = LINK.search(message.body)
    assert found, message.body
    return found[1]


# --- POST /api/email/change/ and /api/email/change/confirm/, attacks included -----------------
def test_change_is_held_until_the_new_address_confirms(auth_client, verified_user, password, deliver_mail) -> None:
    User.objects.filter(pk=verified_user.pk).update(username="Zorblax visit evil.example")
    response = change(auth_client, NEW, password)

    assert response.status_code == 202
    verified_user.refresh_from_db()
    assert verified_user.email == "ada@example.com"  # nothing switches before the confirmation
    [message] = deliver_mail()
    assert message.to == [NEW]
    assert "Zorblax" not in message.body  # no user-chosen text to an unverified address

    assert confirm(link_token(message)).status_code == 200
    verified_user.refresh_from_db()
    assert verified_user.email == NEW and verified_user.is_verified
    assert not EmailChangeRequest.objects.exists()


def test_the_old_address_gets_a_notice_and_its_capture_is_deleted_once_sent(
    auth_client, verified_user, password, deliver_mail
) -> None:
    change(auth_client, NEW, password)
    confirm(link_token(deliver_mail()[0]))
    assert MailNotice.objects.filter(kind="email_changed").count() == 1

    notice = deliver_mail()[-1]

    assert notice.to == ["ada@example.com"]
    assert "changed" in notice.subject
    assert not MailNotice.objects.exists()


def test_login_moves_to_the_new_address(auth_client, verified_user, password, deliver_mail, api_client) -> None:
    change(auth_client, NEW, password)
    confirm(link_token(deliver_mail()[0]))
    login = "/api/login/"
    assert api_client.post(login, {"email": "ada@example.com", "password": password}, format="json").status_code == 401
    assert api_client.post(login, {"email": NEW, "password": password}, format="json").status_code == 200


def test_the_outbox_holds_no_address_and_no_secret(auth_client, password, outbox) -> None:
    change(auth_client, NEW, password)
    [event] = outbox("email.requested")
    assert event.data == {"kind": "email_change_verify"}
    assert NEW not in json.dumps(event.envelope)


def test_the_link_does_not_show_the_address(auth_client, password, deliver_mail) -> None:
    change(auth_client, NEW, password)
    token = link_token(deliver_mail()[0])
    assert "new-address" not in signing.b64_decode(token.split(":")[0].encode()).decode("latin-1")


def test_the_new_address_is_canonicalised_as_at_signup(auth_client, verified_user, password, deliver_mail) -> None:
    change(auth_client, "  New-Address@EXAMPLE.com ", password)
    confirm(link_token(deliver_mail()[0]))
    verified_user.refresh_from_db()
    assert verified_user.email == "new-address@example.com"


def test_wrong_password_changes_nothing_and_sends_nothing(auth_client, outbox) -> None:
    response = change(auth_client, NEW, "not-the-password")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"]["password"][0]["code"] == "invalid_password"
    assert outbox("email.requested") == []
    assert not EmailChangeRequest.objects.exists()


BAD_BODIES = [{}, {"new_email": "not-an-address", "password": "x"}, {"new_email": 5, "password": 1}]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bad_bodies_are_400_with_the_error_shape(auth_client, body) -> None:
    response = auth_client.post("/api/email/change/", body, format="json")
    assert response.status_code == 400
    assert {"detail", "code", "errors"} <= response.json().keys()


def test_an_existing_address_gets_the_same_answer_and_no_takeover(
    auth_client, verified_user, other_user, password, deliver_mail
) -> None:
    fresh = change(auth_client, NEW, password)
    [link] = deliver_mail()
    taken = change(auth_client, "GRACE@example.com", password)

    assert (taken.status_code, taken.json()) == (fresh.status_code, fresh.json())
    sent = deliver_mail()
    # The taken address got only a notice to its owner, with no link.
    assert [m.to for m in sent] == [[NEW], ["grace@example.com"]]
    assert not LINK.search(sent[1].body)
    # The second request cancelled the first, and nothing can move the account onto grace's address.
    assert confirm(link_token(link)).status_code == 400
    verified_user.refresh_from_db()
    other_user.refresh_from_db()
    assert verified_user.email == "ada@example.com"
    assert other_user.email == "grace@example.com"
    assert not EmailChangeRequest.objects.exists()


def test_an_existing_address_costs_the_same_work(auth_client, other_user, password, outbox) -> None:
    """The request does the same work whatever the address: one password check and the same
    statements, down to the outbox row; whose the address is, is only decided at send time."""
    from django.contrib.auth.hashers import check_password
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def statements(new_email: str) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            assert change(auth_client, new_email, password).status_code == 202
        # Shapes, not values: strip literals, parameters and savepoint names.
        return [re.sub(r"'[^']*'|\"s\d+_x\d+\"|\b\d+\b", "?", q["sql"]) for q in queries.captured_queries]

    statements("warm-up@example.com")  # first-request costs (throttle rows, caches) out of the way
    with mock.patch("django.contrib.auth.base_user.check_password", wraps=check_password) as checks:
        fresh, taken = statements("free@example.com"), statements("grace@example.com")
    assert checks.call_count == 2
    assert fresh == taken
    assert [e.data for e in outbox("email.requested")][-2:] == [{"kind": "email_change_verify"}] * 2


def test_the_own_address_sends_nothing(auth_client, verified_user, password, deliver_mail) -> None:
    assert change(auth_client, "ada@example.com", password).status_code == 202
    assert deliver_mail() == []
    assert not EmailChangeRequest.objects.exists()


def test_an_address_taken_after_the_request_is_not_switched(
    auth_client, verified_user, password, deliver_mail
) -> None:
    change(auth_client, NEW, password)
    token = link_token(deliver_mail()[0])
    User.objects.create_user(NEW, "third-passphrase-99", username="late")

    assert confirm(token).status_code == 400
    verified_user.refresh_from_db()
    assert verified_user.email == "ada@example.com"


def test_the_token_is_single_use(auth_client, password, deliver_mail) -> None:
    change(auth_client, NEW, password)
    token = link_token(deliver_mail()[0])
    assert confirm(token).status_code == 200
    again = confirm(token)
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"


def test_a_tampered_token_is_refused(auth_client, verified_user, password, deliver_mail) -> None:
    change(auth_client, NEW, password)
    token = link_token(deliver_mail()[0])
    request_id = str(EmailChangeRequest.objects.get().pk)
    forged = [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # signature altered
        signing.dumps({"r": request_id}, salt="identity.email-change", key="not-our-secret-key-at-all-000000"),
        signing.dumps({"r": request_id}, salt="identity.email-verification"),  # another flow's token
        tokens.email_verification_token_make(uid=verified_user.uid, email=NEW),
        request_id,
        "",
    ]
    for bad in forged:
        response = confirm(bad)
        assert response.status_code == 400, bad
        assert response.json()["code"] in ("invalid_token", "validation_error")  # "" is a blank field
    verified_user.refresh_from_db()
    assert verified_user.email == "ada@example.com"
    assert confirm(token).status_code == 200  # the real one still works


def test_an_expired_token_is_refused(auth_client, verified_user, password, deliver_mail, settings) -> None:
    change(auth_client, NEW, password)
    token = link_token(deliver_mail()[0])
    settings.EMAIL_CHANGE_TTL = timedelta(seconds=-1)
    assert confirm(token).status_code == 400
    verified_user.refresh_from_db()
    assert verified_user.email == "ada@example.com"


def test_a_newer_request_kills_the_older_link(auth_client, verified_user, password, deliver_mail) -> None:
    change(auth_client, NEW, password)
    [first] = deliver_mail()
    change(auth_client, "newer@example.com", password)
    second = deliver_mail()[-1]
    assert second.to == ["newer@example.com"]
    assert confirm(link_token(first)).status_code == 400
    assert confirm(link_token(second)).status_code == 200
    verified_user.refresh_from_db()
    assert verified_user.email == "newer@example.com"


def test_a_link_dies_when_the_address_changed_since(auth_client, verified_user, password, deliver_mail) -> None:
    change(auth_client, NEW, password)
    token = link_token(deliver_mail()[0])
    User.objects.filter(pk=verified_user.pk).update(email="moved@example.com")
    assert confirm(token).status_code == 400


def test_a_deleted_account_link_is_refused(auth_client, verified_user, password, deliver_mail) -> None:
    change(auth_client, NEW, password)
    token = link_token(deliver_mail()[0])
    auth_client.delete("/api/account/", {"password": password}, format="json")
    assert confirm(token).status_code == 400
    assert not User.objects.filter(email=NEW).exists()


def test_requests_are_throttled_per_user(auth_client, password, settings) -> None:
    """It re-confirms the password: the user's `reconfirm` count, as password change and deletion."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "reconfirm": "2/10min"}
    assert change(auth_client, "a1@example.com", password).status_code == 202
    assert change(auth_client, "a2@example.com", password).status_code == 202
    response = change(auth_client, "a3@example.com", password)
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"


def test_one_target_address_is_throttled_across_accounts(auth_client, other_user, password, settings) -> None:
    """Many accounts cannot mail-bomb one address: the new address shares the per-address count."""
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "email_action_email": "1/10min"}
    assert change(auth_client, "victim@example.com", password).status_code == 202
    client = APIClient()
    client.force_authenticate(other_user)
    response = change(client, "Victim@Example.com", "another-passphrase-77")
    assert response.status_code == 429


def test_a_request_replaced_before_its_mail_went_out_mails_only_the_newer_link(
    auth_client, password, deliver_mail
) -> None:
    change(auth_client, NEW, password)
    change(auth_client, "newer@example.com", password)
    [message] = deliver_mail()  # two events, one mail: the cancelled request's link is never sent
    assert message.to == ["newer@example.com"]
    assert confirm(link_token(message)).status_code == 200


def test_a_redelivered_event_does_not_mail_the_link_again(auth_client, password, deliver_mail) -> None:
    from agent_bridge.models import OutboxEvent

    change(auth_client, NEW, password)
    deliver_mail()
    OutboxEvent.objects.update(status=OutboxEvent.Status.PENDING)  # at-least-once: it comes again
    assert len(deliver_mail()) == 1


def test_a_race_for_the_same_address_switches_neither_twice(auth_client, verified_user, password, deliver_mail) -> None:
    """Another account takes the address between the check and the write: the unique index wins."""
    change(auth_client, NEW, password)
    token = link_token(deliver_mail()[0])
    User.objects.create_user(NEW, "third-passphrase-99", username="late")
    with mock.patch("identity.services.selectors.user_get_by_email", return_value=None):
        response = confirm(token)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_token"
    verified_user.refresh_from_db()
    assert verified_user.email == "ada@example.com"
    assert User.objects.filter(email=NEW).count() == 1


# --- GET /api/sessions/, DELETE /api/sessions/{id}/ -------------------------------------------
def login(email: str, password: str, *, user_agent: str, address: str) -> tuple[APIClient, str]:
    """Log in over the API from a given device and address; a client that sends the token."""
    client = APIClient(HTTP_USER_AGENT=user_agent, REMOTE_ADDR=address)
    response = client.post("/api/login/", {"email": email, "password": password}, format="json")
    assert response.status_code == 200, response.content
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client, token


@pytest.fixture
def two_sessions(verified_user, password):
    laptop = login(verified_user.email, password, user_agent=FIREFOX_UBUNTU, address="203.0.113.77")
    phone = login(verified_user.email, password, user_agent=SAFARI_IPHONE, address="2001:db8:1:2::5")
    return laptop, phone


def test_sessions_list_labels_networks_and_the_current_one(two_sessions) -> None:
    (laptop, laptop_token), (_phone, phone_token) = two_sessions

    response = laptop.get("/api/sessions/")

    assert response.status_code == 200
    sessions = response.json()["sessions"]
    assert [(s["device"], s["network"], s["current"]) for s in sessions] == [
        ("Mobile Safari on iOS", "2001:db8:1::/48", False),
        ("Firefox on Ubuntu", "203.0.113.0/24", True),
    ]
    assert set(sessions[0]) == {"id", "device", "network", "created_at", "last_used_at", "expires_at", "current"}
    body = response.content.decode()
    for secret_or_address in (laptop_token, phone_token, "203.0.113.77", "2001:db8:1:2::5"):
        assert secret_or_address not in body
    for token in AuthToken.objects.all():
        assert token.key_hash not in body


def test_ending_another_session_logs_it_out(two_sessions) -> None:
    (laptop, _), (phone, _) = two_sessions
    phone_id = next(s["id"] for s in laptop.get("/api/sessions/").json()["sessions"] if not s["current"])

    assert laptop.delete(f"/api/sessions/{phone_id}/").status_code == 204

    assert phone.get("/api/me/").status_code == 401
    assert laptop.get("/api/me/").status_code == 200
    assert [s["current"] for s in laptop.get("/api/sessions/").json()["sessions"]] == [True]


def test_ending_the_current_session_is_a_logout(two_sessions) -> None:
    (laptop, _), _phone = two_sessions
    current = next(s["id"] for s in laptop.get("/api/sessions/").json()["sessions"] if s["current"])
    assert laptop.delete(f"/api/sessions/{current}/").status_code == 204
    assert laptop.get("/api/sessions/").status_code == 401


def test_another_users_session_is_404_and_reveals_nothing(two_sessions, password) -> None:
    (laptop, _), _phone = two_sessions
    User.objects.create_user("grace@example.com", password, username="grace", is_verified=True)
    grace, _ = login("grace@example.com", password, user_agent=FIREFOX_UBUNTU, address="198.51.100.1")
    graces_id = AuthToken.objects.get(user__email="grace@example.com").pk
    unknown_id = AuthToken.objects.order_by("-pk").first().pk + 1000

    theirs = laptop.delete(f"/api/sessions/{graces_id}/")
    nobody = laptop.delete(f"/api/sessions/{unknown_id}/")

    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json() == nobody.json() == {"detail": "No such session.", "code": "session_not_found"}
    assert grace.get("/api/me/").status_code == 200  # untouched
    assert AuthToken.objects.get(pk=graces_id).revoked_at is None


def test_an_ended_session_is_404(two_sessions) -> None:
    (laptop, _), _phone = two_sessions
    phone_id = next(s["id"] for s in laptop.get("/api/sessions/").json()["sessions"] if not s["current"])
    laptop.delete(f"/api/sessions/{phone_id}/")
    assert laptop.delete(f"/api/sessions/{phone_id}/").status_code == 404


def test_logout_all_still_ends_every_session(two_sessions) -> None:
    (laptop, _), (phone, _) = two_sessions
    assert laptop.post("/api/logout/all/").status_code == 200
    assert phone.get("/api/me/").status_code == 401
    assert laptop.get("/api/me/").status_code == 401


def test_last_use_is_written_at_most_once_per_interval(two_sessions) -> None:
    (laptop, _), _phone = two_sessions
    laptop.get("/api/me/")  # first use: recorded
    first = AuthToken.objects.filter(network="203.0.113.0/24").get().last_used_at
    assert first is not None
    laptop.get("/api/me/")
    assert AuthToken.objects.filter(network="203.0.113.0/24").get().last_used_at == first


@pytest.mark.parametrize("session_id", ["0", "99999999999999999999999999"])
def test_ids_out_of_any_range_are_404(auth_client, session_id) -> None:
    response = auth_client.delete(f"/api/sessions/{session_id}/")
    assert response.status_code == 404
    assert response.json()["code"] == "session_not_found"


def test_a_forwarded_address_is_ignored_without_a_trusted_proxy(verified_user, password) -> None:
    client = APIClient(REMOTE_ADDR="203.0.113.77", HTTP_X_FORWARDED_FOR="198.51.100.1")
    client.post("/api/login/", {"email": verified_user.email, "password": password}, format="json")
    assert AuthToken.objects.get().network == "203.0.113.0/24"


def test_behind_a_trusted_proxy_the_address_it_saw_is_used(verified_user, password, settings) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    client = APIClient(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.1")
    client.post("/api/login/", {"email": verified_user.email, "password": password}, format="json")
    assert AuthToken.objects.get().network == "198.51.100.0/24"


# --- GET and PATCH /api/notifications/ (the mails themselves: test_services.py) ---------------
BAD_SETTINGS = [{}, {"new_device_login": "yes"}, {"new_device_login": 1}, {"new_device_login": None}]


@pytest.mark.parametrize("body", BAD_SETTINGS)
def test_bad_settings_are_400_and_change_nothing(auth_client, verified_user, body) -> None:
    response = auth_client.patch("/api/notifications/", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    assert response.json()["errors"]["new_device_login"][0]["code"] in ("invalid", "required", "null")
    verified_user.refresh_from_db()
    assert verified_user.notify_new_device is True
