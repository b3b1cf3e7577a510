from datetime import timedelta

import pytest
from django.utils import timezone

from identity.models import AuthToken
from identity.tokens import auth_token_hash

pytestmark = pytest.mark.django_db

LOGIN = "/api/login/"


def test_login_returns_a_new_token_stored_only_as_a_hash(api_client, verified_user, password) -> None:
    response = api_client.post(LOGIN, {"email": "ADA@example.com", "password": password}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"message", "uid", "auth_id", "username", "user", "token", "expires_at"}
    assert body["uid"] == body["auth_id"] == body["user"]["uid"]
    assert body["auth_id"] == str(verified_user.uid)
    assert body["username"] == verified_user.username
    assert len(body["token"]) >= 43  # 32 random bytes, url-safe base64
    row = AuthToken.objects.get(user=verified_user)
    assert row.key_hash == auth_token_hash(body["token"])
    assert body["token"] not in (row.key_hash,)
    assert row.expires_at - timezone.now() > timedelta(days=13)


def test_each_login_issues_a_distinct_token(api_client, verified_user, password) -> None:
    tokens = {
        api_client.post(LOGIN, {"email": verified_user.email, "password": password}, format="json").json()["token"]
        for _ in range(3)
    }
    assert len(tokens) == 3


def test_wrong_password_and_unknown_email_get_the_same_401(api_client, verified_user, password) -> None:
    wrong = api_client.post(LOGIN, {"email": verified_user.email, "password": "nope-nope-nope"}, format="json")
    unknown = api_client.post(LOGIN, {"email": "nobody@example.com", "password": password}, format="json")

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Invalid email or password.", "code": "invalid_credentials"}
    assert not AuthToken.objects.exists()


def test_unknown_email_still_runs_the_password_hasher(api_client, monkeypatch) -> None:
    from django.contrib.auth import hashers

    calls = []
    real = hashers.make_password

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr("django.contrib.auth.base_user.make_password", spy)
    api_client.post(LOGIN, {"email": "nobody@example.com", "password": "whatever-123"}, format="json")
    assert calls, "the hasher must run for unknown emails too, or timing tells registered addresses apart"


def test_unverified_user_gets_403_and_no_token(api_client, user, password) -> None:
    response = api_client.post(LOGIN, {"email": user.email, "password": password}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "email_not_verified"
    assert not AuthToken.objects.exists()


def test_wrong_password_of_unverified_user_is_401_not_403(api_client, user) -> None:
    response = api_client.post(LOGIN, {"email": user.email, "password": "wrong-wrong-wrong"}, format="json")
    assert response.status_code == 401


def test_inactive_user_cannot_log_in(api_client, verified_user, password) -> None:
    verified_user.is_active = False
    verified_user.save()
    response = api_client.post(LOGIN, {"email": verified_user.email, "password": password}, format="json")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "ada@example.com"},
        {"password": "x"},
        {"email": 5, "password": []},
        {"email": "not-an-email", "password": "x"},
    ],
)
def test_bad_login_bodies_are_400(api_client, body) -> None:
    response = api_client.post(LOGIN, body, format="json")
    assert response.status_code == 400
    assert {"detail", "code", "errors"} <= response.json().keys()


def test_logout_revokes_only_this_token(api_client, verified_user, password) -> None:
    first = api_client.post(LOGIN, {"email": verified_user.email, "password": password}, format="json").json()["token"]
    second = api_client.post(LOGIN, {"email": verified_user.email, "password": password}, format="json").json()["token"]

    response = api_client.post("/api/logout/", HTTP_AUTHORIZATION=f"Token {first}")
    assert response.status_code == 200

    assert api_client.post("/api/logout/", HTTP_AUTHORIZATION=f"Token {first}").status_code == 401
    assert api_client.post("/api/logout/", HTTP_X_AUTH_TOKEN=second).status_code == 200
    assert AuthToken.objects.filter(revoked_at__isnull=True).count() == 0
