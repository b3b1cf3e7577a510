import uuid

import pytest

from identity import preferences, selectors, services
from identity.models import UserPreferences

pytestmark = pytest.mark.django_db

URL = "/api/preferences/"


def patch(client, prefs):
    return client.patch(URL, {"preferences": prefs}, format="json")


def test_get_starts_empty(auth_client) -> None:
    response = auth_client.get(URL)
    assert response.status_code == 200
    assert response.json() == {"preferences": {}}


def test_patch_replaces_the_keys_it_names_and_raises_an_event(auth_client, verified_user, outbox) -> None:
    first = patch(auth_client, {"vibes": ["quiet"], "cuisine_affinity": {"thai": 0.8}, "dietary": ["vegan"]})
    second = patch(auth_client, {"vibes": ["romantic"], "cuisine_affinity": {"italian": 0.5}})

    assert first.status_code == second.status_code == 200
    expected = {"vibes": ["romantic"], "cuisine_affinity": {"italian": 0.5}, "dietary": ["vegan"]}
    assert second.json() == {"preferences": expected}
    assert auth_client.get(URL).json() == {"preferences": expected}
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

    put = auth_client.put(URL, {"preferences": {"vibes": ["lively"]}}, format="json")
    assert put.status_code == 200
    assert put.json() == {"preferences": {"vibes": ["lively"]}}
    assert UserPreferences.objects.get(user=verified_user).reset_keys == ["dietary", "vibes"]

    cleared = auth_client.delete(URL)
    assert cleared.status_code == 200
    assert cleared.json() == {"preferences": {}}
    assert auth_client.get(URL).json() == {"preferences": {}}
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


def test_the_service_enforces_the_rules_for_every_caller(verified_user) -> None:
    """The admin or a shell cannot store a shape the API would refuse."""
    with pytest.raises(services.PreferencesRefused) as refused:
        services.user_preferences_replace(user=verified_user, preferences={"vibes": "quiet"})
    assert [p.code for p in refused.value.errors["preferences.vibes"]] == ["not_a_list"]
    with pytest.raises(services.PreferencesRefused):
        services.user_preferences_update(user=verified_user, preferences={"secret": 1})
    assert selectors.user_preferences_get(user=verified_user) == {}


def test_missing_preferences_key_is_400(auth_client) -> None:
    response = auth_client.patch(URL, {"vibes": ["quiet"]}, format="json")
    assert response.status_code == 400


def test_merged_size_is_limited(auth_client) -> None:
    big = [f"{n}-" + "v" * 95 for n in range(50)]
    assert patch(auth_client, {"vibes": big, "dietary": big}).status_code == 200
    response = patch(auth_client, {"cuisine_affinity": {f"{n}-" + "c" * 95: 1 for n in range(50)}, "location_bias": {
        f"{n}-" + "l" * 95: "x" * 100 for n in range(50)}})
    assert response.status_code == 400
    assert [p["code"] for p in response.json()["errors"]["preferences"]] == ["too_large"]


def test_selector_for_the_consumer(verified_user) -> None:
    assert selectors.user_preferences_get_by_uid(uid=verified_user.uid) == selectors.PreferencesState({}, 0, [])
    services.user_preferences_update(user=verified_user, preferences={"dietary": ["vegan"]})
    services.user_preferences_update(user=verified_user, preferences={"dietary": None})
    state = selectors.user_preferences_get_by_uid(uid=verified_user.uid)
    assert state == selectors.PreferencesState({}, 2, ["dietary"])
    assert selectors.user_preferences_get_by_uid(uid=uuid.uuid4()) is None


def test_sync_record_never_moves_backwards(verified_user) -> None:
    for _ in range(3):
        services.user_preferences_update(user=verified_user, preferences={"vibes": [str(uuid.uuid4())]})
    services.user_preferences_sync_record(uid=verified_user.uid, revision=3)
    services.user_preferences_sync_record(uid=verified_user.uid, revision=2)
    assert UserPreferences.objects.get(user=verified_user).synced_revision == 3
    services.user_preferences_sync_record(uid=uuid.uuid4(), revision=9)  # a gone user: nothing to do


def test_sync_record_of_the_current_revision_ends_the_resets(verified_user) -> None:
    services.user_preferences_update(user=verified_user, preferences={"dietary": ["vegan"]})
    services.user_preferences_update(user=verified_user, preferences={"dietary": None})
    services.user_preferences_update(user=verified_user, preferences={"vibes": ["quiet"]})

    services.user_preferences_sync_record(uid=verified_user.uid, revision=2)  # an older revision: keep them
    assert UserPreferences.objects.get(user=verified_user).reset_keys == ["dietary"]
    services.user_preferences_sync_record(uid=verified_user.uid, revision=3)
    assert UserPreferences.objects.get(user=verified_user).reset_keys == []


# --- identity.preferences, the pure module ---------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "resets"),
    [
        ({"dietary": ["a"]}, {"dietary": ["a", "b"]}, set()),
        ({"dietary": ["a", "b"]}, {"dietary": ["b"]}, {"dietary"}),
        ({"dietary": ["a"]}, {}, {"dietary"}),
        ({"dietary": []}, {}, set()),  # it ends empty at the Agent anyway
        ({"location_bias": {"city": "Oslo"}}, {"location_bias": {"city": "Rome"}}, set()),
        ({"location_bias": {"city": "Oslo", "radius_km": 3}}, {"location_bias": {"city": "Oslo"}}, {"location_bias"}),
    ],
)
def test_reset_keys_are_the_changes_the_agent_merge_cannot_express(old, new, resets) -> None:
    assert preferences.preferences_reset_keys(old, new) == resets


@pytest.mark.parametrize(
    ("agent", "ours", "resets"),
    [
        ({"dietary": ["vegetarian", "halal"], "vibes": ["learned"]}, {"dietary": ["halal"]}, ["dietary"]),
        ({"location_bias": {"city": "Oslo"}, "dietary": ["x"]}, {"dietary": ["x"]}, ["location_bias"]),
        ({"dietary": ["x"]}, {"dietary": ["x", "y"]}, []),
    ],
)
def test_agent_patches_leave_the_agent_merge_with_our_state(agent, ours, resets) -> None:
    """Folding the patches with the Agent's own merge gives our document (a removed key empty);
    keys we never touched (the Agent's profiler learned them) are kept."""
    result = agent
    for body in preferences.agent_patches(ours, resets):
        result = preferences.preferences_deep_merge(result, body)
    untouched = {key: value for key, value in agent.items() if key not in ours and key not in resets}
    removed = {key: preferences.EMPTY[key] for key in resets if key not in ours}
    assert result == {**untouched, **removed, **ours}


def test_without_resets_the_state_is_sent_in_one_merge() -> None:
    assert preferences.agent_patches({"vibes": ["quiet"]}, []) == [{"vibes": ["quiet"]}]
