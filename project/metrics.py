"""Every Prometheus metric of the service, and the small typed API that records them.

Counters and histograms are recorded where things happen (the request middleware, the
consumer's delivery, the Agent client, dead-letter recording) and are cheap: each call is one
or two in-memory (or, under gunicorn, mmap) increments on a cached child. The state of the bus
(backlog, oldest undelivered age, dead letters) is not counted here: it is read from the
database when /metrics is scraped (project.metrics_http.BusStateCollector), so every process
agrees and nothing drifts.

Under gunicorn several workers serve the API: prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set by project/gunicorn_conf.py before the workers import this
module) keeps each worker's values in a file and /metrics sums them. This module imports no
Django, so the Agent client stays importable without it.

The metric names and labels are the contract with dashboards and alerts: docs/operations.md
lists each one.
"""
from __future__ import annotations

from enum import Enum
from typing import Final

from prometheus_client import Counter, Histogram

NAMESPACE: Final = "kairos"

# Seconds. Requests and Agent calls: 5 ms to 10 s; commit-to-Agent includes delayed retries.
_FAST_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_PROPAGATION_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# Labels are bounded: routes are the URLconf's patterns (not raw paths), methods a fixed set.
UNMATCHED_ROUTE: Final = "<unmatched>"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class DeliveryOutcome(Enum):
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    RETRY = "retry"
    DEAD = "dead"


HTTP_REQUESTS = Counter(
    "http_requests", "API requests answered, by URL route, method and status.",
    ["route", "method", "status"], namespace=NAMESPACE,
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds", "Time to answer an API request, by URL route and method.",
    ["route", "method"], namespace=NAMESPACE, buckets=_FAST_BUCKETS,
)
BUS_PUBLISHED = Counter(
    "bus_published", "Events the relay handed to RabbitMQ (confirmed), by type.", ["type"], namespace=NAMESPACE,
)
BUS_DELIVERIES = Counter(
    "bus_deliveries", "Delivery attempts by the consumer, by event type and outcome.",
    ["type", "outcome"], namespace=NAMESPACE,
)
BUS_RETRIES = Counter(
    "bus_retries", "Deliveries scheduled for a delayed retry, by event type.", ["type"], namespace=NAMESPACE,
)
BUS_DEAD_LETTERS = Counter(
    "bus_dead_letters_recorded", "Events that became dead letters, by event type.", ["type"], namespace=NAMESPACE,
)
BUS_COMMIT_TO_AGENT = Histogram(
    "bus_commit_to_agent_seconds",
    "From the event's commit (occurred_at) to its successful delivery, retries included, by event type.",
    ["type"], namespace=NAMESPACE, buckets=_PROPAGATION_BUCKETS,
)
AGENT_REQUEST_DURATION = Histogram(
    "agent_request_duration_seconds",
    "Agent HTTP calls by endpoint and status (an HTTP status, `timeout` or `connection_error`).",
    ["endpoint", "status"], namespace=NAMESPACE, buckets=_FAST_BUCKETS,
)

# Children cached by label values: `labels()` takes a lock and builds a key on every call,
# which is most of the cost on the request path.
_http_children: dict[tuple[str, str, int], tuple[object, object]] = {}


def http_request_observe(*, route: str | None, method: str, status: int, seconds: float) -> None:
    """One answered API request (`route`: the resolver's pattern, None when nothing matched)."""
    key = (route or UNMATCHED_ROUTE, method, status)
    children = _http_children.get(key)
    if children is None:
        label_method = method if method in _METHODS else "other"
        children = (
            HTTP_REQUESTS.labels(key[0], label_method, str(status)),
            HTTP_REQUEST_DURATION.labels(key[0], label_method),
        )
        _http_children[key] = children
    counter, histogram = children
    counter.inc()  # type: ignore[attr-defined]
    histogram.observe(seconds)  # type: ignore[attr-defined]


def event_published(*, event_type: str) -> None:
    BUS_PUBLISHED.labels(event_type).inc()


def delivery_observe(*, event_type: str, outcome: DeliveryOutcome, commit_age_seconds: float | None) -> None:
    """One delivery attempt; `commit_age_seconds` (time since the event's commit) for a delivery."""
    BUS_DELIVERIES.labels(event_type, outcome.value).inc()
    if outcome is DeliveryOutcome.RETRY:
        BUS_RETRIES.labels(event_type).inc()
    elif outcome is DeliveryOutcome.DELIVERED and commit_age_seconds is not None:
        BUS_COMMIT_TO_AGENT.labels(event_type).observe(max(0.0, commit_age_seconds))


def dead_letter_recorded(*, event_type: str) -> None:
    BUS_DEAD_LETTERS.labels(event_type or "unknown").inc()


def agent_request_observe(*, endpoint: str, status: int | str, seconds: float) -> None:
    """`endpoint`: method and path template, e.g. `PATCH /users/{uid}/allergies`."""
    AGENT_REQUEST_DURATION.labels(endpoint, str(status)).observe(seconds)
