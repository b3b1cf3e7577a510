"""GET /api/sessions/ and DELETE /api/sessions/{id}/ over the HTTP API."""
import pytest
from rest_framework.test import APIClient

from identity.models import AuthToken, User
from identity.tests.test_devices import FIREFOX_UBUNTU, SAFARI_IPHONE

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear(clear_cache):
    pass


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
