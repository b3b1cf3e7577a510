"""Accounts for the fuzz and security suites: a verified user and a live token, obtained the way a
client obtains them (POST /api/login/), so the suites exercise the real credential path."""
import uuid
from dataclasses import dataclass

from rest_framework.test import APIClient

from throttling.stores import store_get

PASSWORD = "correct-horse-battery-staple-42"


@dataclass
class Account:
    email: str
    password: str
    uid: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


def verified_user_create(*, password: str = PASSWORD):
    """A verified, active user (the email-verification flow is tested by identity and the leak test)."""
    from identity.models import User

    email = f"fuzz-{uuid.uuid4().hex[:12]}@example.com"
    return User.objects.create_user(email, password, username="fuzzer", is_verified=True)


def login(*, email: str, password: str = PASSWORD) -> str:
    """A fresh token for the user, from the login endpoint. Throttle counters are reset first:
    suites log in far more often than a person could."""
    store_get().clear()
    response = APIClient(HTTP_HOST="localhost").post(
        "/api/login/", {"email": email, "password": password}, format="json"
    )
    assert response.status_code == 200, response.content
    return response.json()["token"]


def account_create() -> Account:
    user = verified_user_create()
    return Account(email=user.email, password=PASSWORD, uid=user.uid, token=login(email=user.email))
