from datetime import datetime, timedelta

import pytest
from rest_framework.test import APIClient

from identity import services, tokens
from identity.models import AuthToken

pytestmark = pytest.mark.django_db

NEW = "another-long-passphrase-77"


def client_for(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=raw)
    return client


# --- change -------------------------------------------------------------------------
def test_change_keeps_this_session_and_revokes_the_others(verified_user, password) -> None:
    mine = services.auth_token_issue(user=verified_user)
    other = services.auth_token_issue(user=verified_user)

    response = client_for(mine.raw).post(
        "/api/password/change/", {"current_password": password, "new_password": NEW}, format="json"
    )

    assert response.status_code == 200, response.json()
    verified_user.refresh_from_db()
    assert verified_user.check_password(NEW)
    assert client_for(mine.raw).get("/api/me/").status_code == 200
    assert client_for(other.raw).get("/api/me/").status_code == 401


def test_change_with_wrong_current_password_changes_nothing(auth_client, verified_user, password) -> None:
    other = services.auth_token_issue(user=verified_user)
    response = auth_client.post(
        "/api/password/change/", {"current_password": "wrong-wrong", "new_password": NEW}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"]["current_password"][0]["code"] == "invalid_password"
    assert "current_password" in response.json()["errors"]
    verified_user.refresh_from_db()
    assert verified_user.check_password(password)
    assert client_for(other.raw).get("/api/me/").status_code == 200


def test_change_to_a_weak_password_is_400(auth_client, verified_user, password) -> None:
    response = auth_client.post(
        "/api/password/change/", {"current_password": password, "new_password": "123"}, format="json"
    )
    assert response.status_code == 400
    assert "new_password" in response.json()["errors"]
    verified_user.refresh_from_db()
    assert verified_user.check_password(password)


# --- reset --------------------------------------------------------------------------
def test_reset_request_queues_an_email_for_a_known_address(api_client, verified_user, outbox) -> None:
    response = api_client.post("/api/password/reset/", {"email": "ADA@example.com"}, format="json")
    assert response.status_code == 202
    [event] = outbox("email.requested")
    assert event.uid == verified_user.uid and event.data == {"kind": "password_reset"}


def test_reset_request_for_unknown_address_queues_nothing(api_client, db, outbox) -> None:
    response = api_client.post("/api/password/reset/", {"email": "nobody@example.com"}, format="json")
    assert response.status_code == 202
    assert outbox("email.requested") == []


def confirm(client, token, new_password=NEW):
    return client.post("/api/password/reset/confirm/", {"token": token, "new_password": new_password}, format="json")


def test_confirm_sets_the_password_and_revokes_every_token(api_client, verified_user) -> None:
    issued = [services.auth_token_issue(user=verified_user) for _ in range(2)]
    token = tokens.password_reset_token_make(user=verified_user)

    response = confirm(api_client, token)

    assert response.status_code == 200, response.json()
    verified_user.refresh_from_db()
    assert verified_user.check_password(NEW)
    for item in issued:
        assert client_for(item.raw).get("/api/me/").status_code == 401
    assert not AuthToken.objects.filter(revoked_at__isnull=True).exists()


def test_confirm_token_is_single_use(api_client, verified_user) -> None:
    token = tokens.password_reset_token_make(user=verified_user)
    assert confirm(api_client, token).status_code == 200

    again = confirm(api_client, token, new_password="third-long-passphrase-99")

    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"
    verified_user.refresh_from_db()
    assert verified_user.check_password(NEW)


def test_expired_reset_token_is_refused(api_client, verified_user, password, settings, monkeypatch) -> None:
    token = tokens.password_reset_token_make(user=verified_user)
    later = datetime.now() + settings.PASSWORD_RESET_TTL + timedelta(seconds=5)
    monkeypatch.setattr(tokens.password_reset_token_generator, "_now", lambda: later)

    assert confirm(api_client, token).status_code == 400
    verified_user.refresh_from_db()
    assert verified_user.check_password(password)


def test_reset_timeout_follows_the_setting(settings) -> None:
    assert int(settings.PASSWORD_RESET_TTL.total_seconds()) == settings.PASSWORD_RESET_TIMEOUT


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # hash changed
        lambda t: "0" * 32 + t[32:],  # another uid
        lambda t: t.split(".")[1],  # no uid
        lambda t: "garbage",
        lambda t: "z" * 32 + "." + t.split(".")[1],  # uid not hex
    ],
)
def test_tampered_reset_token_is_refused(api_client, verified_user, password, mangle) -> None:
    token = tokens.password_reset_token_make(user=verified_user)
    assert confirm(api_client, mangle(token)).status_code == 400
    verified_user.refresh_from_db()
    assert verified_user.check_password(password)


def test_a_token_of_another_user_does_not_reset_mine(api_client, verified_user, user, password) -> None:
    theirs = tokens.password_reset_token_make(user=user)
    forged = verified_user.uid.hex + "." + theirs.split(".")[1]
    assert confirm(api_client, forged).status_code == 400


def test_confirm_with_a_weak_password_keeps_the_token_usable(api_client, verified_user) -> None:
    token = tokens.password_reset_token_make(user=verified_user)
    weak = confirm(api_client, token, new_password="123")
    assert weak.status_code == 400 and "new_password" in weak.json()["errors"]
    assert confirm(api_client, token).status_code == 200


def test_reset_verifies_the_address(api_client, user) -> None:
    assert confirm(api_client, tokens.password_reset_token_make(user=user)).status_code == 200
    user.refresh_from_db()
    assert user.is_verified
