"""Fixtures for identity's tests (and candidates for the root conftest: user, verified_user, auth_client)."""
import pytest
from rest_framework.test import APIClient

from identity import services
from identity.models import User

PASSWORD = "a-long-passphrase-42"


def _make_user(*, email: str, verified: bool) -> User:
    user = User.objects.create_user(email=email, password=PASSWORD, username=email.split("@")[0])
    if verified:
        user.is_verified = True
        user.save(update_fields=["is_verified"])
    return user


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def user(db) -> User:
    """An unverified user whose password is the `password` fixture."""
    return _make_user(email="unverified@example.com", verified=False)


@pytest.fixture
def verified_user(db) -> User:
    """A verified user whose password is the `password` fixture."""
    return _make_user(email="ada@example.com", verified=True)


@pytest.fixture
def issued_token(verified_user) -> services.IssuedToken:
    """A real login token of `verified_user` (`.raw` is the secret, `.token` the row)."""
    return services.auth_token_issue(user=verified_user)


@pytest.fixture
def auth_client(issued_token) -> APIClient:
    """An APIClient that sends `verified_user`'s real token on every request."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {issued_token.raw}")
    return client


@pytest.fixture
def outbox():
    """outbox(type) → the OutboxEvents of that type, oldest first."""
    from agent_bridge.models import OutboxEvent

    def events(event_type: str) -> list[OutboxEvent]:
        return list(OutboxEvent.objects.filter(type=event_type).order_by("id"))

    return events


@pytest.fixture
def clear_cache():
    """Empty the throttle counts before and after a test."""
    from django.core.cache import cache

    cache.clear()
    yield cache
    cache.clear()
