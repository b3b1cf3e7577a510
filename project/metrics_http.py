"""Where Prometheus reads the metrics: never from the public API.

- The API: `GET /metrics` on the API's port, only with `Authorization: Bearer <METRICS_TOKEN>`
  (404 while METRICS_TOKEN is unset: the endpoint is off). Under gunicorn it sums every
  worker's values (multiprocess mode) and adds the bus state read from the database.
- The daemons (`consume`, `relay`): their own HTTP server on METRICS_PORT (off when 0), bound
  to METRICS_ADDR (default 127.0.0.1): a port that is not the API's and is never published.
"""
from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Iterator

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 32


class BusStateCollector(Collector):
    """The bus as the database holds it, read at each scrape (a few aggregate queries)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db import DatabaseError

        from consumers.operations import bus_figures_get

        up = GaugeMetricFamily(
            "kairos_bus_state_up", "1 when this scrape could read the bus state from the database, else 0."
        )
        try:
            figures = bus_figures_get()
        except DatabaseError as exc:
            # The request metrics are still worth scraping while the database is away.
            logger.warning("metrics: the bus state is unreadable (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        backlog = GaugeMetricFamily("kairos_bus_backlog", "Events not yet delivered, by type.", labels=["type"])
        retrying = GaugeMetricFamily(
            "kairos_bus_retrying", "Undelivered events that failed at least once, by type.", labels=["type"]
        )
        oldest = GaugeMetricFamily(
            "kairos_bus_oldest_undelivered_age_seconds", "Age of the oldest undelivered event, by type.",
            labels=["type"],
        )
        for row in figures.types:
            backlog.add_metric([row.type], row.backlog)
            retrying.add_metric([row.type], row.retrying)
            oldest.add_metric([row.type], row.oldest_age_seconds)
        dead = GaugeMetricFamily(
            "kairos_bus_dead_letters", "Dead letters waiting for a replay, by event type and reason.",
            labels=["type", "reason"],
        )
        for group in figures.dead_letters:
            dead.add_metric([group.type, group.reason], group.count)
        yield from (backlog, retrying, oldest, dead)


class VerificationCollector(Collector):
    """Partitions owned per consumer, and the verification of the Agent's copy (coverage, read-backs
    open, drift found by kind), read from the database at each scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        from django.db import DatabaseError

        from agent_bridge.verification import verification_status_get
        from consumers.operations import partitions_get

        try:
            partitions = partitions_get()
            status = verification_status_get()
        except DatabaseError as exc:
            logger.warning("metrics: the verification state is unreadable (%s)", type(exc).__name__)
            return
        owned = GaugeMetricFamily(
            "kairos_bus_partitions_owned", "RabbitMQ partitions each consumer connection owns now.", labels=["consumer"]
        )
        counts: dict[str, int] = {}
        for partition in partitions:
            counts[partition.owner or "<none>"] = counts.get(partition.owner or "<none>", 0) + 1
        for consumer, count in sorted(counts.items()):
            owned.add_metric([consumer], count)
        drift = CounterMetricFamily(
            "kairos_verification_drift_found", "Differences found between the Agent's copy and ours, by kind.",
            labels=["kind"],
        )
        for kind, count in sorted(status["drift"].items()):
            drift.add_metric([kind], count)
        never = GaugeMetricFamily("kairos_verification_never_verified_users", "Users whose copy was never verified.")
        never.add_metric([], status["never_verified"])
        open_read_backs = GaugeMetricFamily(
            "kairos_verification_read_backs_open", "Users whose copy is being read back after an uncertain call."
        )
        open_read_backs.add_metric([], status["verifying"])
        yield from (owned, drift, never, open_read_backs)
        if status["oldest_verified_age_seconds"] is not None and status["never_verified"] == 0:
            # Every user was verified within this age: the time since the last full verification began.
            full = GaugeMetricFamily(
                "kairos_verification_oldest_verified_age_seconds",
                "Every user's copy was verified equal within this many seconds (absent while some never was).",
            )
            full.add_metric([], status["oldest_verified_age_seconds"])
            yield full


class _ThisProcess(Collector):
    """The metrics of this process alone (runserver, or a single worker without multiprocess mode)."""

    def collect(self) -> Iterator:
        yield from REGISTRY.collect()


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)  # every worker's files, summed
    else:
        registry.register(_ThisProcess())
    registry.register(BusStateCollector())
    registry.register(VerificationCollector())
    return registry


def _token_ok(request: HttpRequest) -> bool:
    presented = request.headers.get("Authorization", "")
    scheme, _, value = presented.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), settings.METRICS_TOKEN.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus text format; for the scraper only (a bearer token), never in the API schema."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse({"detail": f'Method "{request.method}" not allowed.', "code": "method_not_allowed"},
                                status=405)
        response["Allow"] = "GET, HEAD"
        return response
    token = settings.METRICS_TOKEN
    if len(token) < MIN_TOKEN_LENGTH:
        if token:
            logger.warning("METRICS_TOKEN is shorter than %d characters: /metrics stays off", MIN_TOKEN_LENGTH)
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    if not _token_ok(request):
        response = JsonResponse({"detail": "A valid metrics token is required.", "code": "not_authenticated"},
                                status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(_registry()), content_type=CONTENT_TYPE_LATEST)


def daemon_metrics_serve(*, process: str) -> int | None:
    """Serve this daemon's metrics on METRICS_PORT (no-op when 0); returns the port served.

    A port that cannot be bound is logged, not fatal: events matter more than their counts."""
    port = settings.METRICS_PORT
    if not port:
        return None
    try:
        server, _thread = start_http_server(port, addr=settings.METRICS_ADDR)
    except OSError as exc:
        logger.error("%s: cannot serve metrics on %s:%s (%s)", process, settings.METRICS_ADDR, port, exc)
        return None
    served = server.server_address[1]
    logger.info("%s: metrics on http://%s:%s/metrics", process, settings.METRICS_ADDR, served)
    return served
