"""GET /api/health/: readiness plus the bus figures; 503 JSON when the database is gone."""
from unittest import mock

import pytest
from django.db import OperationalError, connection

from agent_bridge import events
from agent_bridge.models import OutboxEvent

pytestmark = pytest.mark.django_db


def test_health_answers_the_bus_figures_without_credentials(api_client) -> None:
    OutboxEvent.objects.create(type=events.USER_REGISTERED)

    response = api_client.get("/api/health/")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["database"]) == ("ok", "ok")
    assert body["backlog"] == 1 and body["dead_letters"] == 0 and body["retrying"] == 0
    assert isinstance(body["oldest_pending_age_seconds"], int)
    assert body["by_type"] == {events.USER_REGISTERED: {"backlog": 1, "retrying": 0, "dead_letters": 0}}


def test_health_is_503_json_when_the_database_is_unreachable(api_client) -> None:
    with mock.patch.object(connection, "cursor", side_effect=OperationalError("could not connect to server")):
        response = api_client.get("/api/health/")

    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {
        "status": "unavailable",
        "database": "unreachable",
        "detail": "The database is unreachable.",
        "code": "database_unavailable",
    }
