"""Account management API: email change, sessions, notification settings, data export.

Thin views like identity.views: validate, call one service or selector, shape the answer.
docs/accounts.md describes each flow for frontend developers.
"""
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from identity import selectors, services, throttles
from identity.account_serializers import (
    AccountExportSerializer,
    EmailChangeInputSerializer,
    NotificationSettingsInputSerializer,
    NotificationSettingsSerializer,
    SessionListSerializer,
    TokenInputSerializer,
)
from identity.export import account_export_build
from identity.serializers import AccountMessageSerializer
from identity.views import ACCOUNT, ERROR, PublicAPIView

SESSIONS = "sessions"

EMAIL_CHANGE_MESSAGE = "If that address can be used, a confirmation link is on its way to it."
EMAIL_CHANGED_MESSAGE = "Email address changed."


class EmailChangeView(APIView):
    throttle_classes = throttles.EMAIL_CHANGE_THROTTLES

    @extend_schema(
        tags=[ACCOUNT],
        summary="Ask to change the email address",
        description=(
            "Needs the password. The same 202 whatever the address (free, another account's, your own): a "
            "link goes to a free address, and nothing changes until it is confirmed. Wrong password: "
            "`invalid_password` on `password`."
        ),
        request=EmailChangeInputSerializer,
        responses={202: AccountMessageSerializer, 400: ERROR, 401: ERROR, 429: ERROR},
        examples=[
            OpenApiExample(
                "change", value={"new_email": "ada.new@example.com", "password": "a-long-passphrase-42"},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request) -> Response:
        serializer = EmailChangeInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.email_change_request(user=request.user, **serializer.validated_data)
        return Response({"message": EMAIL_CHANGE_MESSAGE}, status=status.HTTP_202_ACCEPTED)


class EmailChangeConfirmView(PublicAPIView):
    """Public: the link may be opened on a device where the user is not signed in."""

    @extend_schema(
        tags=[ACCOUNT],
        summary="Confirm an email change",
        description=(
            "The token from the link mailed to the new address. Single use; any link that does not work "
            "(tampered, expired, used, replaced, address taken since) is 400 `invalid_token`."
        ),
        request=TokenInputSerializer,
        responses={200: AccountMessageSerializer, 400: ERROR},
    )
    def post(self, request: Request) -> Response:
        serializer = TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.email_change_confirm(token=serializer.validated_data["token"])
        return Response({"message": EMAIL_CHANGED_MESSAGE})


class SessionListView(APIView):
    @extend_schema(
        tags=[SESSIONS],
        summary="The live sessions",
        description="Newest first; `current` marks the session of this request's token. Never a secret.",
        responses={200: SessionListSerializer, 401: ERROR},
    )
    def get(self, request: Request) -> Response:
        sessions = selectors.session_list(user=request.user, current=request.auth)
        return Response(SessionListSerializer({"sessions": sessions}).data)


class SessionView(APIView):
    @extend_schema(
        tags=[SESSIONS],
        summary="End one session",
        description=(
            "Its token is refused from then on; ending the current one is a logout. Any id that is not a "
            "live session of yours (another user's included) is 404 `session_not_found`."
        ),
        request=None,
        responses={204: None, 401: ERROR, 404: ERROR},
    )
    def delete(self, request: Request, session_id: int) -> Response:
        services.session_end(user=request.user, session_id=session_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class NotificationSettingsView(APIView):
    @extend_schema(
        tags=[ACCOUNT],
        summary="Notification settings",
        description="Which optional mails the user gets: `new_device_login` (a sign-in from a new device).",
        responses={200: NotificationSettingsSerializer, 401: ERROR},
    )
    def get(self, request: Request) -> Response:
        return Response(selectors.user_notification_settings_get(user=request.user))

    @extend_schema(
        tags=[ACCOUNT],
        summary="Change notification settings",
        description="`new_device_login: false` stops the new-device login mail; security mails cannot be turned off.",
        request=NotificationSettingsInputSerializer,
        responses={200: NotificationSettingsSerializer, 400: ERROR, 401: ERROR},
    )
    def patch(self, request: Request) -> Response:
        serializer = NotificationSettingsInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_notifications_update(user=request.user, **serializer.validated_data)
        return Response(selectors.user_notification_settings_get(user=user))


class AccountExportView(APIView):
    throttle_classes = throttles.EXPORT_THROTTLES

    @extend_schema(
        tags=[ACCOUNT],
        summary="Download a copy of my data",
        description="One JSON document with everything held about the caller (docs/accounts.md describes each field).",
        responses={
            200: OpenApiResponse(AccountExportSerializer, description="A JSON file (Content-Disposition: attachment)."),
            401: ERROR,
            429: ERROR,
        }
    )
    def get(self, request: Request) -> HttpResponse:
        document = AccountExportSerializer(account_export_build(user=request.user, current=request.auth)).data
        filename = f"kairos-export-{timezone.now():%Y-%m-%d}.json"
        response = HttpResponse(
            json.dumps(document, cls=DjangoJSONEncoder, ensure_ascii=False, indent=2),
            content_type="application/json; charset=utf-8",
        )
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        # Health data: never kept by a browser or proxy cache.
        response["Cache-Control"] = "no-store"
        return response
