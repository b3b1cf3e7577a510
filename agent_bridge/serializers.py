from rest_framework import serializers

MAX_LIMIT = 100


class InteractionsQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=MAX_LIMIT, default=20)
    offset = serializers.IntegerField(min_value=0, max_value=1_000_000, default=0)


class InteractionsPageSerializer(serializers.Serializer):
    interactions = serializers.ListField(child=serializers.DictField())
    total = serializers.IntegerField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()
    synced_at = serializers.DateTimeField(allow_null=True)
    refreshing = serializers.BooleanField()


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()
