"""Input and output shapes of the identity API (DESIGN.md §4)."""
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from identity import preferences as rules


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of turning them into strings."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictEmailField(serializers.EmailField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SignupInputSerializer(serializers.Serializer):
    username = StrictCharField(max_length=150, trim_whitespace=True)
    email = StrictEmailField(max_length=254)
    password = StrictCharField(
        max_length=128, trim_whitespace=False, write_only=True,
        help_text="Checked by the password validators (length, similarity to the email, common, numeric).",
    )


class AccountMessageSerializer(serializers.Serializer):
    message = serializers.CharField()


class LoginInputSerializer(serializers.Serializer):
    email = StrictEmailField(max_length=254)
    password = StrictCharField(max_length=128, trim_whitespace=False, write_only=True)


class MeOutputSerializer(serializers.Serializer):
    uid = serializers.UUIDField(help_text="The user's stable public id (the Agent's `X-User-ID`); not a credential.")
    username = serializers.CharField()
    email = serializers.EmailField()
    is_verified = serializers.BooleanField()
    date_joined = serializers.DateTimeField()


class LoginOutputSerializer(serializers.Serializer):
    message = serializers.CharField()
    uid = serializers.UUIDField(help_text="The user's stable uid (the Agent's `X-User-ID`); not a credential.")
    auth_id = serializers.UUIDField(help_text="The same value as `uid` (kept for the seed's frontend).")
    username = serializers.CharField()
    user = MeOutputSerializer(help_text="The signed-in user, as `GET /api/me/` answers.")
    token = serializers.CharField(help_text="The secret credential: `Authorization: Token <token>`.")
    expires_at = serializers.DateTimeField()


class EmailInputSerializer(serializers.Serializer):
    email = StrictEmailField(max_length=254)


class MeUpdateInputSerializer(serializers.Serializer):
    """Only `username` can be changed here; the other fields of `GET /api/me/` are refused by name."""

    username = StrictCharField(max_length=150, min_length=1, trim_whitespace=True)
    READ_ONLY = {
        "email": "The email address cannot be changed here; it needs a confirmation sent to the new address.",
        "uid": "The uid never changes.",
        "is_verified": "Verification is done by the link sent by email.",
        "date_joined": "This field is read-only.",
    }

    def to_internal_value(self, data: Any) -> dict:
        if isinstance(data, dict):
            read_only = {
                field: [serializers.ErrorDetail(message, code="read_only")]
                for field, message in self.READ_ONLY.items()
                if field in data
            }
            if read_only:
                raise serializers.ValidationError(read_only)
        return super().to_internal_value(data)


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


# --- Preferences: shapes for the schema; the rules are identity.preferences' ------------------
@extend_schema_field({"oneOf": [{"type": "string", "maxLength": rules.MAX_STRING}, {"type": "number"}]})
class _StringOrNumberField(serializers.JSONField):
    pass


def _preference_fields(*, nullable: bool) -> dict[str, serializers.Field]:
    null = " `null` removes the key." if nullable else ""
    common = {"required": False, "allow_null": nullable}

    def text() -> dict[str, Any]:
        return {"child": serializers.CharField(max_length=rules.MAX_STRING), "max_length": rules.MAX_ITEMS, **common}

    return {
        "dietary": serializers.ListField(**text(), help_text="Diets, e.g. vegetarian, halal." + null),
        "vibes": serializers.ListField(**text(), help_text="Atmospheres, e.g. quiet, romantic." + null),
        "cuisine_affinity": serializers.DictField(
            child=serializers.FloatField(), **common, help_text="Cuisine → weight, e.g. {\"thai\": 0.8}." + null
        ),
        "price_comfort": serializers.ListField(
            child=serializers.ChoiceField(choices=rules.PRICE_TIERS), max_length=len(rules.PRICE_TIERS), **common,
            help_text="Price tiers the user is comfortable with." + null,
        ),
        "location_bias": serializers.DictField(
            child=_StringOrNumberField(), **common,
            help_text="Strings or numbers, e.g. {\"city\": \"Oslo\", \"radius_km\": 3}." + null,
        ),
    }


PreferencesDocumentSerializer = type(
    "PreferencesDocumentSerializer", (serializers.Serializer,), _preference_fields(nullable=False)
)
PreferencesPatchDocumentSerializer = type(
    "PreferencesPatchDocumentSerializer", (serializers.Serializer,), _preference_fields(nullable=True)
)


@extend_schema_field(PreferencesDocumentSerializer)
class PreferencesDocumentField(serializers.JSONField):
    """Any JSON object; its keys and values are checked by the service (identity.preferences)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(PreferencesPatchDocumentSerializer)
class PreferencesPatchDocumentField(PreferencesDocumentField):
    pass


class PreferencesSerializer(serializers.Serializer):
    """GET and PUT: the whole document."""

    preferences = PreferencesDocumentField(error_messages={"invalid": "Expected an object."})


class PreferencesPatchSerializer(serializers.Serializer):
    """PATCH: the keys to replace; a key set to null is removed."""

    preferences = PreferencesPatchDocumentField(error_messages={"invalid": "Expected an object."})
