from django.contrib.auth.password_validation import validate_password
from rest_framework import serializers


class SignupInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150, trim_whitespace=True)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False, write_only=True)

    def validate(self, attrs: dict) -> dict:
        from identity.models import User

        validate_password(attrs["password"], User(email=attrs["email"], username=attrs["username"]))
        return attrs


class MessageSerializer(serializers.Serializer):
    message = serializers.CharField()
