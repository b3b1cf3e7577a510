from rest_framework import serializers

from allergies.validation import AllergyProfileInvalid, allergy_profile_clean


class AllergyProfileInputSerializer(serializers.Serializer):
    """PUT /api/allergies/: a full replace. Omitted fields are empty, as in seed 000 §6.2."""

    # Shapes only here; names and rules are checked by allergy_profile_clean, which the
    # service runs as well, so both report the same messages.
    confirmed = serializers.ListField(child=serializers.JSONField(), default=list)
    intolerances = serializers.ListField(child=serializers.JSONField(), default=list)
    severity = serializers.DictField(child=serializers.JSONField(), default=dict)

    def validate(self, attrs: dict) -> dict:
        # A body naming none of the fields is far likelier a client bug than a wish to wipe a
        # food-safety record; clearing has its own verb (DELETE).
        if isinstance(self.initial_data, dict) and not set(self.initial_data) & set(self.fields):
            raise serializers.ValidationError(
                {"non_field_errors": ["Name at least one of confirmed, intolerances, severity; use DELETE to clear."]},
                code="empty_profile",
            )
        try:
            clean = allergy_profile_clean(**attrs)
        except AllergyProfileInvalid as exc:
            raise serializers.ValidationError(exc.errors) from exc
        return {"confirmed": clean.confirmed, "intolerances": clean.intolerances, "severity": clean.severity}


class AllergySyncSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["synced", "pending", "failing"])
    revision = serializers.IntegerField()
    synced_revision = serializers.IntegerField()
    last_error = serializers.CharField(allow_null=True)


class AllergyProfileOutputSerializer(serializers.Serializer):
    confirmed = serializers.ListField(child=serializers.CharField())
    intolerances = serializers.ListField(child=serializers.CharField())
    severity = serializers.DictField(child=serializers.CharField())
    allergy_flags = serializers.ListField(child=serializers.CharField())
    revision = serializers.IntegerField()
    updated_at = serializers.DateTimeField(allow_null=True)
    sync = AllergySyncSerializer()


class AllergyProfileMessageOutputSerializer(AllergyProfileOutputSerializer):
    message = serializers.CharField()




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
