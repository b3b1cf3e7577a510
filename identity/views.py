"""Thin API views: validate with a serializer, call one service, shape the answer.

Every view that needs a user relies on the project defaults (TokenAuthentication +
IsAuthenticated); public ones derive from PublicAPIView.
"""
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identity import selectors, services, throttles
from identity.authentication import HasServiceToken
from identity.serializers import (
    AccountMessageSerializer,
    EmailInputSerializer,
    ErrorSerializer,
    LoginInputSerializer,
    LoginOutputSerializer,
    MeOutputSerializer,
    MeUpdateInputSerializer,
    PasswordChangeInputSerializer,
    PasswordInputSerializer,
    PasswordResetConfirmInputSerializer,
    PreferencesSerializer,
    SignupInputSerializer,
    ValidateTokenInputSerializer,
    ValidateTokenOutputSerializer,
)

SIGNUP_MESSAGE = "Account created. Check your email to verify your address."
LOGIN_MESSAGE = "Login successful"
LOGOUT_MESSAGE = "Logged out."
LOGOUT_ALL_MESSAGE = "Logged out everywhere."
VERIFIED_MESSAGE = "Email verified"
RESEND_MESSAGE = "If that address has an unverified account, a new verification email is on its way."
PASSWORD_CHANGED_MESSAGE = "Password changed. Other sessions were logged out."  # noqa: S105
RESET_MESSAGE = "If that address has an account, a password reset email is on its way."
RESET_DONE_MESSAGE = "Password reset. Log in with the new password."

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


class InvalidLinkError(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "This link is invalid or has expired."
    default_code = "invalid_token"


def _field_error(field: str, messages: list[str] | str, code: str = "invalid") -> serializers.ValidationError:
    return serializers.ValidationError({field: messages if isinstance(messages, list) else [messages]}, code=code)


class PublicAPIView(APIView):
    """No credentials needed; a stale or bogus token header is ignored rather than refused."""

    authentication_classes = []
    permission_classes = [AllowAny]


# --- Public account flows ---------------------------------------------------------------
class SignupView(PublicAPIView):
    throttle_classes = throttles.SIGNUP_THROTTLES

    @extend_schema(request=SignupInputSerializer, responses={201: AccountMessageSerializer, 400: ERROR, 429: ERROR})
    def post(self, request: Request) -> Response:
        serializer = SignupInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.user_create(**serializer.validated_data)
        except DjangoValidationError as exc:
            raise _field_error("password", exc.messages) from exc
        return Response({"message": SIGNUP_MESSAGE}, status=status.HTTP_201_CREATED)


class VerifyEmailView(PublicAPIView):
    @extend_schema(
        parameters=[OpenApiParameter("token", OpenApiTypes.STR, OpenApiParameter.PATH)],
        responses={200: AccountMessageSerializer, 400: ERROR},
    )
    def get(self, request: Request, token: str) -> Response:
        try:
            services.user_email_verify(token=token)
        except services.InvalidLinkToken as exc:
            raise InvalidLinkError from exc
        return Response({"message": VERIFIED_MESSAGE})


class ResendVerificationView(PublicAPIView):
    throttle_classes = throttles.EMAIL_ACTION_THROTTLES

    @extend_schema(request=EmailInputSerializer, responses={202: AccountMessageSerializer, 400: ERROR, 429: ERROR})
    def post(self, request: Request) -> Response:
        serializer = EmailInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.verification_email_resend(email=serializer.validated_data["email"])
        return Response({"message": RESEND_MESSAGE}, status=status.HTTP_202_ACCEPTED)


class LoginView(PublicAPIView):
    throttle_classes = throttles.LOGIN_THROTTLES

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


class PasswordResetView(PublicAPIView):
    throttle_classes = throttles.EMAIL_ACTION_THROTTLES

    @extend_schema(request=EmailInputSerializer, responses={202: AccountMessageSerializer, 400: ERROR, 429: ERROR})
    def post(self, request: Request) -> Response:
        serializer = EmailInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.password_reset_request(email=serializer.validated_data["email"])
        return Response({"message": RESET_MESSAGE}, status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmView(PublicAPIView):
    @extend_schema(request=PasswordResetConfirmInputSerializer, responses={200: AccountMessageSerializer, 400: ERROR})
    def post(self, request: Request) -> Response:
        serializer = PasswordResetConfirmInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.password_reset_confirm(**serializer.validated_data)
        except services.InvalidLinkToken as exc:
            raise InvalidLinkError from exc
        except DjangoValidationError as exc:
            raise _field_error("new_password", exc.messages) from exc
        return Response({"message": RESET_DONE_MESSAGE})


# --- The signed-in user ------------------------------------------------------------------
class LogoutView(APIView):
    @extend_schema(request=None, responses={200: AccountMessageSerializer, 401: ERROR})
    def post(self, request: Request) -> Response:
        services.auth_token_revoke(token=request.auth)
        return Response({"message": LOGOUT_MESSAGE})


class LogoutAllView(APIView):
    @extend_schema(request=None, responses={200: AccountMessageSerializer, 401: ERROR})
    def post(self, request: Request) -> Response:
        services.user_logout_all(user=request.user)
        return Response({"message": LOGOUT_ALL_MESSAGE})


class MeView(APIView):
    @extend_schema(responses={200: MeOutputSerializer, 401: ERROR})
    def get(self, request: Request) -> Response:
        return Response(MeOutputSerializer(request.user).data)

    @extend_schema(request=MeUpdateInputSerializer, responses={200: MeOutputSerializer, 400: ERROR, 401: ERROR})
    def patch(self, request: Request) -> Response:
        serializer = MeUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_update(user=request.user, **serializer.validated_data)
        return Response(MeOutputSerializer(user).data)


class PasswordChangeView(APIView):
    throttle_classes = throttles.RECONFIRM_THROTTLES

    @extend_schema(
        request=PasswordChangeInputSerializer,
        responses={200: AccountMessageSerializer, 400: ERROR, 401: ERROR, 429: ERROR},
    )
    def post(self, request: Request) -> Response:
        serializer = PasswordChangeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.user_password_change(user=request.user, keep_token=request.auth, **serializer.validated_data)
        except services.InvalidPassword as exc:
            raise _field_error("current_password", "Incorrect password.", code="invalid_password") from exc
        except DjangoValidationError as exc:
            raise _field_error("new_password", exc.messages) from exc
        return Response({"message": PASSWORD_CHANGED_MESSAGE})


class AccountView(APIView):
    throttle_classes = throttles.RECONFIRM_THROTTLES

    @extend_schema(request=PasswordInputSerializer, responses={204: None, 400: ERROR, 401: ERROR, 429: ERROR})
    def delete(self, request: Request) -> Response:
        serializer = PasswordInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.user_delete(user=request.user, password=serializer.validated_data["password"])
        except services.InvalidPassword as exc:
            raise _field_error("password", "Incorrect password.", code="invalid_password") from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class PreferencesView(APIView):
    @extend_schema(responses={200: PreferencesSerializer, 401: ERROR})
    def get(self, request: Request) -> Response:
        return Response({"preferences": selectors.user_preferences_get(user=request.user)})

    @extend_schema(
        request=PreferencesSerializer, responses={200: PreferencesSerializer, 400: ERROR, 401: ERROR, 413: ERROR}
    )
    def patch(self, request: Request) -> Response:
        serializer = PreferencesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            prefs = services.user_preferences_update(
                user=request.user, preferences=serializer.validated_data["preferences"]
            )
        except services.PreferencesTooLarge as exc:
            raise _field_error("preferences", "The merged preferences are too large.", code="too_large") from exc
        return Response({"preferences": prefs.data})


# --- Service to service ------------------------------------------------------------------
class ValidateTokenView(APIView):
    """For the Agent: is this a live user token, and whose? Authenticated by `X-Service-Token`."""

    authentication_classes = []
    permission_classes = [HasServiceToken]

    @extend_schema(
        request=ValidateTokenInputSerializer,
        responses={200: ValidateTokenOutputSerializer, 400: ERROR, 401: ERROR},
        parameters=[OpenApiParameter("X-Service-Token", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True)],
    )
    def post(self, request: Request) -> Response:
        serializer = ValidateTokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = selectors.auth_token_get_usable(raw=serializer.validated_data["token"])
        body = {"valid": token is not None, "uid": token.user.uid if token else None}
        return Response(ValidateTokenOutputSerializer(body).data)
