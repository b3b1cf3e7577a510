"""Thin API views: validate with a serializer, call one service, shape the answer."""
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from allergies import selectors, services
from allergies.selectors import AllergyState
from allergies.serializers import (
    AllergyHistoryPageSerializer,
    AllergyHistoryQuerySerializer,
    AllergyProfileInputSerializer,
    AllergyProfileMessageOutputSerializer,
    AllergyProfileOutputSerializer,
)
from identity.serializers import ErrorSerializer

UPDATED_MESSAGE = "Allergy profile updated."
CLEARED_MESSAGE = "Allergy profile cleared."


def profile_render(state: AllergyState, message: str | None = None) -> dict:
    """The answer of GET/PUT /api/allergies/ for `state` (also the export's allergy profile)."""
    data = {
        "confirmed": state.confirmed,
        "intolerances": state.intolerances,
        "severity": state.severity,
        "allergy_flags": state.allergy_flags,
        "revision": state.revision,
        "updated_at": state.updated_at,
        "sync": state.sync,
    }
    if message is None:
        return AllergyProfileOutputSerializer(data).data
    return AllergyProfileMessageOutputSerializer({**data, "message": message}).data


class AllergyProfileView(APIView):
    """The user's allergy profile; every answer carries its sync state with the Agent."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: AllergyProfileOutputSerializer, 401: ErrorSerializer})
    def get(self, request: Request) -> Response:
        return Response(profile_render(selectors.allergy_profile_get(user=request.user)))

    @extend_schema(
        request=AllergyProfileInputSerializer,
        responses={200: AllergyProfileMessageOutputSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def put(self, request: Request) -> Response:
        serializer = AllergyProfileInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        state = services.allergy_profile_replace(user=request.user, session=request.auth, **serializer.validated_data)
        return Response(profile_render(state, UPDATED_MESSAGE))

    @extend_schema(request=None, responses={200: AllergyProfileMessageOutputSerializer, 401: ErrorSerializer})
    def delete(self, request: Request) -> Response:
        state = services.allergy_profile_clear(user=request.user, session=request.auth)
        return Response(profile_render(state, CLEARED_MESSAGE))


class AllergyHistoryView(APIView):
    """Every kept revision of the profile: what changed, when, from which session."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[
            OpenApiParameter("limit", int, description="1 to 100, default 20"),
            OpenApiParameter("offset", int, description=">= 0, default 0"),
        ],
        responses={200: AllergyHistoryPageSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        query = AllergyHistoryQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = selectors.allergy_history_page_get(user=request.user, **query.validated_data)
        return Response(AllergyHistoryPageSerializer(page).data)
