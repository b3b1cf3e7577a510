import logging

from django.db import DatabaseError
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from consumers.selectors import bus_status_get

logger = logging.getLogger("consumers.health")


class _TypeFiguresSerializer(serializers.Serializer):
    backlog = serializers.IntegerField()
    retrying = serializers.IntegerField()
    dead_letters = serializers.IntegerField()


class HealthSerializer(serializers.Serializer):
    status = serializers.CharField()
    database = serializers.CharField()
    backlog = serializers.IntegerField(help_text="Events not yet delivered to the Agent.")
    oldest_pending_age_seconds = serializers.IntegerField(help_text="Age of the oldest undelivered event.")
    retrying = serializers.IntegerField(help_text="Undelivered events that failed at least once.")
    dead_letters = serializers.IntegerField()
    by_type = serializers.DictField(child=_TypeFiguresSerializer())


class HealthUnavailableSerializer(serializers.Serializer):
    status = serializers.CharField()
    database = serializers.CharField()
    detail = serializers.CharField()
    code = serializers.CharField()


class HealthView(APIView):
    """Liveness and readiness: the database is reachable, and the state of the bus.

    200 whenever the database answers (a backlog or dead letters are for dashboards and
    alerts, not a reason to take the API out of a load balancer); 503 when it does not.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        tags=["internal"],
        summary="Health of the API and the bus",
        description="For load balancers and monitoring, not the frontend: 200 while the database answers.",
        responses={200: HealthSerializer, 503: OpenApiResponse(HealthUnavailableSerializer, "database unreachable")},
        auth=[],
    )
    def get(self, request: Request) -> Response:
        try:
            figures = bus_status_get()
        except DatabaseError as exc:
            logger.error("health: database unreachable (%s)", type(exc).__name__)
            body = {
                "status": "unavailable",
                "database": "unreachable",
                "detail": "The database is unreachable.",
                "code": "database_unavailable",
            }
            return Response(HealthUnavailableSerializer(body).data, status=503)
        return Response(HealthSerializer({"status": "ok", "database": "ok", **figures}).data)
