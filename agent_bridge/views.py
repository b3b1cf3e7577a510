"""Thin API views over the interaction-history mirror: they never call the Agent."""
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_bridge import selectors, services
from agent_bridge.serializers import InteractionsPageSerializer, InteractionsQuerySerializer, MessageSerializer
from project.errors import ErrorSerializer

CLEAR_MESSAGE = "Your history is being cleared."


class InteractionsView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        parameters=[
            OpenApiParameter("limit", int, description="1 to 100, default 20"),
            OpenApiParameter("offset", int, description=">= 0, default 0"),
        ],
        responses={200: InteractionsPageSerializer, 400: ErrorSerializer, 401: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        query = InteractionsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        refreshing = services.interaction_mirror_refresh_request_if_stale(user=request.user)
        page = selectors.interaction_page_get(user=request.user, **query.validated_data)
        return Response(InteractionsPageSerializer({**page, "refreshing": refreshing}).data)

    @extend_schema(request=None, responses={202: MessageSerializer, 401: ErrorSerializer})
    def delete(self, request: Request) -> Response:
        services.interaction_history_clear(user=request.user)
        return Response({"message": CLEAR_MESSAGE}, status=status.HTTP_202_ACCEPTED)
