"""Thin API views over the interaction-history mirror: they never call the Agent."""
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agent_bridge import selectors, services
from agent_bridge.serializers import InteractionsPageSerializer, InteractionsQuerySerializer, MessageSerializer
from agent_bridge.throttles import InteractionsRefreshThrottle
from project.errors import ErrorSerializer

CLEAR_MESSAGE = "Your history is being cleared."
TAG = "interactions"


class InteractionsView(APIView):
    permission_classes = [IsAuthenticated]
    throttle_classes = [InteractionsRefreshThrottle]

    @extend_schema(
        tags=[TAG],
        summary="The chat history",
        description=(
            "Newest first, from a local copy of the Agent's history, refreshed in the background when older "
            "than a few minutes (`refreshing: true` while that runs). `refresh=1` asks for a fetch now "
            "(throttled per user: 429 `throttled` with `Retry-After`)."
        ),
        parameters=[
            OpenApiParameter("limit", int, description="1 to 100, default 20"),
            OpenApiParameter("offset", int, description=">= 0, default 0"),
            OpenApiParameter("refresh", bool, description="Fetch from the Agent now (e.g. after a chat)."),
        ],
        responses={200: InteractionsPageSerializer, 400: ErrorSerializer, 401: ErrorSerializer, 429: ErrorSerializer},
    )
    def get(self, request: Request) -> Response:
        query = InteractionsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        refresh = query.validated_data.pop("refresh")
        refreshing = services.interaction_mirror_refresh_request_if_stale(user=request.user, force=refresh)
        page = selectors.interaction_page_get(user=request.user, **query.validated_data)
        return Response(InteractionsPageSerializer({**page, "refreshing": refreshing}).data)

    @extend_schema(
        tags=[TAG], summary="Clear the chat history", description="Here at once, at the Agent shortly after.",
        request=None, responses={202: MessageSerializer, 401: ErrorSerializer},
    )
    def delete(self, request: Request) -> Response:
        services.interaction_history_clear(user=request.user)
        return Response({"message": CLEAR_MESSAGE}, status=status.HTTP_202_ACCEPTED)
