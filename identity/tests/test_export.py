"""GET /api/account/export/: one downloadable JSON document with everything held about the caller."""
import json

import pytest
from rest_framework.test import APIClient

from agent_bridge.services import interaction_mirror_store
from allergies import services as allergy_services
from identity import services
from identity.models import AuthToken, User

pytestmark = pytest.mark.django_db

TOP_LEVEL = {
    "format", "version", "exported_at", "account", "pending_email_change", "notification_settings",
    "sessions", "allergies", "preferences", "interactions", "pending_notices",
}


RAMEN = {"id": 1, "user_query": "ramen near me", "created_at": "2026-12-01T09:00:00Z"}


@pytest.fixture(autouse=True)
def _clear(clear_cache):
    pass


@pytest.fixture
def rich_account(auth_client, verified_user, issued_token, password):
    """The caller with something in every section."""
    auth_client.put("/api/allergies/", {"confirmed": ["peanuts"], "severity": {"peanuts": "anaphylactic"}},
                    format="json")
    services.user_preferences_update(user=verified_user, preferences={"vibes": ["quiet"]})
    interaction_mirror_store(uid=verified_user.uid, items=[RAMEN], total=1)
    services.auth_token_revoke(token=services.auth_token_issue(user=verified_user).token)  # an ended session
    services.email_change_request(user=verified_user, new_email="ada.new@example.com", password=password)
    services.user_notifications_update(user=verified_user, new_device_login=False)
    return verified_user


@pytest.fixture
def grace(password):
    """Another account with data of its own, which no export of Ada may contain."""
    grace = User.objects.create_user("grace@example.com", password, username="grace-hopper", is_verified=True)
    allergy_services.allergy_profile_replace(user=grace, confirmed=["sesame"], intolerances=[],
                                             severity={"sesame": "severe"})
    services.user_preferences_update(user=grace, preferences={"vibes": ["loud-karaoke"]})
    interaction_mirror_store(
        uid=grace.uid, items=[{**RAMEN, "id": 2, "user_query": "grace-secret-query"}], total=1
    )
    services.auth_token_issue(user=grace)
    return grace


def export(client: APIClient):
    response = client.get("/api/account/export/")
    assert response.status_code == 200, response.content
    return response, json.loads(response.content)


def test_the_export_is_a_downloadable_json_file(auth_client, rich_account) -> None:
    response, _ = export(auth_client)
    assert response["Content-Type"].startswith("application/json")
    assert response["Content-Disposition"].startswith('attachment; filename="kairos-export-')
    assert response["Content-Disposition"].endswith('.json"')
    assert response["Cache-Control"] == "no-store"


def test_the_export_holds_every_section(auth_client, rich_account, issued_token) -> None:
    _, document = export(auth_client)

    assert set(document) == TOP_LEVEL
    assert (document["format"], document["version"]) == ("kairos-account-export", 1)
    assert document["account"]["email"] == "ada@example.com"
    assert document["account"]["uid"] == str(rich_account.uid)
    assert document["pending_email_change"]["new_email"] == "ada.new@example.com"
    assert document["notification_settings"] == {"new_device_login": False}
    assert [(s["current"], s["revoked_at"] is None) for s in document["sessions"]] == [(True, True), (False, False)]
    allergies = document["allergies"]
    assert allergies["profile"]["confirmed"] == ["peanuts"]
    assert allergies["profile"]["sync"]["state"] == "pending"
    assert [h["revision"] for h in allergies["history"]] == [1]
    assert allergies["history"][0]["session"]["id"] == issued_token.token.pk
    assert document["preferences"]["preferences"] == {"vibes": ["quiet"]}
    assert document["preferences"]["revision"] == 1
    assert [i["user_query"] for i in document["interactions"]["items"]] == ["ramen near me"]
    assert document["pending_notices"] == []


def test_the_export_has_no_secret(auth_client, rich_account, issued_token) -> None:
    response, _ = export(auth_client)
    body = response.content.decode()
    assert issued_token.raw not in body
    for token in AuthToken.objects.all():
        assert token.key_hash not in body
    assert rich_account.password not in body
    assert "key_hash" not in body and "password" not in body


def test_the_export_of_one_user_contains_nothing_of_another(auth_client, rich_account, grace) -> None:
    paths = ("/api/account/export/", f"/api/account/export/?uid={grace.uid}", f"/api/account/export/?id={grace.pk}")
    for path in paths:
        body = auth_client.get(path).content.decode()
        for theirs in (str(grace.uid), "grace@example.com", "grace-hopper", "sesame", "loud-karaoke",
                       "grace-secret-query"):
            assert theirs not in body, (path, theirs)


def test_the_export_needs_a_token(api_client, rich_account) -> None:
    response = api_client.get("/api/account/export/")
    assert response.status_code == 401
    assert response.json()["code"] in ("not_authenticated", "invalid_token")


def test_the_export_is_throttled(auth_client, rich_account, settings) -> None:
    settings.THROTTLE_RATES = {**settings.THROTTLE_RATES, "export": "1/hour"}
    assert auth_client.get("/api/account/export/").status_code == 200
    response = auth_client.get("/api/account/export/")
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"


def test_an_empty_account_exports_empty_sections(auth_client, verified_user) -> None:
    _, document = export(auth_client)
    assert document["pending_email_change"] is None
    assert document["allergies"]["history"] == []
    assert document["allergies"]["profile"]["revision"] == 0
    assert document["preferences"] == {"preferences": {}, "revision": 0, "synced_revision": 0, "updated_at": None}
    assert document["interactions"] == {"items": [], "agent_total": 0, "synced_at": None}
