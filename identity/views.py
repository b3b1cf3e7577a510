"""Thin API views: validate with a serializer, call one service, shape the answer."""
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identity import services
from identity.serializers import (
    ErrorSerializer,
    LoginInputSerializer,
    LoginOutputSerializer,
    MessageSerializer,
    SignupInputSerializer,
)

SIGNUP_MESSAGE = "Account created. Check your email to verify your address."
LOGIN_MESSAGE = "Login successful"
LOGOUT_MESSAGE = "Logged out."

ERROR = OpenApiResponse(ErrorSerializer, description="`{detail, code}` (+ `errors` per field on 400)")


class InvalidCredentialsError(exceptions.APIException):
    # Not AuthenticationFailed: DRF turns that into 403 on views without authenticators.
    status_code = status.HTTP_401_UNAUTHORIZED
    default_detail = "Invalid email or password."
    default_code = "invalid_credentials"


class EmailNotVerifiedError(exceptions.APIException):
    status_code = status.HTTP_403_FORBIDDEN
    default_detail = "Please verify your email before logging in."
    default_code = "email_not_verified"


class PublicAPIView(APIView):
    """No credentials needed; a stale or bogus token header is ignored rather than refused."""

    authentication_classes = []
    permission_classes = [AllowAny]


class SignupView(PublicAPIView):
    @extend_schema(request=SignupInputSerializer, responses={201: MessageSerializer, 400: ERROR, 429: ERROR})
    def post(self, request: Request) -> Response:
        serializer = SignupInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.user_create(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": exc.messages}) from exc
        return Response({"message": SIGNUP_MESSAGE}, status=status.HTTP_201_CREATED)


class LoginView(PublicAPIView):
    @extend_schema(
        request=LoginInputSerializer,
        responses={200: LoginOutputSerializer, 400: ERROR, 401: ERROR, 403: ERROR, 429: ERROR},
    )
    def post(self, request: Request) -> Response:
        serializer = LoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            user, issued = services.user_login(**serializer.validated_data)
        except services.InvalidCredentials as exc:
            raise InvalidCredentialsError from exc
        except services.EmailNotVerified as exc:
            raise EmailNotVerifiedError from exc
        body = {
            "message": LOGIN_MESSAGE,
            "auth_id": user.uid,
            "username": user.username,
            "token": issued.raw,
            "expires_at": issued.token.expires_at,
        }
        return Response(LoginOutputSerializer(body).data)


class LogoutView(APIView):
    @extend_schema(request=None, responses={200: MessageSerializer, 401: ERROR})
    def post(self, request: Request) -> Response:
        services.auth_token_revoke(token=request.auth)
        return Response({"message": LOGOUT_MESSAGE})
