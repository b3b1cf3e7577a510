"""Every API route that needs a user refuses, with 401, no token, an expired token, a revoked token
and a uid. Routes are found by walking the URL resolver, so a new route cannot be forgotten: it is
either listed as public below or it must pass the matrix."""
import re
import uuid
from datetime import timedelta

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework.test import APIClient

from identity import services

pytestmark = pytest.mark.django_db

# Routes anyone may call (answers must still never reveal accounts; see test_enumeration).
PUBLIC = {
    "api/signup/",
    "api/login/",
    "api/verify/resend/",
    "api/verify/<str:token>/",
    "api/password/reset/",
    "api/password/reset/confirm/",
    "api/email/change/confirm/",
    "api/health/",
    "api/schema/",
    "api/docs/",
}
# Routes authenticated by something other than a user token.
SERVICE = {"api/internal/validate-token/"}

SAMPLE = {"str": "sample", "int": "1", "uuid": str(uuid.uuid4()), "slug": "sample", "path": "sample"}


def _walk(patterns, prefix=""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry.callback


def api_routes() -> dict[str, object]:
    return {route: callback for route, callback in _walk(get_resolver().url_patterns) if route.startswith("api/")}


def methods_of(callback) -> list[str]:
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    assert view_class is not None, f"{callback} is not a class-based view"
    return [m for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)]


def url_for(route: str) -> str:
    return "/" + re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLE[m[1] or "str"], route)


PROTECTED = sorted(set(api_routes()) - PUBLIC - SERVICE)


def test_the_lists_match_the_routes() -> None:
    routes = set(api_routes())
    assert PUBLIC - routes == set(), "a public route was removed: update PUBLIC"
    assert routes >= SERVICE
    assert PROTECTED, "no protected routes found: the resolver walk is broken"
    for expected in ("api/me/", "api/logout/", "api/logout/all/", "api/account/", "api/preferences/"):
        assert expected in PROTECTED


@pytest.fixture
def bad_credentials(verified_user) -> dict[str, dict]:
    expired = services.auth_token_issue(user=verified_user)
    expired.token.expires_at = timezone.now() - timedelta(seconds=1)
    expired.token.save()
    revoked = services.auth_token_issue(user=verified_user)
    services.auth_token_revoke(token=revoked.token)
    uid = str(verified_user.uid)
    return {
        "no token": {},
        "expired token": {"HTTP_AUTHORIZATION": f"Token {expired.raw}"},
        "expired X-Auth-Token": {"HTTP_X_AUTH_TOKEN": expired.raw},
        "revoked token": {"HTTP_AUTHORIZATION": f"Token {revoked.raw}"},
        "revoked X-Auth-Token": {"HTTP_X_AUTH_TOKEN": revoked.raw},
        "uid as token": {"HTTP_AUTHORIZATION": f"Token {uid}"},
        "uid as X-Auth-Token": {"HTTP_X_AUTH_TOKEN": uid},
        "uid as X-User-ID": {"HTTP_X_USER_ID": uid},
    }


@pytest.mark.parametrize("route", PROTECTED)
def test_protected_routes_refuse_bad_credentials_with_401(route, bad_credentials) -> None:
    from agent_bridge.models import OutboxEvent

    client = APIClient()
    url = url_for(route)
    for method in methods_of(api_routes()[route]):
        for label, headers in bad_credentials.items():
            response = getattr(client, method)(url, {}, format="json", **headers)
            assert response.status_code == 401, f"{method.upper()} {url} with {label}: {response.status_code}"
            assert {"detail", "code"} <= response.json().keys()
    assert not OutboxEvent.objects.exists(), "a refused request changed something"


@pytest.mark.parametrize("route", PROTECTED)
def test_protected_routes_accept_a_live_token(route, auth_client) -> None:
    """The other half of the matrix: the refusals above are about the credentials, not the route."""
    for method in methods_of(api_routes()[route]):
        if method == "delete" and route == "api/account/":
            continue  # would delete the account; covered in test_account
        response = getattr(auth_client, method)(url_for(route), {}, format="json")
        assert response.status_code != 401, f"{method.upper()} {route}"


@pytest.mark.parametrize("route", sorted(SERVICE))
def test_service_routes_refuse_user_credentials(route, issued_token, verified_user) -> None:
    client = APIClient()
    user_credentials = ({"HTTP_AUTHORIZATION": f"Token {issued_token.raw}"}, {"HTTP_X_USER_ID": str(verified_user.uid)})
    for headers in ({}, *user_credentials):
        response = client.post(url_for(route), {"token": issued_token.raw}, format="json", **headers)
        assert response.status_code == 401
