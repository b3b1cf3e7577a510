"""identity.views over the HTTP API: each endpoint's answers and what it changes (the rules
are the services': test_services.py)."""
import time
from datetime import datetime, timedelta
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from identity import services, tokens
from identity.models import AuthToken, User, UserPreferences
from identity.tokens import auth_token_hash

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clear_cache")]


# --- POST /api/signup/, GET /api/verify/{token}/, POST /api/verify/resend/ --------------------
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


# --- POST /api/login/, POST /api/logout/ ------------------------------------------------------
LOGIN = "/api/login/"


def test_login_returns_a_new_token_stored_only_as_a_hash(api_client, verified_user, password) -> None:
    response = api_client.post(LOGIN, {"email": "ADA@example.com", "password": password}, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert set(body) == {"message", "uid", "auth_id", "username", "user", "token", "expires_at"}
    assert body["uid"] == body["auth_id"] == body["user"]["uid"]
    assert body["auth_id"] == str(verified_user.uid)
    assert body["username"] == verified_user.username
    assert len(body["token"]) >= 43  # 32 random bytes, url-safe base64
    row = AuthToken.objects.get(user=verified_user)
    assert row.key_hash == auth_token_hash(body["token"])
    assert body["token"] not in (row.key_hash,)
    assert row.expires_at - timezone.now() > timedelta(days=13)


def test_each_login_issues_a_distinct_token(api_client, verified_user, password) -> None:
    tokens = {
        api_client.post(LOGIN, {"email": verified_user.email, "password": password}, format="json").json()["token"]
        for _ in range(3)
    }
    assert len(tokens) == 3


def test_wrong_password_and_unknown_email_get_the_same_401(api_client, verified_user, password) -> None:
    wrong = api_client.post(LOGIN, {"email": verified_user.email, "password": "nope-nope-nope"}, format="json")
    unknown = api_client.post(LOGIN, {"email": "nobody@example.com", "password": password}, format="json")

    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json() == {"detail": "Invalid email or password.", "code": "invalid_credentials"}
    assert not AuthToken.objects.exists()


def test_unknown_email_still_runs_the_password_hasher(api_client, monkeypatch) -> None:
    from django.contrib.auth import hashers

    calls = []
    real = hashers.make_password

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr("django.contrib.auth.base_user.make_password", spy)
    api_client.post(LOGIN, {"email": "nobody@example.com", "password": "whatever-123"}, format="json")
    assert calls, "the hasher must run for unknown emails too, or timing tells registered addresses apart"


def test_unverified_user_gets_403_and_no_token(api_client, user, password) -> None:
    response = api_client.post(LOGIN, {"email": user.email, "password": password}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "email_not_verified"
    assert not AuthToken.objects.exists()


def test_wrong_password_of_unverified_user_is_401_not_403(api_client, user) -> None:
    response = api_client.post(LOGIN, {"email": user.email, "password": "wrong-wrong-wrong"}, format="json")
    assert response.status_code == 401


def test_inactive_user_cannot_log_in(api_client, verified_user, password) -> None:
    verified_user.is_active = False
    verified_user.save()
    response = api_client.post(LOGIN, {"email": verified_user.email, "password": password}, format="json")
    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "ada@example.com"},
        {"password": "x"},
        {"email": 5, "password": []},
        {"email": "not-an-email", "password": "x"},
    ],
)
def test_bad_login_bodies_are_400(api_client, body) -> None:
    response = api_client.post(LOGIN, body, format="json")
    assert response.status_code == 400
    assert {"detail", "code", "errors"} <= response.json().keys()


def test_logout_revokes_only_this_token(api_client, verified_user, password) -> None:
    first = api_client.post(LOGIN, {"email": verified_user.email, "password": password}, format="json").json()["token"]
    second = api_client.post(LOGIN, {"email": verified_user.email, "password": password}, format="json").json()["token"]

    response = api_client.post("/api/logout/", HTTP_AUTHORIZATION=f"Token {first}")
    assert response.status_code == 200

    assert api_client.post("/api/logout/", HTTP_AUTHORIZATION=f"Token {first}").status_code == 401
    assert api_client.post("/api/logout/", HTTP_X_AUTH_TOKEN=second).status_code == 200
    assert AuthToken.objects.filter(revoked_at__isnull=True).count() == 0


# --- GET and PATCH /api/me/, POST /api/logout/all/ --------------------------------------------
def test_me_returns_the_profile(auth_client, verified_user) -> None:
    response = auth_client.get("/api/me/")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"uid", "username", "email", "is_verified", "date_joined"}
    assert body["uid"] == str(verified_user.uid)
    assert body["email"] == verified_user.email
    assert body["is_verified"] is True


def test_patch_changes_the_username(auth_client, verified_user) -> None:
    response = auth_client.patch("/api/me/", {"username": "  Ada L.  "}, format="json")
    assert response.status_code == 200
    assert response.json()["username"] == "Ada L."
    verified_user.refresh_from_db()
    assert verified_user.username == "Ada L."
    assert verified_user.email == "ada@example.com"


@pytest.mark.parametrize("field", ["email", "uid", "is_verified"])
def test_patch_of_a_read_only_field_says_so_on_that_field(auth_client, verified_user, field) -> None:
    response = auth_client.patch("/api/me/", {"username": "new", field: "x@example.com"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert [p["code"] for p in body["errors"][field]] == ["read_only"]
    assert "username" not in body["errors"]  # not the old "username: This field is required."
    verified_user.refresh_from_db()
    assert (verified_user.username, verified_user.email) == ("ada", "ada@example.com")


@pytest.mark.parametrize("body", [{}, {"username": ""}, {"username": "x" * 151}, {"username": ["a"]}])
def test_patch_with_a_bad_username_is_400(auth_client, verified_user, body) -> None:
    response = auth_client.patch("/api/me/", body, format="json")
    assert response.status_code == 400
    assert "username" in response.json()["errors"]
    verified_user.refresh_from_db()
    assert verified_user.username == "ada"


def test_logout_all_revokes_every_token(auth_client, verified_user) -> None:
    other = services.auth_token_issue(user=verified_user)
    assert auth_client.post("/api/logout/all/").status_code == 200
    assert auth_client.get("/api/me/").status_code == 401
    auth_client.credentials(HTTP_X_AUTH_TOKEN=other.raw)
    assert auth_client.get("/api/me/").status_code == 401


# --- POST /api/password/change/, /api/password/reset/, /api/password/reset/confirm/ -----------
NEW = "another-long-passphrase-77"


def client_for(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_AUTH_TOKEN=raw)
    return client


def test_change_keeps_this_session_and_revokes_the_others(verified_user, password) -> None:
    mine = services.auth_token_issue(user=verified_user)
    other = services.auth_token_issue(user=verified_user)

    response = client_for(mine.raw).post(
        "/api/password/change/", {"current_password": password, "new_password": NEW}, format="json"
    )

    assert response.status_code == 200, response.json()
    verified_user.refresh_from_db()
    assert verified_user.check_password(NEW)
    assert client_for(mine.raw).get("/api/me/").status_code == 200
    assert client_for(other.raw).get("/api/me/").status_code == 401


def test_change_with_wrong_current_password_changes_nothing(auth_client, verified_user, password) -> None:
    other = services.auth_token_issue(user=verified_user)
    response = auth_client.post(
        "/api/password/change/", {"current_password": "wrong-wrong", "new_password": NEW}, format="json"
    )

    assert response.status_code == 400
    assert response.json()["errors"]["current_password"][0]["code"] == "invalid_password"
    assert "current_password" in response.json()["errors"]
    verified_user.refresh_from_db()
    assert verified_user.check_password(password)
    assert client_for(other.raw).get("/api/me/").status_code == 200


def test_change_to_a_weak_password_is_400(auth_client, verified_user, password) -> None:
    response = auth_client.post(
        "/api/password/change/", {"current_password": password, "new_password": "123"}, format="json"
    )
    assert response.status_code == 400
    assert "new_password" in response.json()["errors"]
    verified_user.refresh_from_db()
    assert verified_user.check_password(password)


def test_reset_request_queues_an_email_for_a_known_address(api_client, verified_user, outbox) -> None:
    response = api_client.post("/api/password/reset/", {"email": "ADA@example.com"}, format="json")
    assert response.status_code == 202
    [event] = outbox("email.requested")
    assert event.uid == verified_user.uid and event.data == {"kind": "password_reset"}


def test_reset_request_for_unknown_address_queues_an_email_for_nobody(api_client, db, outbox) -> None:
    """The same outbox work as for a known address (equal cost), under a uid that names no account."""
    from identity.models import User

    response = api_client.post("/api/password/reset/", {"email": "nobody@example.com"}, format="json")
    assert response.status_code == 202
    [event] = outbox("email.requested")
    assert event.data == {"kind": "password_reset"} and not User.objects.filter(uid=event.uid).exists()


def confirm(client, token, new_password=NEW):
    return client.post("/api/password/reset/confirm/", {"token": token, "new_password": new_password}, format="json")


def test_confirm_sets_the_password_and_revokes_every_token(api_client, verified_user) -> None:
    issued = [services.auth_token_issue(user=verified_user) for _ in range(2)]
    token = tokens.password_reset_token_make(user=verified_user)

    response = confirm(api_client, token)

    assert response.status_code == 200, response.json()
    verified_user.refresh_from_db()
    assert verified_user.check_password(NEW)
    for item in issued:
        assert client_for(item.raw).get("/api/me/").status_code == 401
    assert not AuthToken.objects.filter(revoked_at__isnull=True).exists()


def test_confirm_token_is_single_use(api_client, verified_user) -> None:
    token = tokens.password_reset_token_make(user=verified_user)
    assert confirm(api_client, token).status_code == 200

    again = confirm(api_client, token, new_password="third-long-passphrase-99")

    assert again.status_code == 400
    assert again.json()["code"] == "invalid_token"
    verified_user.refresh_from_db()
    assert verified_user.check_password(NEW)


def test_expired_reset_token_is_refused(api_client, verified_user, password, settings, monkeypatch) -> None:
    token = tokens.password_reset_token_make(user=verified_user)
    later = datetime.now() + settings.PASSWORD_RESET_TTL + timedelta(seconds=5)
    monkeypatch.setattr(tokens.password_reset_token_generator, "_now", lambda: later)

    assert confirm(api_client, token).status_code == 400
    verified_user.refresh_from_db()
    assert verified_user.check_password(password)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # hash changed
        lambda t: "0" * 32 + t[32:],  # another uid
        lambda t: t.split(".")[1],  # no uid
        lambda t: "garbage",
        lambda t: "z" * 32 + "." + t.split(".")[1],  # uid not hex
    ],
)
def test_tampered_reset_token_is_refused(api_client, verified_user, password, mangle) -> None:
    token = tokens.password_reset_token_make(user=verified_user)
    assert confirm(api_client, mangle(token)).status_code == 400
    verified_user.refresh_from_db()
    assert verified_user.check_password(password)


def test_a_token_of_another_user_does_not_reset_mine(api_client, verified_user, user, password) -> None:
    theirs = tokens.password_reset_token_make(user=user)
    forged = verified_user.uid.hex + "." + theirs.split(".")[1]
    assert confirm(api_client, forged).status_code == 400


def test_confirm_with_a_weak_password_keeps_the_token_usable(api_client, verified_user) -> None:
    token = tokens.password_reset_token_make(user=verified_user)
    weak = confirm(api_client, token, new_password="123")
    assert weak.status_code == 400 and "new_password" in weak.json()["errors"]
    assert confirm(api_client, token).status_code == 200


def test_reset_verifies_the_address(api_client, user) -> None:
    assert confirm(api_client, tokens.password_reset_token_make(user=user)).status_code == 200
    user.refresh_from_db()
    assert user.is_verified


# --- DELETE /api/account/ ---------------------------------------------------------------------
def test_delete_requires_the_password(auth_client, verified_user, outbox) -> None:
    response = auth_client.delete("/api/account/", {"password": "wrong-wrong"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["password"][0]["code"] == "invalid_password"
    assert User.objects.filter(pk=verified_user.pk).exists()
    assert outbox("user.deleted") == []


def test_delete_without_a_body_is_400(auth_client, verified_user) -> None:
    response = auth_client.delete("/api/account/")
    assert response.status_code == 400
    assert "password" in response.json()["errors"]
    assert User.objects.filter(pk=verified_user.pk).exists()


def test_delete_erases_locally_and_raises_the_erasure_event(auth_client, verified_user, password, outbox) -> None:
    uid = verified_user.uid
    services.user_preferences_update(user=verified_user, preferences={"vibes": ["quiet"]})

    response = auth_client.delete("/api/account/", {"password": password}, format="json")

    assert response.status_code == 204
    assert not User.objects.filter(uid=uid).exists()
    assert not AuthToken.objects.exists()
    assert not UserPreferences.objects.exists()
    [event] = outbox("user.deleted")
    assert event.uid == uid
    assert auth_client.get("/api/me/").status_code == 401


# --- GET, PUT, PATCH and DELETE /api/preferences/ ---------------------------------------------
PREFERENCES = "/api/preferences/"


def patch(client, prefs):
    return client.patch(PREFERENCES, {"preferences": prefs}, format="json")


def test_get_starts_empty(auth_client) -> None:
    response = auth_client.get(PREFERENCES)
    assert response.status_code == 200
    assert response.json() == {"preferences": {}}


def test_patch_replaces_the_keys_it_names_and_raises_an_event(auth_client, verified_user, outbox) -> None:
    first = patch(auth_client, {"vibes": ["quiet"], "cuisine_affinity": {"thai": 0.8}, "dietary": ["vegan"]})
    second = patch(auth_client, {"vibes": ["romantic"], "cuisine_affinity": {"italian": 0.5}})

    assert first.status_code == second.status_code == 200
    expected = {"vibes": ["romantic"], "cuisine_affinity": {"italian": 0.5}, "dietary": ["vegan"]}
    assert second.json() == {"preferences": expected}
    assert auth_client.get(PREFERENCES).json() == {"preferences": expected}
    events = outbox("preferences.updated")
    assert [e.data["revision"] for e in events] == [1, 2]
    assert events[1].uid == verified_user.uid
    assert events[1].data == {"revision": 2}  # no copy of the preferences: handlers read them when they run


def test_a_value_or_a_key_can_be_removed(auth_client, verified_user) -> None:
    patch(auth_client, {"dietary": ["vegetarian", "halal"], "location_bias": {"city": "Oslo"}})

    deselected = patch(auth_client, {"dietary": ["halal"]})
    removed = patch(auth_client, {"location_bias": None})
    emptied = patch(auth_client, {"dietary": []})

    assert deselected.json()["preferences"]["dietary"] == ["halal"]
    assert removed.json() == {"preferences": {"dietary": ["halal"]}}
    assert emptied.json() == {"preferences": {"dietary": []}}
    prefs = UserPreferences.objects.get(user=verified_user)
    assert prefs.reset_keys == ["dietary", "location_bias"]  # the Agent's merge cannot remove these


def test_put_replaces_everything_and_delete_clears(auth_client, verified_user, outbox) -> None:
    patch(auth_client, {"dietary": ["vegan"], "vibes": ["quiet"]})

    put = auth_client.put(PREFERENCES, {"preferences": {"vibes": ["lively"]}}, format="json")
    assert put.status_code == 200
    assert put.json() == {"preferences": {"vibes": ["lively"]}}
    assert UserPreferences.objects.get(user=verified_user).reset_keys == ["dietary", "vibes"]

    cleared = auth_client.delete(PREFERENCES)
    assert cleared.status_code == 200
    assert cleared.json() == {"preferences": {}}
    assert auth_client.get(PREFERENCES).json() == {"preferences": {}}
    assert len(outbox("preferences.updated")) == 3


def test_adding_values_needs_no_reset(auth_client, verified_user) -> None:
    patch(auth_client, {"dietary": ["vegan"]})
    patch(auth_client, {"dietary": ["vegan", "halal"], "vibes": ["quiet"]})
    assert UserPreferences.objects.get(user=verified_user).reset_keys == []


def test_a_no_op_patch_raises_no_event(auth_client, outbox) -> None:
    patch(auth_client, {"dietary": ["vegan"]})
    again = patch(auth_client, {"dietary": ["vegan"]})
    assert again.status_code == 200
    assert len(outbox("preferences.updated")) == 1


def test_unknown_key_is_400_naming_it(auth_client, outbox) -> None:
    response = patch(auth_client, {"vibes": ["quiet"], "allergies": ["peanuts"]})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation_error"
    assert [p["code"] for p in body["errors"]["preferences.allergies"]] == ["unknown_key"]
    assert auth_client.get(PREFERENCES).json() == {"preferences": {}}
    assert outbox("preferences.updated") == []


@pytest.mark.parametrize(
    "prefs",
    [
        {"vibes": "quiet"},
        {"vibes": [1]},
        {"vibes": [""]},
        {"vibes": ["x" * 101]},
        {"vibes": ["v"] * 51},
        {"dietary": [["nested"]]},
        {"cuisine_affinity": {"thai": "lots"}},
        {"cuisine_affinity": {"thai": True}},
        {"cuisine_affinity": {"thai": {"deep": 1}}},
        {"location_bias": 5},
        {"location_bias": {"city": ["a"]}},
        # One shape per key (see identity.serializers): other shapes would not merge cleanly.
        {"cuisine_affinity": ["thai"]},
        {"location_bias": "old town"},
        {"location_bias": ["a", "b"]},
        {"price_comfort": ["cheap"]},
        {"vibes": ["nul\x00byte"]},
        {"location_bias": {"city\x00": "Oslo"}},
        {"location_bias": {"city": "Os\x07lo"}},
        [],
        "vegan",
        None,
    ],
)
def test_bad_values_are_400(auth_client, prefs, outbox) -> None:
    response = patch(auth_client, prefs)
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "validation_error"
    assert all(field.startswith("preferences") for field in body["errors"])
    assert outbox("preferences.updated") == []


def test_missing_preferences_key_is_400(auth_client) -> None:
    response = auth_client.patch(PREFERENCES, {"vibes": ["quiet"]}, format="json")
    assert response.status_code == 400


def test_merged_size_is_limited(auth_client) -> None:
    big = [f"{n}-" + "v" * 95 for n in range(50)]
    assert patch(auth_client, {"vibes": big, "dietary": big}).status_code == 200
    response = patch(auth_client, {"cuisine_affinity": {f"{n}-" + "c" * 95: 1 for n in range(50)}, "location_bias": {
        f"{n}-" + "l" * 95: "x" * 100 for n in range(50)}})
    assert response.status_code == 400
    assert [p["code"] for p in response.json()["errors"]["preferences"]] == ["too_large"]


# --- POST /api/internal/validate-token/ -------------------------------------------------------
VALIDATE_TOKEN = "/api/internal/validate-token/"


@pytest.fixture
def service_headers(settings) -> dict:
    return {"HTTP_X_SERVICE_TOKEN": settings.AGENT_SERVICE_TOKEN}


def test_a_live_token_is_valid_and_names_its_user(api_client, issued_token, verified_user, service_headers) -> None:
    response = api_client.post(VALIDATE_TOKEN, {"token": issued_token.raw}, format="json", **service_headers)
    assert response.status_code == 200
    assert response.json() == {"valid": True, "uid": str(verified_user.uid)}


def test_revoked_expired_unknown_and_uid_are_invalid(api_client, verified_user, unusable_tokens,
                                                      service_headers) -> None:
    for raw in (*unusable_tokens.values(), str(verified_user.uid)):
        response = api_client.post(VALIDATE_TOKEN, {"token": raw}, format="json", **service_headers)
        assert response.json() == {"valid": False, "uid": None}, raw


@pytest.mark.parametrize("headers", [{}, {"HTTP_X_SERVICE_TOKEN": "wrong"}, {"HTTP_X_SERVICE_TOKEN": ""}])
def test_wrong_or_missing_service_token_is_401(api_client, issued_token, headers) -> None:
    response = api_client.post(VALIDATE_TOKEN, {"token": issued_token.raw}, format="json", **headers)
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_service_token"


def test_a_user_token_is_not_a_service_token(api_client, issued_token) -> None:
    response = api_client.post(
        VALIDATE_TOKEN, {"token": issued_token.raw}, format="json", HTTP_AUTHORIZATION=f"Token {issued_token.raw}"
    )
    assert response.status_code == 401


def test_unset_service_token_refuses_everything(api_client, issued_token, settings) -> None:
    settings.AGENT_SERVICE_TOKEN = ""
    response = api_client.post(VALIDATE_TOKEN, {"token": issued_token.raw}, format="json", HTTP_X_SERVICE_TOKEN="")
    assert response.status_code == 401


def test_missing_token_field_is_400(api_client, service_headers) -> None:
    response = api_client.post(VALIDATE_TOKEN, {}, format="json", **service_headers)
    assert response.status_code == 400
    assert "token" in response.json()["errors"]


# --- No public flow tells whether an email is registered: same status and same body either way ---
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
