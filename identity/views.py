"""Thin API views: validate with a serializer, call one service, shape the answer."""
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identity import services
from identity.serializers import MessageSerializer, SignupInputSerializer

SIGNUP_MESSAGE = "Account created. Check your email to verify your address."


class SignupView(APIView):
    @extend_schema(request=SignupInputSerializer, responses={201: MessageSerializer})
    def post(self, request: Request) -> Response:
        serializer = SignupInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.user_create(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": exc.messages}) from exc
        return Response({"message": SIGNUP_MESSAGE}, status=status.HTTP_201_CREATED)
