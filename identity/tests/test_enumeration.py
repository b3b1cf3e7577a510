"""No public flow tells whether an email is registered: same status and same body either way."""
import pytest

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clear_cache")]

KNOWN = "ada@example.com"  # the verified_user fixture
UNKNOWN = "nobody@example.com"


def answers(client, path: str, body_for) -> tuple:
    known = client.post(path, body_for(KNOWN), format="json")
    unknown = client.post(path, body_for(UNKNOWN), format="json")
    return (known.status_code, known.json()), (unknown.status_code, unknown.json())


@pytest.mark.parametrize(
    ("path", "body_for", "status"),
    [
        ("/api/signup/", lambda email: {"username": "ada", "email": email, "password": "a-long-passphrase-42"}, 201),
        ("/api/verify/resend/", lambda email: {"email": email}, 202),
        ("/api/password/reset/", lambda email: {"email": email}, 202),
        ("/api/login/", lambda email: {"email": email, "password": "not-the-password-1"}, 401),
    ],
)
def test_answers_are_identical_for_registered_and_unregistered_emails(
    api_client, verified_user, path, body_for, status
) -> None:
    known, unknown = answers(api_client, path, body_for)
    assert known == unknown
    assert known[0] == status


def test_resend_for_an_unverified_account_answers_like_the_others(api_client, user, verified_user) -> None:
    bodies = {
        api_client.post("/api/verify/resend/", {"email": email}, format="json").content
        for email in (user.email, verified_user.email, UNKNOWN)
    }
    assert len(bodies) == 1


def test_signup_with_a_taken_email_emails_the_owner_instead(api_client, verified_user, outbox) -> None:
    body = {"username": "mallory", "email": "ADA@example.com", "password": "a-long-passphrase-42"}
    api_client.post("/api/signup/", body, format="json")
    [event] = outbox("email.requested")
    assert event.uid == verified_user.uid and event.data == {"kind": "account_exists"}
    assert outbox("user.registered") == []


def test_weak_password_is_refused_alike_for_taken_and_free_emails(api_client, verified_user) -> None:
    known, unknown = answers(
        api_client, "/api/signup/", lambda email: {"username": "ada", "email": email, "password": "123"}
    )
    assert known == unknown
    assert known[0] == 400
