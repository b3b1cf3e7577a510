"""The authorization matrix over every route the URL resolver knows.

Each route is PUBLIC, SERVICE (the Agent's X-Service-Token) or USER (a login token). A USER
route must refuse, for every method it implements, no token, a garbage token, an expired token,
a revoked token and the user's uid in place of a token, with a 401 JSON error. A route missing
from the three sets fails `test_every_route_is_classified` (and is tested as USER meanwhile).
"""
import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from tests.security.accounts import Account
from tests.security.routes import Route, api_routes

pytestmark = [pytest.mark.security, pytest.mark.django_db]

PUBLIC = {
    "/api/signup/",
    "/api/login/",
    "/api/verify/{}/",
    "/api/verify/resend/",
    "/api/password/reset/",
    "/api/password/reset/confirm/",
    "/api/health/",
    "/api/health/live/",
    "/api/health/ready/",
    "/api/allergens/",
    "/api/schema/",
    "/api/docs/",
}
SERVICE = {"/api/internal/validate-token/"}
# Operators' scraper: a bearer METRICS_TOKEN, nothing else (project/metrics_http.py).
OPERATOR = {"/metrics"}
USER = {
    "/api/logout/",
    "/api/logout/all/",
    "/api/me/",
    "/api/password/change/",
    "/api/account/",
    "/api/allergies/",
    "/api/preferences/",
    "/api/interactions/",
}

ROUTES = api_routes()
# One test per route (methods looped inside): the per-test setup is most of the cost.
USER_ROUTES = [route for route in ROUTES if route.key not in PUBLIC | SERVICE | OPERATOR]
SERVICE_ROUTES = [route for route in ROUTES if route.key in SERVICE]


def fresh_token(account: Account) -> str:
    """Another live token of the account (the login endpoint itself is exercised by the fixture)."""
    from identity.models import User
    from identity.services import auth_token_issue

    return auth_token_issue(user=User.objects.get(uid=account.uid)).raw


def expired_token(account: Account) -> str:
    from identity.models import AuthToken
    from identity.tokens import auth_token_hash

    raw = fresh_token(account)
    AuthToken.objects.filter(key_hash=auth_token_hash(raw)).update(expires_at=timezone.now() - timedelta(seconds=1))
    return raw


def revoked_token(account: Account) -> str:
    raw = fresh_token(account)
    response = Client().post("/api/logout/", HTTP_AUTHORIZATION=f"Token {raw}")
    assert response.status_code == 200, response.content
    return raw


def bad_credentials(account: Account) -> dict[str, dict[str, str]]:
    """Header sets that must not authenticate anyone."""
    garbage = "d2VsbC10aGlzLWlzLW5vdC1hLXRva2VuLWF0LWFsbC0xMjM0NTY3ODk"
    expired, revoked, uid = expired_token(account), revoked_token(account), str(account.uid)
    return {
        "none": {},
        "garbage": {"HTTP_AUTHORIZATION": f"Token {garbage}"},
        "garbage-x-auth": {"HTTP_X_AUTH_TOKEN": garbage},
        "malformed-header": {"HTTP_AUTHORIZATION": "Token"},
        "bearer-scheme": {"HTTP_AUTHORIZATION": f"Bearer {account.token}x"},
        "expired": {"HTTP_AUTHORIZATION": f"Token {expired}"},
        "expired-x-auth": {"HTTP_X_AUTH_TOKEN": expired},
        "revoked": {"HTTP_AUTHORIZATION": f"Token {revoked}"},
        "revoked-x-auth": {"HTTP_X_AUTH_TOKEN": revoked},
        "uid": {"HTTP_AUTHORIZATION": f"Token {uid}"},
        "uid-x-auth": {"HTTP_X_AUTH_TOKEN": uid},
        "uid-x-user-id": {"HTTP_X_USER_ID": uid},
        "service-token-as-user": {"HTTP_AUTHORIZATION": f"Token {settings.AGENT_SERVICE_TOKEN}"},
    }


def request(route: Route, method: str, **headers: str):
    return Client().generic(method, route.path, data=b"{}", content_type="application/json", **headers)


def assert_401_json(response, what: str) -> None:
    assert response.status_code == 401, f"{what}: {response.status_code} {response.content[:300]!r}"
    if response.request["REQUEST_METHOD"] == "HEAD":
        return  # no body by definition
    body = json.loads(response.content)
    assert isinstance(body.get("detail"), str) and isinstance(body.get("code"), str), f"{what}: {body}"


def test_every_route_is_classified() -> None:
    classified = PUBLIC | SERVICE | USER | OPERATOR
    unclassified = sorted(route.key for route in ROUTES if route.key not in classified)
    assert not unclassified, f"classify these routes as PUBLIC, SERVICE, USER or OPERATOR: {unclassified}"
    gone = sorted(classified - {route.key for route in ROUTES})
    assert not gone, f"these classified routes no longer exist: {gone}"


@pytest.mark.parametrize("route", USER_ROUTES, ids=str)
def test_user_route_refuses_bad_credentials(account, route) -> None:
    from agent_bridge.models import OutboxEvent

    failures = []
    credentials = bad_credentials(account)
    events_before = OutboxEvent.objects.count()
    for method in route.methods:
        for name, headers in credentials.items():
            try:
                assert_401_json(request(route, method, **headers), f"{method} {name}")
            except AssertionError as exc:
                failures.append(str(exc))
    assert not failures, "\n".join(failures)
    assert OutboxEvent.objects.count() == events_before, "a refused request changed something"


@pytest.mark.parametrize("route", USER_ROUTES, ids=str)
def test_user_route_accepts_a_live_token(account, route) -> None:
    """The control: the same request with a live token (either header) gets past authentication."""
    for method in route.methods:
        for header in ("HTTP_AUTHORIZATION", "HTTP_X_AUTH_TOKEN"):
            raw = fresh_token(account)
            value = f"Token {raw}" if header == "HTTP_AUTHORIZATION" else raw
            response = request(route, method, **{header: value})
            assert response.status_code != 401, (method, header, response.content[:300])


@pytest.mark.parametrize("route", SERVICE_ROUTES, ids=str)
def test_service_route_refuses_anything_but_the_service_token(account, route) -> None:
    failures = []
    attempts = {
        **bad_credentials(account),
        "user-token": {"HTTP_AUTHORIZATION": f"Token {account.token}"},
        "wrong-service-token": {"HTTP_X_SERVICE_TOKEN": settings.AGENT_SERVICE_TOKEN[:-1] + "x"},
        "service-token-prefix": {"HTTP_X_SERVICE_TOKEN": settings.AGENT_SERVICE_TOKEN[:-1]},
        "service-token-in-authorization": {"HTTP_AUTHORIZATION": f"Token {settings.AGENT_SERVICE_TOKEN}"},
    }
    for method in route.methods:
        for name, headers in attempts.items():
            try:
                assert_401_json(request(route, method, **headers), f"{method} {name}")
            except AssertionError as exc:
                failures.append(str(exc))
        response = request(route, method, HTTP_X_SERVICE_TOKEN=settings.AGENT_SERVICE_TOKEN)
        assert response.status_code != 401, (method, response.content[:300])
    assert not failures, "\n".join(failures)


METRICS_TOKEN = "metrics-token-" + "m" * 32


@pytest.mark.parametrize("path", sorted(OPERATOR))
def test_operator_route_needs_the_metrics_token(account, path, settings) -> None:
    settings.METRICS_TOKEN = ""
    assert Client().get(path).status_code == 404  # off until a token is configured
    settings.METRICS_TOKEN = "short-token"
    assert Client().get(path, HTTP_AUTHORIZATION="Bearer short-token").status_code == 404  # too weak: still off

    settings.METRICS_TOKEN = METRICS_TOKEN
    attempts = {
        **bad_credentials(account),
        "user-token-as-bearer": {"HTTP_AUTHORIZATION": f"Bearer {account.token}"},
        "service-token": {"HTTP_X_SERVICE_TOKEN": settings.AGENT_SERVICE_TOKEN},
        "service-token-as-bearer": {"HTTP_AUTHORIZATION": f"Bearer {settings.AGENT_SERVICE_TOKEN}"},
        "token-prefix": {"HTTP_AUTHORIZATION": f"Bearer {METRICS_TOKEN[:-1]}"},
        "token-as-user-token": {"HTTP_AUTHORIZATION": f"Token {METRICS_TOKEN}"},
        "token-in-query": {},
    }
    for name, headers in attempts.items():
        suffix = f"?token={METRICS_TOKEN}" if name == "token-in-query" else ""
        assert_401_json(Client().get(path + suffix, **headers), name)
    response = Client().get(path, HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")
    assert response.status_code == 200 and b"kairos_http_requests_total" in response.content


@pytest.mark.parametrize("path", ["/admin/", "/admin/identity/user/", "/admin/agent_bridge/outboxevent/"])
def test_admin_needs_a_staff_login(account, path) -> None:
    from identity.models import User

    login_url = "/admin/login/"
    for headers in ({}, {"HTTP_AUTHORIZATION": f"Token {account.token}"}, {"HTTP_X_AUTH_TOKEN": account.token}):
        response = Client().get(path, **headers)
        assert response.status_code == 302 and response["Location"].startswith(login_url), (headers, response)

    # Logged in (session), but not staff: still sent to the login page.
    client = Client()
    assert client.login(email=account.email, password=account.password)
    response = client.get(path)
    assert response.status_code == 302 and response["Location"].startswith(login_url)

    User.objects.filter(email=account.email).update(is_staff=True, is_superuser=True)
    assert Client().get(path).status_code == 302  # a new client has no session
    client = Client()
    assert client.login(email=account.email, password=account.password)
    assert client.get(path).status_code == 200
