from datetime import timedelta

import pytest
from django.utils import timezone

from identity import services

pytestmark = pytest.mark.django_db

LOGOUT = "/api/logout/"


def test_authorization_header_and_x_auth_token_both_work(api_client, verified_user) -> None:
    a = services.auth_token_issue(user=verified_user).raw
    b = services.auth_token_issue(user=verified_user).raw
    assert api_client.post(LOGOUT, HTTP_AUTHORIZATION=f"Token {a}").status_code == 200
    assert api_client.post(LOGOUT, HTTP_X_AUTH_TOKEN=b).status_code == 200


def test_no_credentials_is_401_json(api_client) -> None:
    response = api_client.post(LOGOUT)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_AUTHORIZATION": "Token"},
        {"HTTP_AUTHORIZATION": "Token a b"},
        {"HTTP_AUTHORIZATION": "Token " + "x" * 500},
        {"HTTP_AUTHORIZATION": "Token not-a-real-token"},
        {"HTTP_X_AUTH_TOKEN": "not-a-real-token"},
    ],
)
def test_bad_tokens_are_401_json(api_client, verified_user, headers) -> None:
    response = api_client.post(LOGOUT, **headers)
    assert response.status_code == 401
    assert {"detail", "code"} <= response.json().keys()


def test_uid_is_never_a_credential(api_client, verified_user) -> None:
    services.auth_token_issue(user=verified_user)
    uid = str(verified_user.uid)
    for headers in ({"HTTP_AUTHORIZATION": f"Token {uid}"}, {"HTTP_X_AUTH_TOKEN": uid}):
        assert api_client.post(LOGOUT, **headers).status_code == 401


def test_expired_token_is_401(api_client, verified_user) -> None:
    issued = services.auth_token_issue(user=verified_user)
    issued.token.expires_at = timezone.now() - timedelta(seconds=1)
    issued.token.save()
    assert api_client.post(LOGOUT, HTTP_X_AUTH_TOKEN=issued.raw).status_code == 401


def test_revoked_token_is_401(api_client, verified_user) -> None:
    issued = services.auth_token_issue(user=verified_user)
    services.auth_token_revoke(token=issued.token)
    assert api_client.post(LOGOUT, HTTP_X_AUTH_TOKEN=issued.raw).status_code == 401


def test_token_of_inactive_user_is_401(api_client, verified_user) -> None:
    issued = services.auth_token_issue(user=verified_user)
    verified_user.is_active = False
    verified_user.save()
    assert api_client.post(LOGOUT, HTTP_X_AUTH_TOKEN=issued.raw).status_code == 401


def test_use_is_recorded(auth_client, issued_token) -> None:
    assert issued_token.token.last_used_at is None
    auth_client.post(LOGOUT)
    issued_token.token.refresh_from_db()
    assert issued_token.token.last_used_at is not None
