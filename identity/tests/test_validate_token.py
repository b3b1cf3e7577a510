from datetime import timedelta

import pytest
from django.utils import timezone

from identity import services

pytestmark = pytest.mark.django_db

URL = "/api/internal/validate-token/"


@pytest.fixture
def service_headers(settings) -> dict:
    return {"HTTP_X_SERVICE_TOKEN": settings.AGENT_SERVICE_TOKEN}


def test_a_live_token_is_valid_and_names_its_user(api_client, issued_token, verified_user, service_headers) -> None:
    response = api_client.post(URL, {"token": issued_token.raw}, format="json", **service_headers)
    assert response.status_code == 200
    assert response.json() == {"valid": True, "uid": str(verified_user.uid)}


def test_revoked_expired_unknown_and_uid_are_invalid(api_client, verified_user, service_headers) -> None:
    revoked = services.auth_token_issue(user=verified_user)
    services.auth_token_revoke(token=revoked.token)
    expired = services.auth_token_issue(user=verified_user)
    expired.token.expires_at = timezone.now() - timedelta(seconds=1)
    expired.token.save()
    for raw in (revoked.raw, expired.raw, "nope", str(verified_user.uid)):
        response = api_client.post(URL, {"token": raw}, format="json", **service_headers)
        assert response.json() == {"valid": False, "uid": None}, raw


@pytest.mark.parametrize("headers", [{}, {"HTTP_X_SERVICE_TOKEN": "wrong"}, {"HTTP_X_SERVICE_TOKEN": ""}])
def test_wrong_or_missing_service_token_is_401(api_client, issued_token, headers) -> None:
    response = api_client.post(URL, {"token": issued_token.raw}, format="json", **headers)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_service_token"


def test_a_user_token_is_not_a_service_token(api_client, issued_token) -> None:
    response = api_client.post(
        URL, {"token": issued_token.raw}, format="json", HTTP_AUTHORIZATION=f"Token {issued_token.raw}"
    )
    assert response.status_code == 401


def test_unset_service_token_refuses_everything(api_client, issued_token, settings) -> None:
    settings.AGENT_SERVICE_TOKEN = ""
    response = api_client.post(URL, {"token": issued_token.raw}, format="json", HTTP_X_SERVICE_TOKEN="")
    assert response.status_code == 401


def test_missing_token_field_is_400(api_client, service_headers) -> None:
    response = api_client.post(URL, {}, format="json", **service_headers)
    assert response.status_code == 400
    assert "token" in response.json()["errors"]
