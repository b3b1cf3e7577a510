import time
from unittest import mock

import pytest

from identity import tokens
from identity.models import User

pytestmark = pytest.mark.django_db


def verify(client, token):
    return client.get(f"/api/verify/{token}/")


def test_signup_queues_a_verification_email_without_any_secret(api_client, outbox) -> None:
    body = {"username": "ada", "email": "Ada@Example.com", "password": "a-long-passphrase-42"}
    response = api_client.post("/api/signup/", body, format="json")

    assert response.status_code == 201
    user = User.objects.get()
    assert user.email == "ada@example.com" and not user.is_verified
    [event] = outbox("email.requested")
    assert event.uid == user.uid and event.data == {"kind": "verify"}
    assert len(outbox("user.registered")) == 1


def test_valid_token_verifies_and_is_idempotent(api_client, user) -> None:
    token = tokens.email_verification_token_make(uid=user.uid, email=user.email)

    first = verify(api_client, token)
    second = verify(api_client, token)

    assert first.status_code == second.status_code == 200
    assert first.json() == {"message": "Email verified"}
    user.refresh_from_db()
    assert user.is_verified


def test_tampered_token_is_refused(api_client, user) -> None:
    token = tokens.email_verification_token_make(uid=user.uid, email=user.email)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")

    response = verify(api_client, tampered)

    assert response.status_code == 400
    assert response.json() == {"detail": "This link is invalid or has expired.", "code": "invalid_token"}
    user.refresh_from_db()
    assert not user.is_verified


def test_token_with_a_forged_payload_is_refused(api_client, user, verified_user) -> None:
    """Swapping the signed payload for another user's keeps the signature of the first: refused."""
    mine = tokens.email_verification_token_make(uid=verified_user.uid, email=verified_user.email)
    theirs = tokens.email_verification_token_make(uid=user.uid, email=user.email)
    forged = theirs.split(":")[0] + ":" + ":".join(mine.split(":")[1:])
    assert verify(api_client, forged).status_code == 400
    user.refresh_from_db()
    assert not user.is_verified


def test_expired_token_is_refused(api_client, user, settings) -> None:
    token = tokens.email_verification_token_make(uid=user.uid, email=user.email)
    later = time.time() + settings.EMAIL_VERIFICATION_TTL.total_seconds() + 5
    with mock.patch("django.core.signing.time.time", return_value=later):
        response = verify(api_client, token)
    assert response.status_code == 400
    user.refresh_from_db()
    assert not user.is_verified


def test_token_just_before_expiry_still_works(api_client, user, settings) -> None:
    token = tokens.email_verification_token_make(uid=user.uid, email=user.email)
    later = time.time() + settings.EMAIL_VERIFICATION_TTL.total_seconds() - 60
    with mock.patch("django.core.signing.time.time", return_value=later):
        assert verify(api_client, token).status_code == 200


@pytest.mark.parametrize("bad", ["garbage", "a:b:c", "x" * 300, "%00%ff"])
def test_garbage_tokens_are_400(api_client, user, bad) -> None:
    assert verify(api_client, bad).status_code == 400


def test_the_uid_is_not_a_verification_token(api_client, user) -> None:
    assert verify(api_client, str(user.uid)).status_code == 400


def test_a_token_for_a_previous_address_is_refused(api_client, user) -> None:
    token = tokens.email_verification_token_make(uid=user.uid, email=user.email)
    user.email = "new@example.com"
    user.save()
    assert verify(api_client, token).status_code == 400


def test_a_token_signed_for_another_purpose_is_refused(api_client, user) -> None:
    from django.core import signing

    other = signing.dumps({"uid": str(user.uid), "email": user.email}, salt="something-else")
    assert verify(api_client, other).status_code == 400


def test_resend_queues_an_email_only_for_unverified_accounts(api_client, user, verified_user, outbox) -> None:
    for email in (user.email, verified_user.email, "nobody@example.com"):
        response = api_client.post("/api/verify/resend/", {"email": email}, format="json")
        assert response.status_code == 202
    # One event per request (equal cost); only the unverified account's names a user.
    events = outbox("email.requested")
    assert [event.data for event in events] == [{"kind": "verify"}] * 3
    assert events[0].uid == user.uid
    assert not User.objects.filter(uid__in=[event.uid for event in events[1:]]).exists()
