"""GET /api/allergies/history/: every revision, what changed, from which session; retention."""
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from allergies import services
from allergies.history import allergy_changes
from allergies.models import AllergyRevision
from identity.models import AuthToken, User

pytestmark = pytest.mark.django_db

PEANUTS = {"confirmed": ["peanuts"], "severity": {"peanuts": "severe"}}


def test_changes_added_removed_and_severity() -> None:
    before = {"confirmed": ["peanuts", "milk"], "intolerances": ["gluten"],
              "severity": {"peanuts": "moderate", "milk": "severe", "gluten": "intolerance"}}
    after = {"confirmed": ["peanuts", "gluten"], "intolerances": [],
             "severity": {"peanuts": "anaphylactic", "gluten": "severe"}}
    assert allergy_changes(before=before, after=after) == {
        "added": [{"allergen": "gluten", "list": "confirmed", "severity": "severe"}],
        "removed": [
            {"allergen": "milk", "list": "confirmed", "severity": "severe"},
            {"allergen": "gluten", "list": "intolerances", "severity": "intolerance"},
        ],
        "severity_changed": [
            {"allergen": "peanuts", "list": "confirmed", "old_severity": "moderate", "new_severity": "anaphylactic"}
        ],
    }


def test_every_revision_is_kept_with_its_session(auth_client, issued_token) -> None:
    AuthToken.objects.filter(pk=issued_token.token.pk).update(device_label="Firefox on Ubuntu")
    auth_client.put("/api/allergies/", PEANUTS, format="json")
    auth_client.put("/api/allergies/", {"confirmed": ["peanuts"], "severity": {"peanuts": "anaphylactic"}},
                    format="json")
    auth_client.delete("/api/allergies/")

    response = auth_client.get("/api/allergies/history/")

    assert response.status_code == 200
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (3, 20, 0)
    assert [h["revision"] for h in body["history"]] == [3, 2, 1]  # newest first
    cleared, severity, added = body["history"]
    assert added["changes"]["added"] == [{"allergen": "peanuts", "list": "confirmed", "severity": "severe"}]
    assert severity["changes"]["severity_changed"] == [
        {"allergen": "peanuts", "list": "confirmed", "old_severity": "severe", "new_severity": "anaphylactic"}
    ]
    assert cleared["changes"]["removed"] == [{"allergen": "peanuts", "list": "confirmed", "severity": "anaphylactic"}]
    assert {h["session"]["id"] for h in body["history"]} == {issued_token.token.pk}
    assert {h["session"]["device"] for h in body["history"]} == {"Firefox on Ubuntu"}
    assert all(h["created_at"] for h in body["history"])


def test_history_is_paginated(auth_client) -> None:
    for level in ("moderate", "severe", "anaphylactic", "moderate", "severe"):
        auth_client.put("/api/allergies/", {"confirmed": ["milk"], "severity": {"milk": level}}, format="json")
    page = auth_client.get("/api/allergies/history/?limit=2&offset=1").json()
    assert [h["revision"] for h in page["history"]] == [4, 3]
    assert (page["total"], page["limit"], page["offset"]) == (5, 2, 1)


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "offset=-1", "limit=abc"])
def test_bad_pages_are_400(auth_client, query) -> None:
    response = auth_client.get(f"/api/allergies/history/?{query}")
    assert response.status_code == 400
    assert response.json()["code"] == "validation_error"
    [(_field, [problem])] = response.json()["errors"].items()
    assert problem["code"] in ("min_value", "max_value", "invalid")


def test_a_change_outside_the_api_has_no_session(verified_user) -> None:
    services.allergy_profile_replace(
        user=verified_user, confirmed=["milk"], intolerances=[], severity={"milk": "severe"}
    )
    assert AllergyRevision.objects.get().session_id is None


def test_another_users_history_is_not_shown(auth_client, password) -> None:
    grace = User.objects.create_user("grace@example.com", password, username="grace", is_verified=True)
    services.allergy_profile_replace(user=grace, confirmed=["sesame"], intolerances=[], severity={"sesame": "severe"})
    body = auth_client.get("/api/allergies/history/").json()
    assert body == {"history": [], "total": 0, "limit": 20, "offset": 0}


def test_history_is_erased_with_the_account(auth_client, verified_user, password) -> None:
    auth_client.put("/api/allergies/", PEANUTS, format="json")
    auth_client.delete("/api/account/", {"password": password}, format="json")
    assert not AllergyRevision.objects.exists()


def test_revisions_past_the_retention_are_pruned(verified_user, settings) -> None:
    settings.ALLERGY_HISTORY_RETENTION_DAYS = 30
    for _ in range(2):
        services.allergy_profile_replace(user=verified_user, confirmed=["milk"], intolerances=[],
                                         severity={"milk": "severe"})
    AllergyRevision.objects.filter(revision=1).update(created_at=timezone.now() - timedelta(days=31))

    call_command("prune_accounts", stdout=open("/dev/null", "w"))  # noqa: SIM115

    assert list(AllergyRevision.objects.values_list("revision", flat=True)) == [2]
    client = APIClient()
    client.force_authenticate(verified_user)
    assert client.get("/api/allergies/history/").json()["total"] == 1
