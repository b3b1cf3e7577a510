"""Input and output shapes of the identity API (DESIGN.md §4)."""
from django.contrib.auth.password_validation import validate_password
from rest_framework import serializers

from identity.models import User


class SignupInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, trim_whitespace=True)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)

    def validate(self, attrs: dict) -> dict:
        validate_password(attrs["password"], User(email=attrs["email"], username=attrs["username"]))
        return attrs


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    """Every 4xx answer (project/errors.py)."""

    detail = serializers.CharField()
    code = serializers.CharField()
    errors = serializers.DictField(required=False, help_text="Per-field messages, for validation errors only.")


class LoginInputSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)


class LoginOutputSerializer(serializers.Serializer):
    message = serializers.CharField()
    auth_id = serializers.UUIDField(help_text="The user's stable uid (the Agent's X-User-ID); not a credential.")
    username = serializers.CharField()
    token = serializers.CharField(help_text="The secret credential: `Authorization: Token <token>`.")
    expires_at = serializers.DateTimeField()
