"""Thin API views: validate with a serializer, call one service, shape the answer.

Every view that needs a user relies on the project defaults (TokenAuthentication +
IsAuthenticated); public ones derive from PublicAPIView.
"""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identity import selectors, services, throttles
from identity.authentication import HasServiceToken
from identity.serializers import (
    AccountMessageSerializer,
    EmailInputSerializer,
    LoginInputSerializer,
    LoginOutputSerializer,
    MeOutputSerializer,
    MeUpdateInputSerializer,
    PasswordChangeInputSerializer,
    PasswordInputSerializer,
    PasswordResetConfirmInputSerializer,
    PreferencesPatchSerializer,
    PreferencesSerializer,
    SignupInputSerializer,
    ValidateTokenInputSerializer,
    ValidateTokenOutputSerializer,
)
from project.errors import ErrorSerializer

SIGNUP_MESSAGE = "Account created. Check your email to verify your address."
LOGIN_MESSAGE = "Login successful"
LOGOUT_MESSAGE = "Logged out."
LOGOUT_ALL_MESSAGE = "Logged out everywhere."
VERIFIED_MESSAGE = "Email verified"
RESEND_MESSAGE = "If that address has an unverified account, a new verification email is on its way."
PASSWORD_CHANGED_MESSAGE = "Password changed. Other sessions were logged out."  # noqa: S105
RESET_MESSAGE = "If that address has an account, a password reset email is on its way."
RESET_DONE_MESSAGE = "Password reset. Log in with the new password."

ERROR = OpenApiResponse(ErrorSerializer, description="`{detail, code}`; validation errors add `errors` per field.")
ACCOUNT = "account"
PROFILE = "profile"
INTERNAL = "internal"

PREFERENCES_EXAMPLE = {
    "dietary": ["vegetarian"],
    "vibes": ["quiet", "romantic"],
    "cuisine_affinity": {"thai": 0.8, "italian": 0.5},
    "price_comfort": ["$$", "$$$"],
    "location_bias": {"city": "Oslo", "radius_km": 3},
}


class PublicAPIView(APIView):
    """No credentials needed; a stale or bogus token header is ignored rather than refused."""

    authentication_classes = []
    permission_classes = [AllowAny]


# --- Public account flows ---------------------------------------------------------------
class SignupView(PublicAPIView):
    throttle_classes = throttles.SIGNUP_THROTTLES

    @extend_schema(
        tags=[ACCOUNT],
        summary="Create an account",
        description=(
            "Creates an unverified account and emails a verification link to "
            "`{FRONTEND_BASE_URL}/verify/<token>`; the frontend page calls `GET /api/verify/{token}/`. "
            "An address that already has an account gets the same 201 (the owner is emailed instead), "
            "so the answer never reveals who is registered. Weak passwords are refused on `password` "
            "with the validator's code (`password_too_short`, `password_too_common`, ...)."
        ),
        request=SignupInputSerializer,
        responses={201: AccountMessageSerializer, 400: ERROR, 429: ERROR},
        examples=[
            OpenApiExample(
                "signup",
                value={"username": "ada", "email": "ada@example.com", "password": "a-long-passphrase-42"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = SignupInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_create(**serializer.validated_data)
        return Response({"message": SIGNUP_MESSAGE}, status=status.HTTP_201_CREATED)


class VerifyEmailView(PublicAPIView):
    @extend_schema(
        tags=[ACCOUNT],
        summary="Verify the email address",
        description=(
            "The token comes from the link in the verification email (`/verify/<token>` on the frontend). "
            "Idempotent; a tampered, expired or outdated token is 400 `invalid_token`."
        ),
        parameters=[OpenApiParameter("token", OpenApiTypes.STR, OpenApiParameter.PATH)],
        responses={200: AccountMessageSerializer, 400: ERROR},
    )
    def get(self, request: Request, token: str) -> Response:
        services.user_email_verify(token=token)
        return Response({"message": VERIFIED_MESSAGE})


class ResendVerificationView(PublicAPIView):
    throttle_classes = throttles.EMAIL_ACTION_THROTTLES

    @extend_schema(
        tags=[ACCOUNT],
        summary="Send the verification email again",
        description="Always 202, whether or not the address has an unverified account.",
        request=EmailInputSerializer,
        responses={202: AccountMessageSerializer, 400: ERROR, 429: ERROR},
    )
    def post(self, request: Request) -> Response:
        serializer = EmailInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.verification_email_resend(email=serializer.validated_data["email"])
        return Response({"message": RESEND_MESSAGE}, status=status.HTTP_202_ACCEPTED)


class LoginView(PublicAPIView):
    throttle_classes = throttles.LOGIN_THROTTLES

    @extend_schema(
        tags=[ACCOUNT],
        summary="Log in",
        description=(
            "Returns a token to send as `Authorization: Token <token>` (or `X-Auth-Token: <token>`) and the "
            "user. Unknown email and wrong password are both 401 `invalid_credentials`; an unverified "
            "address is 403 `email_not_verified`."
        ),
        request=LoginInputSerializer,
        responses={200: LoginOutputSerializer, 400: ERROR, 401: ERROR, 403: ERROR, 429: ERROR},
        examples=[
            OpenApiExample(
                "login", value={"email": "ada@example.com", "password": "a-long-passphrase-42"}, request_only=True
            )
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = LoginInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, issued = services.user_login(**serializer.validated_data)
        body = {
            "message": LOGIN_MESSAGE,
            "uid": user.uid,
            "auth_id": user.uid,
            "username": user.username,
            "user": user,
            "token": issued.raw,
            "expires_at": issued.token.expires_at,
        }
        return Response(LoginOutputSerializer(body).data)


class PasswordResetView(PublicAPIView):
    throttle_classes = throttles.EMAIL_ACTION_THROTTLES

    @extend_schema(
        tags=[ACCOUNT],
        summary="Ask for a password reset email",
        description=(
            "Always 202. An active account gets a link to `{FRONTEND_BASE_URL}/reset-password?token=<token>`; "
            "the frontend page posts the token to `POST /api/password/reset/confirm/`."
        ),
        request=EmailInputSerializer,
        responses={202: AccountMessageSerializer, 400: ERROR, 429: ERROR},
    )
    def post(self, request: Request) -> Response:
        serializer = EmailInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.password_reset_request(email=serializer.validated_data["email"])
        return Response({"message": RESET_MESSAGE}, status=status.HTTP_202_ACCEPTED)


class PasswordResetConfirmView(PublicAPIView):
    @extend_schema(
        tags=[ACCOUNT],
        summary="Set a new password from a reset link",
        description=(
            "Single use; logs out every session and marks the address verified. A bad token is 400 "
            "`invalid_token`; a weak password is a validation error on `new_password`."
        ),
        request=PasswordResetConfirmInputSerializer,
        responses={200: AccountMessageSerializer, 400: ERROR},
    )
    def post(self, request: Request) -> Response:
        serializer = PasswordResetConfirmInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.password_reset_confirm(**serializer.validated_data)
        return Response({"message": RESET_DONE_MESSAGE})


# --- The signed-in user ------------------------------------------------------------------
class LogoutView(APIView):
    @extend_schema(
        tags=[ACCOUNT], summary="Log out", description="Revokes the token of this request.",
        request=None, responses={200: AccountMessageSerializer, 401: ERROR},
    )
    def post(self, request: Request) -> Response:
        services.auth_token_revoke(token=request.auth)
        return Response({"message": LOGOUT_MESSAGE})


class LogoutAllView(APIView):
    @extend_schema(
        tags=[ACCOUNT], summary="Log out everywhere", description="Revokes every token of the user, this one included.",
        request=None, responses={200: AccountMessageSerializer, 401: ERROR},
    )
    def post(self, request: Request) -> Response:
        services.user_logout_all(user=request.user)
        return Response({"message": LOGOUT_ALL_MESSAGE})


class MeView(APIView):
    @extend_schema(
        tags=[PROFILE], summary="The signed-in user", description="`uid` is what the frontend sends the Agent.",
        responses={200: MeOutputSerializer, 401: ERROR},
    )
    def get(self, request: Request) -> Response:
        return Response(MeOutputSerializer(request.user).data)

    @extend_schema(
        tags=[PROFILE],
        summary="Change the username",
        description="Only `username` can change here; sending `email`, `uid`, ... is a validation error "
        "with code `read_only` on that field.",
        request=MeUpdateInputSerializer,
        responses={200: MeOutputSerializer, 400: ERROR, 401: ERROR},
    )
    def patch(self, request: Request) -> Response:
        serializer = MeUpdateInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_update(user=request.user, **serializer.validated_data)
        return Response(MeOutputSerializer(user).data)


class PasswordChangeView(APIView):
    throttle_classes = throttles.RECONFIRM_THROTTLES

    @extend_schema(
        tags=[ACCOUNT],
        summary="Change the password",
        description="Logs out every other session; this token stays valid. A wrong current password is a "
        "validation error on `current_password` (`invalid_password`).",
        request=PasswordChangeInputSerializer,
        responses={200: AccountMessageSerializer, 400: ERROR, 401: ERROR, 429: ERROR},
    )
    def post(self, request: Request) -> Response:
        serializer = PasswordChangeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_password_change(user=request.user, keep_token=request.auth, **serializer.validated_data)
        return Response({"message": PASSWORD_CHANGED_MESSAGE})


class AccountView(APIView):
    throttle_classes = throttles.RECONFIRM_THROTTLES

    @extend_schema(
        tags=[ACCOUNT],
        summary="Delete the account",
        description="Needs the password in the body. Deletes everything here and, through the bus, at the Agent.",
        request=PasswordInputSerializer,
        responses={204: None, 400: ERROR, 401: ERROR, 429: ERROR},
        examples=[OpenApiExample("delete", value={"password": "a-long-passphrase-42"}, request_only=True)],
    )
    def delete(self, request: Request) -> Response:
        serializer = PasswordInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_delete(user=request.user, password=serializer.validated_data["password"])
        return Response(status=status.HTTP_204_NO_CONTENT)


PREFERENCES_RULES = (
    " Problems are reported per key, on `preferences.<key>` (`unknown_key`, `not_a_list`, `max_items`, "
    "`invalid_choice`, ...), or on `preferences` (`too_large`). The Agent receives the same state "
    "(removed values and keys included) shortly after."
)


class PreferencesView(APIView):
    @extend_schema(
        tags=[PROFILE], summary="The user's preferences", description="Keys never set are absent.",
        responses={200: PreferencesSerializer, 401: ERROR},
    )
    def get(self, request: Request) -> Response:
        return Response({"preferences": selectors.user_preferences_get(user=request.user)})

    @extend_schema(
        tags=[PROFILE],
        summary="Replace all preferences",
        description="The body is the whole new document; keys left out are removed. `{}` clears all."
        + PREFERENCES_RULES,
        request=PreferencesSerializer,
        responses={200: PreferencesSerializer, 400: ERROR, 401: ERROR, 413: ERROR},
        examples=[OpenApiExample("replace", value={"preferences": PREFERENCES_EXAMPLE}, request_only=True)],
    )
    def put(self, request: Request) -> Response:
        serializer = PreferencesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prefs = services.user_preferences_replace(user=request.user, **serializer.validated_data)
        return Response({"preferences": prefs.data})

    @extend_schema(
        tags=[PROFILE],
        summary="Change some preferences",
        description="Each key given replaces the stored value whole (send the full new list to add or remove "
        "one value); a key set to `null` is removed; keys not given are kept." + PREFERENCES_RULES,
        request=PreferencesPatchSerializer,
        responses={200: PreferencesSerializer, 400: ERROR, 401: ERROR, 413: ERROR},
        examples=[
            OpenApiExample(
                "deselect",
                value={"preferences": {"dietary": ["vegan"], "location_bias": None}},
                request_only=True,
            )
        ],
    )
    def patch(self, request: Request) -> Response:
        serializer = PreferencesPatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        prefs = services.user_preferences_update(user=request.user, **serializer.validated_data)
        return Response({"preferences": prefs.data})

    @extend_schema(
        tags=[PROFILE], summary="Clear all preferences", description="The same as PUT `{\"preferences\": {}}`.",
        request=None, responses={200: PreferencesSerializer, 401: ERROR},
    )
    def delete(self, request: Request) -> Response:
        prefs = services.user_preferences_replace(user=request.user, preferences={})
        return Response({"preferences": prefs.data})


# --- Service to service ------------------------------------------------------------------
class ValidateTokenView(APIView):
    """For the Agent: is this a live user token, and whose? Authenticated by `X-Service-Token`."""

    authentication_classes = []
    permission_classes = [HasServiceToken]

    @extend_schema(
        tags=[INTERNAL],
        summary="Validate a user token (for the Agent)",
        description="Service to service, not for the frontend: needs `X-Service-Token`.",
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
