"""identity.serializers: the input shapes' own rules (the endpoints that use them: test_views.py)."""
import pytest

from identity import serializers


@pytest.mark.parametrize("value", [5, 1.5, True, None, ["ada"], {"a": 1}])
def test_strict_char_field_refuses_what_is_not_a_string(value) -> None:
    form = serializers.LoginInputSerializer(data={"email": "ada@example.com", "password": value})
    assert not form.is_valid()
    assert form.errors["password"][0].code in ("invalid", "null")


def test_strict_email_field_gives_the_canonical_address() -> None:
    form = serializers.EmailInputSerializer(data={"email": "  Ada@EXAMPLE.com "})
    assert form.is_valid(), form.errors
    assert form.validated_data == {"email": "ada@example.com"}


@pytest.mark.parametrize("value", [5, "not-an-address", "ada@", ["ada@example.com"]])
def test_strict_email_field_refuses_what_is_not_an_address(value) -> None:
    form = serializers.EmailInputSerializer(data={"email": value})
    assert not form.is_valid()
    assert form.errors["email"][0].code == "invalid"


def test_me_update_refuses_each_read_only_field_by_name() -> None:
    form = serializers.MeUpdateInputSerializer(data={"username": " Ada ", "email": "x@example.com", "uid": "u"})
    assert not form.is_valid()
    assert set(form.errors) == {"email", "uid"}
    assert {error.code for errors in form.errors.values() for error in errors} == {"read_only"}
    ok = serializers.MeUpdateInputSerializer(data={"username": " Ada "})
    assert ok.is_valid() and ok.validated_data == {"username": "Ada"}


@pytest.mark.parametrize("serializer", [serializers.PreferencesSerializer, serializers.PreferencesPatchSerializer])
def test_the_preferences_document_must_be_an_object_its_rules_are_the_services(serializer) -> None:
    for value in ([], "vegan", 5):
        form = serializer(data={"preferences": value})
        assert not form.is_valid()
        assert form.errors["preferences"] == ["Expected an object."]
    # Keys and values are not checked here: identity.preferences does, for every caller.
    form = serializer(data={"preferences": {"unknown": 1}})
    assert form.is_valid() and form.validated_data == {"preferences": {"unknown": 1}}
