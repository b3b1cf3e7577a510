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
    state = serializers.ChoiceField(
        choices=["synced", "pending", "failing"],
        help_text="synced: the Agent holds this revision, verified after any uncertain Agent call; pending: "
        "not yet there, or being read back after an Agent call of unknown outcome; failing: the last attempt failed.",
    )
    revision = serializers.IntegerField()
    synced_revision = serializers.IntegerField()
    last_error = serializers.CharField(allow_null=True)
    verified_at = serializers.DateTimeField(
        allow_null=True, help_text="When the Agent's copy was last read back and found equal to ours (null: never)."
    )


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


