"""Probes for load balancers and orchestrators: public, and saying only up or down.

- `GET /api/health/live/`: the process answers (no database, no broker): restart it if not.
- `GET /api/health/ready/` (and `/api/health/`, kept for existing users): the database answers,
  in RabbitMQ mode the broker too (HEALTH_READY_BROKER), and Redis when REDIS_URL is set (the
  throttles count there): send it traffic if so.

Neither says anything a request can move. The bus figures (backlog, dead letters, per type) rise
when a signup, reset or resend names an existing account, so they would enumerate accounts:
they are for operators only (`manage.py bus_status`, the admin's operator page, /metrics).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, connection
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)

OK = "ok"
UNREACHABLE = "unreachable"
# A broker or Redis check opens a connection: probes every few seconds from several places must
# not turn into a connection storm, so one result serves this process for a while.
CHECK_CACHE_SECONDS = 5.0


UNAVAILABLE = "unavailable"
# One choice set per field name across the three answers (one enum each in the schema).
_STATUS = [OK, UNAVAILABLE]
DEPENDENCY_STATES = [OK, UNREACHABLE]


class LiveSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=_STATUS, help_text="Always `ok` when it answers.")


class ReadySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=_STATUS)
    database = serializers.ChoiceField(choices=DEPENDENCY_STATES)
    broker = serializers.ChoiceField(choices=DEPENDENCY_STATES, required=False, help_text="RabbitMQ mode only.")
    redis = serializers.ChoiceField(choices=DEPENDENCY_STATES, required=False, help_text="With REDIS_URL only.")


class NotReadySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=_STATUS)
    database = serializers.ChoiceField(choices=DEPENDENCY_STATES)
    broker = serializers.ChoiceField(choices=DEPENDENCY_STATES, required=False, help_text="RabbitMQ mode only.")
    redis = serializers.ChoiceField(choices=DEPENDENCY_STATES, required=False, help_text="With REDIS_URL only.")
    detail = serializers.CharField()
    code = serializers.ChoiceField(choices=["database_unavailable", "broker_unavailable", "redis_unavailable"])


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError as exc:
        logger.error("readiness: database unreachable (%s)", type(exc).__name__)
        return False
    return True


class _CachedCheck:
    """A dependency check whose answer serves this process for CHECK_CACHE_SECONDS."""

    def __init__(self, name: str, probe: Callable[[], None]) -> None:
        self.name, self._probe = name, probe
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._ok = False

    def __call__(self) -> bool:
        with self._lock:
            if time.monotonic() - self._checked_at >= CHECK_CACHE_SECONDS:
                try:
                    self._probe()
                    self._ok = True
                except Exception as exc:  # any failure to reach it means: not ready
                    logger.error("readiness: %s unreachable (%s)", self.name, type(exc).__name__)
                    self._ok = False
                self._checked_at = time.monotonic()
            return self._ok

    def forget(self) -> None:
        with self._lock:
            self._checked_at = float("-inf")


def _amqp_connect() -> None:
    # Imported here: only RabbitMQ mode checks a broker, and pika belongs to the transport.
    from agent_bridge.transports.rabbitmq import broker_ping

    broker_ping(timeout_seconds=2)


def _redis_ping() -> None:
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


broker_ok = _CachedCheck("broker", _amqp_connect)
redis_ok = _CachedCheck("redis", _redis_ping)


class _Probe(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


class LiveView(_Probe):
    """Liveness: the process serves requests. Touches neither the database nor the broker, so a
    database outage never gets healthy processes restarted."""

    @extend_schema(
        responses={200: LiveSerializer}, auth=[], tags=["internal"], summary="Liveness probe",
        description="For orchestrators, not the frontend: 200 while the process serves requests.",
    )
    def get(self, request: Request) -> Response:
        return Response({"status": OK})


class ReadyView(_Probe):
    """Readiness: 200 when the database answers (and the broker, in RabbitMQ mode with
    HEALTH_READY_BROKER); 503 otherwise. Says up or down, nothing else."""

    @extend_schema(
        responses={200: ReadySerializer, 503: OpenApiResponse(NotReadySerializer, "a dependency is unreachable")},
        auth=[],
        tags=["internal"],
        summary="Readiness probe",
        description="For load balancers, not the frontend: 200 while the database (and the broker, Redis where "
        "used) answer, else 503. Says up or down only.",
    )
    def get(self, request: Request) -> Response:
        body: dict[str, str] = {"database": OK if database_ok() else UNREACHABLE}
        if settings.AMQP_URL and settings.HEALTH_READY_BROKER:
            body["broker"] = OK if broker_ok() else UNREACHABLE
        if settings.REDIS_URL:
            body["redis"] = OK if redis_ok() else UNREACHABLE
        for name, what in (("database", "The database"), ("broker", "The message broker"), ("redis", "Redis")):
            if body.get(name, OK) != OK:
                body.update(status=UNAVAILABLE, detail=f"{what} is unreachable.", code=f"{name}_unavailable")
                return Response(NotReadySerializer(body).data, status=503)
        return Response(ReadySerializer({"status": OK, **body}).data)
