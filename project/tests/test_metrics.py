"""The metrics API: HTTP requests by resolver route (never the raw path), deliveries, and the
bus state collected from the database at scrape time."""
import pytest
from prometheus_client import REGISTRY

from agent_bridge import events
from agent_bridge import outbox as bus_owner
from agent_bridge.delivery import Cause
from agent_bridge.models import OutboxEvent
from project import metrics

pytestmark = pytest.mark.django_db
TOKEN = "metrics-token-" + "x" * 32


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_requests_are_counted_by_route_pattern_method_and_status(api_client) -> None:
    labels = {"route": "api/verify/<str:token>/", "method": "GET", "status": "400"}
    before = value("kairos_http_requests_total", **labels)

    api_client.get("/api/verify/a-secret-token-value/")
    api_client.get("/api/verify/another-one/")

    assert value("kairos_http_requests_total", **labels) == before + 2
    assert value("kairos_http_request_duration_seconds_count", route=labels["route"], method="GET") >= 2


def test_unmatched_paths_and_odd_methods_share_bounded_labels(api_client) -> None:
    unmatched = {"route": metrics.UNMATCHED_ROUTE, "method": "GET", "status": "404"}
    before = value("kairos_http_requests_total", **unmatched)

    for path in ("/nope/1", "/nope/2", "/api/users/%00"):
        api_client.get(path)
    metrics.http_request_observe(route=None, method="BREW", status=405, seconds=0.01)

    assert value("kairos_http_requests_total", **unmatched) == before + 3
    assert value("kairos_http_requests_total", route=metrics.UNMATCHED_ROUTE, method="other", status="405") >= 1
    assert not [s for f in REGISTRY.collect() for s in f.samples if "/nope/" in str(s.labels)]


def test_deliveries_retries_and_propagation() -> None:
    t = events.ALLERGIES_REPLACED
    before = [value("kairos_bus_deliveries_total", type=t, outcome="retry"), value("kairos_bus_retries_total", type=t),
              value("kairos_bus_commit_to_agent_seconds_count", type=t)]

    metrics.delivery_observe(event_type=t, outcome=metrics.DeliveryOutcome.RETRY, commit_age_seconds=1.0)
    metrics.delivery_observe(event_type=t, outcome=metrics.DeliveryOutcome.DELIVERED, commit_age_seconds=3.0)

    assert value("kairos_bus_deliveries_total", type=t, outcome="retry") == before[0] + 1
    assert value("kairos_bus_retries_total", type=t) == before[1] + 1
    assert value("kairos_bus_commit_to_agent_seconds_count", type=t) == before[2] + 1  # deliveries only


def test_a_dead_letter_is_counted_once_however_often_it_is_recorded() -> None:
    before = value("kairos_bus_dead_letters_recorded_total", type=events.USER_REGISTERED)
    row = OutboxEvent.objects.create(type=events.USER_REGISTERED)
    for _ in range(2):
        bus_owner.dead_letter_record(
        cause=Cause.AGENT_PERMANENT, envelope=row.envelope, attempts=1, reason="AgentAuthError 401 X: no")

    assert value("kairos_bus_dead_letters_recorded_total", type=events.USER_REGISTERED) == before + 1


def test_the_scrape_reports_the_bus_state_from_the_database(client, settings) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    settings.METRICS_TOKEN = TOKEN
    OutboxEvent.objects.create(type=events.USER_REGISTERED)
    OutboxEvent.objects.create(type=events.USER_REGISTERED)
    row = OutboxEvent.objects.create(type=events.PREFERENCES_UPDATED)
    bus_owner.dead_letter_record(
        cause=Cause.AGENT_PERMANENT, envelope=row.envelope, attempts=3, reason="AgentUnavailable 503 DOWN: on PATCH /x")

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }
    assert samples[("kairos_bus_backlog", (("type", events.USER_REGISTERED),))] == 2
    assert ("kairos_bus_oldest_undelivered_age_seconds", (("type", events.USER_REGISTERED),)) in samples
    dead = ("kairos_bus_dead_letters", (("reason", "AgentUnavailable 503 DOWN"), ("type", events.PREFERENCES_UPDATED)))
    assert samples[dead] == 1


def test_the_endpoint_answers_json_to_other_methods(client, settings) -> None:
    settings.METRICS_TOKEN = TOKEN
    response = client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    assert response["Allow"] == "GET, HEAD"


def test_a_scrape_while_the_database_is_down_still_answers(client, settings) -> None:
    from unittest import mock

    from django.db import OperationalError, connection

    settings.METRICS_TOKEN = TOKEN
    with mock.patch.object(connection, "cursor", side_effect=OperationalError("gone")):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    text = response.content.decode()
    assert "kairos_bus_state_up 0.0" in text and "kairos_http_requests_total" in text
    assert "kairos_bus_backlog{" not in text


def test_the_scrape_reports_partitions_owned_and_verification(client, settings, verified_user) -> None:
    from datetime import timedelta

    from django.utils import timezone
    from prometheus_client.parser import text_string_to_metric_families

    from agent_bridge.models import AgentDriftCount, PartitionLease

    settings.METRICS_TOKEN = TOKEN
    later = timezone.now() + timedelta(seconds=30)
    PartitionLease.objects.create(name="kairos.work.0", owner="host:1:a", expires_at=later)
    PartitionLease.objects.create(name="kairos.work.1", owner="host:1:a", expires_at=later)
    PartitionLease.objects.create(name="kairos.work.2", owner="host:2:b", expires_at=later)
    PartitionLease.objects.create(name="kairos.work.3", owner="host:3:gone", expires_at=timezone.now())  # lapsed
    AgentDriftCount.objects.create(kind=AgentDriftCount.Kind.ALLERGIES, count=3)

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }
    owned = "kairos_bus_partitions_owned"
    assert samples[(owned, (("consumer", "host:1:a"),))] == 2
    assert samples[(owned, (("consumer", "host:2:b"),))] == 1
    assert samples[(owned, (("consumer", "<none>"),))] == 1
    assert samples[("kairos_verification_drift_found_total", (("kind", "allergies"),))] == 3
    assert samples[("kairos_verification_drift_found_total", (("kind", "leftover"),))] == 0
    assert samples[("kairos_verification_never_verified_users", ())] == 1  # verified_user, never checked
    # Some user was never verified: no "every user verified within" figure yet.
    assert not any(name == "kairos_verification_oldest_verified_age_seconds" for name, _ in samples)
