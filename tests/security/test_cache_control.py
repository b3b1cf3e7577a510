"""Issue 11, finding 18: nothing that carries a token or personal data may be stored by a cache.

The attack: login (a token), me, allergies (health data), preferences answered without any
Cache-Control, so a browser cache, a shared proxy or a CDN could keep them. Now every answer
says `no-store` unless its view declares itself public and cacheable; this sweeps every route
the URL resolver knows, every method, with and without a token, errors included.
"""
import pytest
from django.test import Client

from tests.security.accounts import Account
from tests.security.routes import api_routes

pytestmark = [pytest.mark.security, pytest.mark.django_db]

# Routes whose GET answer is public and the same for everyone: their view may declare it
# cacheable (its own Cache-Control). Any other route's answers must be no-store.
PUBLIC_CACHEABLE = {"/api/allergens/"}


def assert_not_stored(response, what: str) -> None:
    value = response.get("Cache-Control", "")
    directives = {part.strip().split("=")[0] for part in value.lower().split(",")}
    assert "no-store" in directives, f"{what}: Cache-Control {value!r}"


@pytest.mark.parametrize("route", api_routes(), ids=str)
def test_every_answer_is_no_store_unless_declared_public(account: Account, settings, route) -> None:
    settings.THROTTLING_ENABLED = False
    for method in route.methods:
        for headers in ({}, {"HTTP_AUTHORIZATION": f"Token {account.token}"}):
            client = Client(raise_request_exception=False)  # a crash answer must be no-store too
            response = client.generic(method, route.path, data=b"{}", content_type="application/json", **headers)
            what = f"{method} {route.key} ({'token' if headers else 'anonymous'}) {response.status_code}"
            if route.key in PUBLIC_CACHEABLE and method in ("GET", "HEAD") and response.status_code == 200:
                continue
            assert_not_stored(response, what)


def test_the_login_answer_with_its_token_is_no_store(account: Account) -> None:
    from django.core.cache import cache

    cache.clear()
    response = Client().post("/api/login/", {"email": account.email, "password": account.password},
                             content_type="application/json")
    assert response.status_code == 200 and response.json()["token"]
    assert_not_stored(response, "login")


def test_an_unknown_path_is_no_store_too() -> None:
    assert_not_stored(Client().get("/api/no-such-thing/"), "404")
