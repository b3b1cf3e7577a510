"""Input and output shapes of the identity API (DESIGN.md §4)."""
import json
import math
import unicodedata
from collections.abc import Callable
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from identity.addresses import EmailNotCanonical, email_canonical
from identity.models import User
from identity.services import PREFERENCES_MAX_BYTES
from project.text import invisible_strip


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into strings."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    """An address, brought to its canonical form (identity.addresses) before anything else sees
    it: lookups, uniqueness and the validators all work on the one spelling of a mailbox. An
    address without a canonical form is refused like any invalid address."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return email_canonical(super().to_internal_value(data))
        except EmailNotCanonical:
            self.fail("invalid")


class SignupInputSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, trim_whitespace=True)
    email = StrictEmailField(max_length=254)
    password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)

    def validate(self, attrs: dict) -> dict:
        try:
            validate_password(attrs["password"], User(email=attrs["email"], username=attrs["username"]))
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": exc.messages}) from exc
        return attrs


class AccountMessageSerializer(serializers.Serializer):
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """Every 4xx answer (project/errors.py)."""

    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Per-field messages, for validation errors only.")


class LoginInputSerializer(serializers.Serializer):
    email = StrictEmailField(max_length=254)
    password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)


class LoginOutputSerializer(serializers.Serializer):
    message = serializers.CharField()
    auth_id = serializers.UUIDField(help_text="The user's stable uid (the Agent's X-User-ID); not a credential.")
    username = serializers.CharField()
    token = serializers.CharField(help_text="The secret credential: `Authorization: Token <token>`.")
    expires_at = serializers.DateTimeField()


class EmailInputSerializer(serializers.Serializer):
    email = StrictEmailField(max_length=254)


class VerifyOutputSerializer(serializers.Serializer):
    message = serializers.CharField()


class MeOutputSerializer(serializers.Serializer):
    uid = serializers.UUIDField()
    username = serializers.CharField()
    email = serializers.EmailField()
    is_verified = serializers.BooleanField()
    date_joined = serializers.DateTimeField()


class MeUpdateInputSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, min_length=1, trim_whitespace=True)


class PasswordChangeInputSerializer(serializers.Serializer):
    current_password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)
    new_password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)


class PasswordResetConfirmInputSerializer(serializers.Serializer):
    token = StrictCharField(max_length=256, trim_whitespace=True)
    new_password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)


class PasswordInputSerializer(serializers.Serializer):
    password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)


class ValidateTokenInputSerializer(serializers.Serializer):
    token = StrictCharField(max_length=256, trim_whitespace=True)


class ValidateTokenOutputSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    uid = serializers.UUIDField(allow_null=True)


# --- Preferences ---------------------------------------------------------------------------
# The keys the Agent knows (seed 000 §7). Values stay small: they are sent to the Agent whole.
PREFERENCE_MAX_ITEMS = 50
PREFERENCE_MAX_STRING = 100


def _check_string(value: Any, path: str) -> str:
    # The Agent matches these against its own vocabularies (diets, cuisines...): one spelling,
    # without characters that render as nothing ("ve\u200bgan" is "vegan").
    if isinstance(value, str):
        value = unicodedata.normalize("NFC", invisible_strip(value)).strip()
    if not isinstance(value, str) or not value:
        raise serializers.ValidationError(f"{path}: expected a non-empty string.")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise serializers.ValidationError(f"{path}: must not contain control characters.")
    if len(value) > PREFERENCE_MAX_STRING:
        raise serializers.ValidationError(f"{path}: at most {PREFERENCE_MAX_STRING} characters.")
    return value


def _check_string_list(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        raise serializers.ValidationError(f"{path}: expected a list of strings.")
    if len(value) > PREFERENCE_MAX_ITEMS:
        raise serializers.ValidationError(f"{path}: at most {PREFERENCE_MAX_ITEMS} items.")
    cleaned: list[str] = []
    for i, item in enumerate(value):
        text = _check_string(item, f"{path}[{i}]")
        if text not in cleaned:
            cleaned.append(text)
    return cleaned


def _check_number(value: Any, path: str) -> float | int:
    # bool is an int in Python; a weight of `true` is a client bug, not a number.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise serializers.ValidationError(f"{path}: expected a finite number.")
    return value


def _check_flat_object(value: Any, path: str, *, numbers_only: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise serializers.ValidationError(f"{path}: expected an object.")
    if len(value) > PREFERENCE_MAX_ITEMS:
        raise serializers.ValidationError(f"{path}: at most {PREFERENCE_MAX_ITEMS} keys.")
    cleaned: dict[str, Any] = {}
    for key, item in value.items():
        name = _check_string(key, f"{path} key")
        if numbers_only or not isinstance(item, str):
            cleaned[name] = _check_number(item, f"{path}.{name}")
        else:
            cleaned[name] = _check_string(item, f"{path}.{name}")
    return cleaned


def _check_cuisine_affinity(value: Any, path: str) -> dict[str, Any]:
    """{cuisine: weight}."""
    return _check_flat_object(value, path, numbers_only=True)


def _check_location_bias(value: Any, path: str) -> dict[str, Any]:
    """An object of strings/numbers, e.g. {"city": "Oslo", "radius_km": 3}."""
    return _check_flat_object(value, path, numbers_only=False)


# Each key has exactly one shape. The consumer sends the full current preferences and the
# Agent deep-merges them; when sends are coalesced, a key that changed shape in between
# (object → list → object) would leave the old object's keys behind at the Agent. With one
# shape per key, merging the latest state always lands on exactly the backend's state.
PREFERENCE_VALIDATORS: dict[str, Callable[[Any, str], Any]] = {
    "dietary": _check_string_list,
    "vibes": _check_string_list,
    "cuisine_affinity": _check_cuisine_affinity,
    "price_comfort": _check_string_list,
    "location_bias": _check_location_bias,
}


class PreferencesSerializer(serializers.Serializer):
    preferences = serializers.JSONField(
        help_text="Keys: " + ", ".join(PREFERENCE_VALIDATORS) + ". PATCH deep-merges (lists are unioned)."
    )

    def validate_preferences(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Expected an object.")
        unknown = sorted(set(value) - set(PREFERENCE_VALIDATORS))
        if unknown:
            raise serializers.ValidationError(
                f"Unknown preference key(s): {', '.join(map(str, unknown))}. "
                f"Allowed: {', '.join(PREFERENCE_VALIDATORS)}."
            )
        cleaned = {key: PREFERENCE_VALIDATORS[key](item, key) for key, item in value.items()}
        if len(json.dumps(cleaned)) > PREFERENCES_MAX_BYTES:
            raise serializers.ValidationError(f"Preferences must stay under {PREFERENCES_MAX_BYTES} bytes.")
        return cleaned
