"""The probes: liveness never touches the database, readiness fails when it (or, in RabbitMQ mode,
the broker) is unreachable; both answer JSON without credentials and reveal no figures."""
import os
from unittest import mock

import pytest
from django.db import OperationalError, connection

from project import health
from tests.e2e.harness import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_checks(settings):
    settings.REDIS_URL = ""
    for check in (health.broker_ok, health.redis_ok):
        check.forget()
    yield
    for check in (health.broker_ok, health.redis_ok):
        check.forget()


def _database_down():
    return mock.patch.object(connection, "cursor", side_effect=OperationalError("could not connect to server"))


@pytest.mark.parametrize("path", ["/api/health/ready/", "/api/health/"])
def test_readiness_answers_ok_without_credentials(api_client, path, settings) -> None:
    settings.AMQP_URL = ""
    response = api_client.get(path)

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/api/health/ready/", "/api/health/"])
def test_readiness_is_503_json_when_the_database_is_unreachable(api_client, path, settings) -> None:
    settings.AMQP_URL = ""
    with _database_down():
        response = api_client.get(path)

    assert response.status_code == 503
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {
        "status": "unavailable",
        "database": "unreachable",
        "detail": "The database is unreachable.",
        "code": "database_unavailable",
    }


def test_liveness_answers_while_the_database_is_unreachable(api_client, django_assert_num_queries) -> None:
    with _database_down(), django_assert_num_queries(0):
        response = api_client.get("/api/health/live/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readiness_needs_the_broker_in_rabbitmq_mode(api_client, settings) -> None:
    settings.AMQP_URL = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"  # nothing listens there

    response = api_client.get("/api/health/ready/")

    assert response.status_code == 503
    assert response.json()["broker"] == "unreachable" and response.json()["code"] == "broker_unavailable"
    assert api_client.get("/api/health/live/").status_code == 200

    settings.HEALTH_READY_BROKER = False
    assert api_client.get("/api/health/ready/").json() == {"status": "ok", "database": "ok"}


@pytest.mark.rabbitmq
def test_readiness_reports_a_reachable_broker(api_client, settings) -> None:
    import os

    settings.AMQP_URL = os.environ["AMQP_URL"]
    response = api_client.get("/api/health/ready/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_readiness_needs_redis_when_it_is_configured(api_client, settings) -> None:
    settings.AMQP_URL = ""
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    response = api_client.get("/api/health/ready/")

    assert response.status_code == 503
    assert response.json()["redis"] == "unreachable" and response.json()["code"] == "redis_unavailable"


def test_readiness_reports_a_reachable_redis(api_client, settings) -> None:
    import redis

    # The test Redis of the environment (scripts/services.sh env: port 6380; CI's second pass sets it).
    url = os.environ.get("REDIS_URL", "")
    if not url:
        pytest.skip("needs Redis: set REDIS_URL (scripts/services.sh env gives its test server's)")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError as exc:
        pytest.fail(f"REDIS_URL={url} is set but Redis does not answer: {exc}")
    settings.AMQP_URL, settings.REDIS_URL = "", url

    response = api_client.get("/api/health/ready/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}
