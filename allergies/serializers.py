from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from allergies.selectors import SYNC_CODES, SYNC_STATES
from allergies.validation import SEVERITY_LEVELS
from allergies.vocabulary import EU, MAX_NAME_LENGTH, US


# Shapes for the schema; the values are checked by allergy_profile_clean, with its messages.
@extend_schema_field({"type": "string", "maxLength": MAX_NAME_LENGTH})
class _AllergenNameField(serializers.JSONField):
    pass


@extend_schema_field({"type": "string", "enum": list(SEVERITY_LEVELS)})
class _SeverityLevelField(serializers.JSONField):
    pass


class AllergyProfileInputSerializer(serializers.Serializer):
    """PUT /api/allergies/: a full replace. Omitted fields are empty, as in seed 000 §6.2."""

    # Shapes only here; names and rules are checked by the service (allergy_profile_clean).
    confirmed = serializers.ListField(
        child=_AllergenNameField(), default=list,
        help_text="Confirmed allergies: canonical names from `GET /api/allergens/` (synonyms and plurals are "
        "mapped to them) or custom names.",
    )
    intolerances = serializers.ListField(
        child=_AllergenNameField(), default=list, help_text="Intolerances; a name is in one list, not both."
    )
    severity = serializers.DictField(
        child=_SeverityLevelField(), default=dict, help_text="One level for every listed name, and no other."
    )

    def validate(self, attrs: dict) -> dict:
        # A body naming none of the fields is far likelier a client bug than a wish to wipe a
        # food-safety record; clearing has its own verb (DELETE).
        if isinstance(self.initial_data, dict) and not set(self.initial_data) & set(self.fields):
            raise serializers.ValidationError(
                {"non_field_errors": ["Name at least one of confirmed, intolerances, severity; use DELETE to clear."]},
                code="empty_profile",
            )
        return attrs


INPUT_FIELDS = ("confirmed", "intolerances", "severity")


def allergy_profile_input_read(data: object) -> dict | None:
    """A well-formed body (an object naming at least one field, lists of strings, an object of strings: every
    valid PUT) read directly, as `AllergyProfileInputSerializer` would read it; None for anything else."""
    if type(data) is dict and not data.keys().isdisjoint(INPUT_FIELDS):
        confirmed = data.get("confirmed", [])
        intolerances = data.get("intolerances", [])
        severity = data.get("severity", {})
        if (type(confirmed) is list and type(intolerances) is list and type(severity) is dict
                and all(type(name) is str for name in confirmed) and all(type(name) is str for name in intolerances)
                and all(type(level) is str for level in severity.values())):
            # New containers, as the serializer's fields return (the caller may keep them).
            return {"confirmed": list(confirmed), "intolerances": list(intolerances), "severity": dict(severity)}
    return None


def allergy_profile_input_validate(data: object) -> dict:
    """What `AllergyProfileInputSerializer(data=data)` validates to, raising its ValidationError.

    A well-formed body is read directly (allergy_profile_input_read): building the serializer and its fields
    cost ~5 % of a PUT. Anything else goes through the serializer itself, so every error, message and code is
    the serializer's. A test holds the two equal."""
    body = allergy_profile_input_read(data)
    if body is not None:
        return body
    serializer = AllergyProfileInputSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class AllergySyncSerializer(serializers.Serializer):
    state = serializers.ChoiceField(
        choices=SYNC_STATES,
        help_text="synced: the Agent holds this revision (verified after any Agent call of unknown outcome); "
        "pending: on its way, or being read back after an Agent call of unknown outcome; failing: an attempt failed.",
    )
    code = serializers.ChoiceField(choices=SYNC_CODES, help_text="Stable: what to show.")
    message = serializers.CharField(help_text="A short sentence for the user.")
    revision = serializers.IntegerField()
    synced_revision = serializers.IntegerField(help_text="The newest revision the Agent is known to hold.")
    verified_at = serializers.DateTimeField(
        allow_null=True, help_text="When the Agent's copy was last read back and found equal to ours (null: never)."
    )


class AllergyProfileOutputSerializer(serializers.Serializer):
    confirmed = serializers.ListField(child=serializers.CharField(), help_text="Canonical names (or custom ones).")
    intolerances = serializers.ListField(child=serializers.CharField())
    severity = serializers.DictField(child=serializers.ChoiceField(choices=SEVERITY_LEVELS))
    allergy_flags = serializers.ListField(
        child=serializers.CharField(),
        help_text="The union of confirmed and intolerances, sorted: what the Agent filters on.",
    )
    recognised = serializers.ListField(
        child=serializers.CharField(), help_text="Listed names found in `GET /api/allergens/`."
    )
    custom = serializers.ListField(
        child=serializers.CharField(), help_text="Listed names not in the vocabulary: kept, but matched literally."
    )
    revision = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)
    sync = AllergySyncSerializer()


class AllergyProfileMessageOutputSerializer(AllergyProfileOutputSerializer):
    message = serializers.CharField()


class AllergenSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The canonical name: what to send in confirmed/intolerances.")
    group = serializers.CharField(allow_null=True, help_text="The major allergen this one belongs to, if any.")
    sources = serializers.ListField(
        child=serializers.ChoiceField(choices=[EU, US]), help_text="The regulations that list it."
    )
    eu = serializers.BooleanField(help_text="One of the EU 1169/2011 Annex II allergens (or a named member).")
    us = serializers.BooleanField(help_text="One of the US FALCPA/FASTER Act major food allergens.")
    synonyms = serializers.ListField(child=serializers.CharField(), help_text="Other names it is recognised by.")
    notes = serializers.CharField()


class AllergenListSerializer(serializers.Serializer):
    allergens = AllergenSerializer(many=True)
    severity_levels = serializers.ListField(child=serializers.ChoiceField(choices=SEVERITY_LEVELS))


# --- History (GET /api/allergies/history/) ---------------------------------------------------
HISTORY_MAX_LIMIT = 100
LIST_CHOICES = ["confirmed", "intolerances"]


class AllergyHistoryQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=HISTORY_MAX_LIMIT, default=20)
    offset = serializers.IntegerField(min_value=0, max_value=1_000_000, default=0)


class AllergenEntrySerializer(serializers.Serializer):
    allergen = serializers.CharField()
    list = serializers.ChoiceField(choices=LIST_CHOICES, help_text="Which list of the profile.")
    severity = serializers.CharField(allow_null=True)


class SeverityChangeSerializer(serializers.Serializer):
    allergen = serializers.CharField()
    list = serializers.ChoiceField(choices=LIST_CHOICES)
    old_severity = serializers.CharField(allow_null=True)
    new_severity = serializers.CharField(allow_null=True)


class AllergyChangesSerializer(serializers.Serializer):
    added = AllergenEntrySerializer(many=True)
    removed = AllergenEntrySerializer(many=True)
    severity_changed = SeverityChangeSerializer(many=True)


class RevisionSessionSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The session id of GET /api/sessions/ (it may have ended since).")
    device = serializers.CharField()


class AllergyRevisionSerializer(serializers.Serializer):
    revision = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    changes = AllergyChangesSerializer()
    session = RevisionSessionSerializer(allow_null=True, help_text="null: changed outside the API (admin, commands).")


class AllergyHistoryPageSerializer(serializers.Serializer):
    history = AllergyRevisionSerializer(many=True, help_text="Newest first.")
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
