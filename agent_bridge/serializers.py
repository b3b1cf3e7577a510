from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MAX_LIMIT = 100


class InteractionsQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=20)
    offset = serializers.IntegerField(min_value=0, max_value=1_000_000, default=0)
    refresh = serializers.BooleanField(default=False)


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": True,
        "description": "The Agent's answer to the query, as the Agent returned it (its shape is the Agent's).",
    }
)
class _AgentResponseField(serializers.JSONField):
    pass


class InteractionSerializer(serializers.Serializer):
    """One item of the Agent's history (its InteractionSummary)."""

    id = serializers.IntegerField()
    user_query = serializers.CharField(help_text="What the user asked.")
    agent_response = _AgentResponseField(required=False)
    ui_type = serializers.CharField(allow_null=True, required=False, help_text="How the frontend showed the answer.")
    restaurant_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    allergy_warnings_shown = serializers.BooleanField(required=False)
    allergens_flagged = serializers.ListField(child=serializers.CharField(), required=False)
    prompt_tokens = serializers.IntegerField(allow_null=True, required=False)
    completion_tokens = serializers.IntegerField(allow_null=True, required=False)
    created_at = serializers.DateTimeField()


class InteractionsPageSerializer(serializers.Serializer):
    interactions = InteractionSerializer(many=True)
    total = serializers.IntegerField(help_text="Items in the local copy (what pagination can reach).")
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    synced_at = serializers.DateTimeField(allow_null=True, help_text="When the local copy was last fetched.")
    refreshing = serializers.BooleanField(help_text="A fetch from the Agent is under way: read again shortly.")


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()
