"""Each rule of DESIGN §6, on allergy_profile_clean (the API's 400s are in test_views)."""
import pytest

from allergies.validation import MAX_ENTRIES, AllergyProfileInvalid, allergy_profile_clean
from allergies.vocabulary import MAX_NAME_LENGTH


def clean(confirmed=(), intolerances=(), severity=None):
    return allergy_profile_clean(confirmed=list(confirmed), intolerances=list(intolerances), severity=severity or {})


def errors_of(**kwargs) -> dict[str, list[str]]:
    with pytest.raises(AllergyProfileInvalid) as info:
        clean(**kwargs)
    return info.value.messages


def test_a_valid_profile_is_normalised() -> None:
    profile = clean(
        confirmed=["Peanut", " Prawns"],
        intolerances=["Lactose"],
        severity={"peanuts": "anaphylactic", "SHRIMP": "severe", "lactose": "intolerance"},
    )
    assert profile.confirmed == ["peanuts", "crustaceans"]
    assert profile.intolerances == ["lactose"]
    assert profile.severity == {"peanuts": "anaphylactic", "crustaceans": "severe", "lactose": "intolerance"}


def test_an_empty_profile_is_valid() -> None:
    profile = clean()
    assert (profile.confirmed, profile.intolerances, profile.severity) == ([], [], {})


@pytest.mark.parametrize("level", ["anaphylactic", "severe", "moderate", "intolerance"])
def test_every_level_is_accepted(level: str) -> None:
    assert clean(confirmed=["milk"], severity={"milk": level}).severity == {"milk": level}


def test_every_listed_allergen_needs_a_severity() -> None:
    errors = errors_of(confirmed=["peanuts", "milk"], intolerances=["lactose"], severity={"peanuts": "severe"})
    assert list(errors) == ["severity"]
    assert "milk" in errors["severity"][0] and "lactose" in errors["severity"][0]


@pytest.mark.parametrize("level", ["deadly", "", "Severe", None, 3])
def test_an_unknown_severity_level_is_refused(level) -> None:
    errors = errors_of(confirmed=["milk"], severity={"milk": level})
    assert list(errors) == ["severity"]


def test_a_severity_for_an_unlisted_allergen_is_refused() -> None:
    errors = errors_of(confirmed=["milk"], severity={"milk": "severe", "eggs": "moderate"})
    assert list(errors) == ["severity"]
    assert "eggs" in errors["severity"][0]


@pytest.mark.parametrize("field", ["confirmed", "intolerances"])
def test_duplicates_after_normalisation_are_refused(field: str) -> None:
    errors = errors_of(**{field: ["Peanut", "groundnuts"]}, severity={"peanuts": "severe"})
    assert list(errors) == [field]
    assert "peanuts" in errors[field][0]


def test_duplicate_severity_keys_after_normalisation_are_refused() -> None:
    errors = errors_of(confirmed=["peanuts"], severity={"peanuts": "severe", "Peanut": "moderate"})
    assert list(errors) == ["severity"]


def test_an_allergen_is_either_confirmed_or_an_intolerance() -> None:
    errors = errors_of(confirmed=["milk"], intolerances=["dairy"], severity={"milk": "severe"})
    assert list(errors) == ["intolerances"]


@pytest.mark.parametrize("name", ["", "   ", "\t"])
@pytest.mark.parametrize("field", ["confirmed", "intolerances"])
def test_empty_names_are_refused(field: str, name: str) -> None:
    assert list(errors_of(**{field: [name]})) == [field]


def test_an_empty_severity_key_is_refused() -> None:
    assert list(errors_of(severity={" ": "severe"})) == ["severity"]


@pytest.mark.parametrize("field", ["confirmed", "intolerances"])
def test_over_long_names_are_refused(field: str) -> None:
    name = "x" * (MAX_NAME_LENGTH + 1)
    assert list(errors_of(**{field: [name]})) == [field]


def test_a_name_of_the_maximum_length_is_accepted() -> None:
    name = "x" * MAX_NAME_LENGTH
    assert clean(confirmed=[name], severity={name: "severe"}).confirmed == [name]


@pytest.mark.parametrize("field", ["confirmed", "intolerances"])
def test_too_many_entries_are_refused(field: str) -> None:
    names = [f"allergen {i}" for i in range(MAX_ENTRIES + 1)]
    errors = errors_of(**{field: names}, severity=dict.fromkeys(names, "moderate"))
    assert field in errors


def test_too_many_severity_entries_are_refused() -> None:
    severity = {f"allergen {i}": "moderate" for i in range(2 * MAX_ENTRIES + 1)}
    assert list(errors_of(severity=severity)) == ["severity"]


@pytest.mark.parametrize("bad", [3, None, ["nested"], {"a": 1}])
def test_names_must_be_strings(bad) -> None:
    assert list(errors_of(confirmed=[bad])) == ["confirmed"]


def test_control_characters_are_refused() -> None:
    assert list(errors_of(confirmed=["pea\x00nuts"])) == ["confirmed"]


def test_names_are_normalised_once_and_the_cache_stays_bounded(monkeypatch) -> None:
    """Every PUT checks the same names again: a short name is normalised once, then remembered (same answer,
    errors included); a name longer than NAME_CACHE_LENGTH is never kept, so no body grows the cache."""
    from unittest import mock

    from allergies import validation

    validation._name_checked.cache_clear()
    normalize = mock.Mock(side_effect=validation.allergen_normalize)
    monkeypatch.setattr(validation, "allergen_normalize", normalize)
    body = {"confirmed": ["Peanuts", "sesame"], "intolerances": ["lactose"],
            "severity": {"peanuts": "severe", "sesame": "moderate", "lactose": "intolerance"}}
    first = allergy_profile_clean(**body)
    assert allergy_profile_clean(**body) == first
    assert normalize.call_count == 4  # four distinct spellings ("Peanuts", "peanuts", "sesame", "lactose"), once each
    for _ in range(2):
        with pytest.raises(AllergyProfileInvalid, match="control characters"):
            allergy_profile_clean(confirmed=["pea\x00nut"], intolerances=[], severity={})
    long_name = "x" * (validation.NAME_CACHE_LENGTH + 1)
    for _ in range(2):
        with pytest.raises(AllergyProfileInvalid, match="at most"):
            allergy_profile_clean(confirmed=[long_name], intolerances=[], severity={long_name: "severe"})
    assert normalize.call_count == 4 + 4  # the long name each time (list and key, twice), never cached
    assert validation._name_checked.cache_info().maxsize == validation.NAME_CACHE_SIZE
