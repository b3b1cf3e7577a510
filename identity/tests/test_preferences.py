"""identity.preferences, the pure module: the rules, the API's patch semantics, the Agent's merge."""
import pytest

from identity import preferences


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


def test_deep_merge_does_not_mutate_its_inputs():
    base = {"a": {"b": [1]}}
    update = {"a": {"b": [2]}}
    assert preferences.preferences_deep_merge(base, update) == {"a": {"b": [1, 2]}}
    assert base == {"a": {"b": [1]}} and update == {"a": {"b": [2]}}


def test_deep_merge_is_the_agents_objects_merge_lists_union_anything_else_replaces() -> None:
    base = {"vibes": ["quiet", "lively"], "location_bias": {"city": "Oslo", "radius_km": 3}, "x": 1, "kept": [1]}
    update = {"vibes": ["lively", "romantic"], "location_bias": {"radius_km": 5}, "x": None, "new": {"a": 1}}
    assert preferences.preferences_deep_merge(base, update) == {
        "vibes": ["quiet", "lively", "romantic"],
        "location_bias": {"city": "Oslo", "radius_km": 5},
        "x": None,
        "kept": [1],
        "new": {"a": 1},
    }
    # A list meets an object (or the reverse): the new value replaces, it is not merged.
    assert preferences.preferences_deep_merge({"k": [1]}, {"k": {"a": 1}}) == {"k": {"a": 1}}


def test_clean_normalises_a_document() -> None:
    cleaned = preferences.preferences_clean(
        {"vibes": ["  quiet ", "quiet", "lively"], "cuisine_affinity": {"thai": 0.8}, "price_comfort": ["$$"]}
    )
    assert cleaned == {"vibes": ["quiet", "lively"], "cuisine_affinity": {"thai": 0.8}, "price_comfort": ["$$"]}


def test_clean_names_every_bad_key_with_its_code() -> None:
    with pytest.raises(preferences.PreferencesInvalid) as invalid:
        preferences.preferences_clean({"vibes": "quiet", "allergies": ["peanuts"], "location_bias": None})
    assert set(invalid.value.problems) == {"vibes", "allergies", "location_bias"}
    assert invalid.value.problems["allergies"].code == "unknown_key"
    with pytest.raises(preferences.PreferencesInvalid) as not_an_object:
        preferences.preferences_clean(["vibes"])
    assert not_an_object.value.problems[""].code == "not_an_object"


def test_clean_refuses_a_document_over_the_size_limit() -> None:
    big = {key: [f"{n}-" + "v" * 95 for n in range(50)] for key in ("vibes", "dietary")}
    big["location_bias"] = {f"{n}-" + "l" * 95: "x" * 100 for n in range(50)}
    with pytest.raises(preferences.PreferencesInvalid) as invalid:
        preferences.preferences_clean(big)
    assert invalid.value.problems[""].code == "too_large"


def test_a_patch_replaces_the_keys_it_names_and_null_removes_one() -> None:
    current = {"vibes": ["quiet"], "dietary": ["vegan"], "location_bias": {"city": "Oslo"}}
    patched = preferences.preferences_patch_apply(current, {"vibes": ["lively"], "location_bias": None})
    assert patched == {"vibes": ["lively"], "dietary": ["vegan"]}
    assert current == {"vibes": ["quiet"], "dietary": ["vegan"], "location_bias": {"city": "Oslo"}}
    with pytest.raises(preferences.PreferencesInvalid):
        preferences.preferences_patch_apply(current, {"vibes": None, "secret": 1})
