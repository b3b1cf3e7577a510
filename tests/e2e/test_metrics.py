"""Prometheus metrics over real processes: the API under two gunicorn workers (multiprocess
mode, project/gunicorn_conf.py) and the consumer's own metrics port."""
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import METRICS_TOKEN as TOKEN
from tests.e2e.harness import free_port, wait_for

pytestmark = pytest.mark.e2e

ROUTE = "api/health/live/"


def _samples(text: str, name: str, **labels: str) -> list[float]:
    return [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]


def _scrape(url: str) -> str:
    response = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def _per_worker_counts(metrics_dir) -> dict[str, float]:
    """Each worker's own count of ROUTE requests, read from its file of the multiprocess folder."""
    counts = {}
    for path in sorted(metrics_dir.glob("counter_*.db")):
        merged = MultiProcessCollector.merge([str(path)], accumulate=True)
        counts[path.name] = sum(
            sample.value for family in merged for sample in family.samples
            if sample.name == "kairos_http_requests_total" and sample.labels.get("route") == ROUTE
        )
    return counts


def test_metrics_under_two_gunicorn_workers_sum_both_workers_counts(stack_factory, tmp_path) -> None:
    metrics_dir = tmp_path / "prometheus"
    stack = stack_factory(extra_env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    assert requests.get(f"{stack.api_url}/metrics", timeout=10).status_code == 401  # never public

    sent = 0
    # Concurrent clients, a new connection each: both sync workers take requests. Keep sending
    # (bounded) until each worker's own file shows some, so the sum below really adds two.
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(10):
            codes = list(pool.map(lambda _: requests.get(f"{stack.api_url}/{ROUTE}", timeout=10).status_code,
                                  range(30)))
            assert set(codes) == {200}
            sent += len(codes)
            if sum(1 for count in _per_worker_counts(metrics_dir).values() if count > 0) >= 2:
                break
    per_worker = {name: count for name, count in _per_worker_counts(metrics_dir).items() if count > 0}
    assert len(per_worker) == 2, per_worker

    # Whichever worker answers the scrape, the figure is the sum of both.
    for _ in range(4):
        text = _scrape(stack.api_url)
        assert sum(_samples(text, "kairos_http_requests_total", route=ROUTE, method="GET", status="200")) == sent
        assert sum(_samples(text, "kairos_http_request_duration_seconds_count", route=ROUTE, method="GET")) == sent
    assert sum(per_worker.values()) == sent


def test_the_consumer_serves_its_delivery_metrics_on_its_own_port(stack_factory) -> None:
    port = free_port()
    stack = stack_factory()
    # The consumer alone gets the port (with AMQP_URL the relay runs too, from the same environment).
    stack.kill("consumer0")
    stack.env["METRICS_PORT"] = str(port)
    stack.start_consumer(0)
    del stack.env["METRICS_PORT"]
    body = {"username": "ada", "email": "ada@example.com", "password": "a-long-passphrase-42"}
    assert stack.api("POST", "/api/signup/", json=body).status_code == 201

    def delivered() -> str | None:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        found = _samples(text, "kairos_bus_deliveries_total", type="user.registered", outcome="delivered")
        return text if found else None

    text = wait_for(delivered, timeout=60, what="the consumer's delivery counter")
    assert _samples(text, "kairos_bus_commit_to_agent_seconds_count", type="user.registered") == [1.0]
    assert _samples(text, "kairos_agent_request_duration_seconds_count", endpoint="POST /users/{uid}", status="201")
    # The bus state comes from the API's /metrics (one source, read from the database).
    stack.wait_drained()
    api = _scrape(stack.api_url)
    assert sum(_samples(api, "kairos_bus_backlog")) == 0
    assert "kairos_bus_oldest_undelivered_age_seconds" in api
