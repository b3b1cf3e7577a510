import uuid

import pytest

from identity import selectors, services
from identity.models import UserPreferences

pytestmark = pytest.mark.django_db

URL = "/api/preferences/"


def patch(client, prefs):
    return client.patch(URL, {"preferences": prefs}, format="json")


def test_get_starts_empty(auth_client) -> None:
    response = auth_client.get(URL)
    assert response.status_code == 200
    assert response.json() == {"preferences": {}}


def test_patch_deep_merges_like_the_agent_and_raises_an_event(auth_client, verified_user, outbox) -> None:
    first = patch(auth_client, {"vibes": ["quiet"], "cuisine_affinity": {"thai": 0.8}})
    second = patch(auth_client, {"vibes": ["romantic", "quiet"], "cuisine_affinity": {"italian": 0.5}})

    assert first.status_code == second.status_code == 200
    expected = {"vibes": ["quiet", "romantic"], "cuisine_affinity": {"thai": 0.8, "italian": 0.5}}
    assert second.json() == {"preferences": expected}
    assert auth_client.get(URL).json() == {"preferences": expected}
    events = outbox("preferences.updated")
    assert [e.data["revision"] for e in events] == [1, 2]
    assert events[1].uid == verified_user.uid
    assert events[1].data == {"revision": 2}  # no copy of the preferences: handlers read them when they run


def test_a_no_op_patch_raises_no_event(auth_client, outbox) -> None:
    patch(auth_client, {"dietary": ["vegan"]})
    again = patch(auth_client, {"dietary": ["vegan"]})
    assert again.status_code == 200
    assert len(outbox("preferences.updated")) == 1


def test_unknown_key_is_400_naming_it(auth_client, outbox) -> None:
    response = patch(auth_client, {"vibes": ["quiet"], "allergies": ["peanuts"]})
    assert response.status_code == 400
    assert "allergies" in response.json()["errors"]["preferences"][0]
    assert auth_client.get(URL).json() == {"preferences": {}}
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
        {"price_comfort": None},
        [],
        "vegan",
        None,
    ],
)
def test_bad_values_are_400(auth_client, prefs, outbox) -> None:
    response = patch(auth_client, prefs)
    assert response.status_code == 400, response.json()
    assert "preferences" in response.json()["errors"]
    assert outbox("preferences.updated") == []


def test_missing_preferences_key_is_400(auth_client) -> None:
    response = auth_client.patch(URL, {"vibes": ["quiet"]}, format="json")
    assert response.status_code == 400


def test_merged_size_is_limited(auth_client) -> None:
    for i in range(4):
        patch(auth_client, {"vibes": [f"{i}-{n}-" + "v" * 90 for n in range(50)]})
    response = patch(auth_client, {"vibes": [f"more-{n}-" + "v" * 90 for n in range(50)]})
    assert response.status_code == 400
    assert response.json()["code"] == "too_large"


def test_selector_for_the_consumer(verified_user) -> None:
    assert selectors.user_preferences_get_by_uid(uid=verified_user.uid) == ({}, 0)
    services.user_preferences_update(user=verified_user, preferences={"dietary": ["vegan"]})
    assert selectors.user_preferences_get_by_uid(uid=verified_user.uid) == ({"dietary": ["vegan"]}, 1)
    assert selectors.user_preferences_get_by_uid(uid=uuid.uuid4()) is None


def test_sync_record_never_moves_backwards(verified_user) -> None:
    for _ in range(3):
        services.user_preferences_update(user=verified_user, preferences={"vibes": [str(uuid.uuid4())]})
    services.user_preferences_sync_record(uid=verified_user.uid, revision=3)
    services.user_preferences_sync_record(uid=verified_user.uid, revision=2)
    assert UserPreferences.objects.get(user=verified_user).synced_revision == 3
    services.user_preferences_sync_record(uid=uuid.uuid4(), revision=9)  # a gone user: nothing to do
