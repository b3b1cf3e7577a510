"""allergies.serializers: the PUT body's validation read directly equals the serializer's, errors included."""
from unittest import mock

import pytest
from rest_framework.exceptions import ValidationError

from allergies import serializers
from allergies.serializers import AllergyProfileInputSerializer, allergy_profile_input_validate

BODIES = [
    {"confirmed": ["peanuts"], "intolerances": ["lactose"],
     "severity": {"peanuts": "severe", "lactose": "intolerance"}},
    {"confirmed": ["peanuts"]},
    {"severity": {}},
    {"intolerances": [], "unknown": 1},
    {"confirmed": ["Peanut", "  milk "], "severity": {"peanut": "nope"}},  # shapes fine: the service's rules judge
    {},
    {"unknown": ["peanuts"]},
    [],
    ["peanuts"],
    "peanuts",
    None,
    7,
    {"confirmed": None},
    {"confirmed": "peanuts"},
    {"confirmed": {"peanuts": 1}},
    {"confirmed": [None]},
    {"confirmed": ["peanuts", 3, {"a": 1}, [1]]},
    {"intolerances": [None, "milk"]},
    {"severity": None},
    {"severity": ["peanuts"]},
    {"severity": {"peanuts": None}},
    {"severity": {"peanuts": 3}},
    {"confirmed": [], "intolerances": "x", "severity": {"a": None}},
]


def _serializer(data: object) -> tuple[str, object]:
    serializer = AllergyProfileInputSerializer(data=data)
    if serializer.is_valid():
        return "valid", dict(serializer.validated_data)
    return "invalid", serializer.errors


def _direct(data: object) -> tuple[str, object]:
    try:
        return "valid", allergy_profile_input_validate(data)
    except ValidationError as exc:
        return "invalid", exc.detail


@pytest.mark.parametrize("body", BODIES)
def test_the_direct_read_equals_the_serializer(body: object) -> None:
    expected, got = _serializer(body), _direct(body)
    assert got == expected
    if got[0] == "invalid":  # the same codes too (ErrorDetail compares its text only against a str)
        assert repr(got[1]) == repr(expected[1])


def test_a_well_formed_body_is_read_without_building_the_serializer() -> None:
    body = {"confirmed": ["peanuts"], "severity": {"peanuts": "severe"}}
    with mock.patch.object(serializers, "AllergyProfileInputSerializer", side_effect=AssertionError) as built:
        validated = allergy_profile_input_validate(body)
    assert built.call_count == 0
    assert validated == {"confirmed": ["peanuts"], "intolerances": [], "severity": {"peanuts": "severe"}}
    validated["confirmed"].append("milk")  # new containers, as the serializer's
    assert body["confirmed"] == ["peanuts"]
