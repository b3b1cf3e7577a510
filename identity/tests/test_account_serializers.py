"""identity.account_serializers: the input shapes' own rules (the endpoints that use them and
the export document: test_account_views.py, test_export.py)."""
import pytest

from identity.account_serializers import (
    EmailChangeInputSerializer,
    NotificationSettingsInputSerializer,
    TokenInputSerializer,
)


def test_a_link_token_is_read_without_the_whitespace_around_it() -> None:
    # A token pasted from a mail often brings a space or a line break with it.
    form = TokenInputSerializer(data={"token": "  Ab3.x-y:z_9\n"})
    assert form.is_valid(), form.errors
    assert form.validated_data == {"token": "Ab3.x-y:z_9"}


def test_a_token_over_512_characters_is_refused() -> None:
    assert TokenInputSerializer(data={"token": "t" * 512}).is_valid()
    form = TokenInputSerializer(data={"token": "t" * 513})
    assert not form.is_valid()
    assert form.errors["token"][0].code == "max_length"


def test_the_password_of_an_email_change_is_checked_as_typed_and_never_echoed() -> None:
    form = EmailChangeInputSerializer(data={"new_email": "new@example.com", "password": "  spaced passphrase  "})
    assert form.is_valid(), form.errors
    assert form.validated_data["password"] == "  spaced passphrase  "  # spaces are part of a password
    assert form.data == {"new_email": "new@example.com"}


@pytest.mark.parametrize("data", [["new_device_login"], "new_device_login"])
def test_notification_settings_that_are_not_an_object_are_a_validation_error(data) -> None:
    """The JSON-booleans-only check looks into the body before DRF has checked it is an object:
    a list or a string holding the field's name must still be a 400, not a TypeError."""
    form = NotificationSettingsInputSerializer(data=data)
    assert not form.is_valid()
    assert set(form.errors) == {"non_field_errors"}
    assert form.errors["non_field_errors"][0].code == "invalid"
