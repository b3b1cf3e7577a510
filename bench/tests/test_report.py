"""bench.report: issue 12's targets — ceilings, matrix ratios, verdicts (no servers, no timing)."""
import pytest

from bench import report


def _results(**over) -> dict:
    results = {
        "bus_settings": {"BUS_CONSUMER_CONCURRENCY": 4, "AMQP_PARTITIONS": 4, "source": "settings"},
        "raw": {
            "pika": {"rate": 2000.0, "consumed": 3000, "messages": 3000, "prefetch": 10},
            # sequential: not the ceiling of a consumer with 4 calls in flight
            "http": {"rate": 1000.0, "requests": 1000, "p50_ms": 0.9},
            "http_concurrent": {"rate": 500.0, "concurrency": 4, "processes": 1, "threads": 4, "requests": 2000},
            "http_concurrent_by_consumers": {
                "1": {"rate": 500.0, "concurrency": 4, "processes": 1, "threads": 4, "requests": 2000},
                "2": {"rate": 900.0, "concurrency": 8, "processes": 2, "threads": 4, "requests": 2000},
            },
        },
        "bus": {
            "embedded_1": {"transport": "embedded", "consumers": 1, "partitions": None,
                           "burst": {"events_per_s": 300.0},
                           "latency": {"p50_ms": 8.0, "p99_ms": 60.0, "rate_per_s": 8.0}},
            "rabbitmq_c1_p4": {"transport": "rabbitmq", "consumers": 1, "partitions": 4,
                               "burst": {"events_per_s": 420.0},
                               "latency": {"p50_ms": 9.0, "p99_ms": 20.0, "rate_per_s": 8.0}},
            "rabbitmq_c2_p4": {"transport": "rabbitmq", "consumers": 2, "partitions": 4,
                               "burst": {"events_per_s": 630.0}, "ownership": {"balanced": True}},
            "rabbitmq_c1_p1": {"transport": "rabbitmq", "consumers": 1, "partitions": 1,
                               "burst": {"events_per_s": 100.0}},
        },
        "queries_per_event": {"batch": 50, "rabbitmq": {"per_event": 3.2,
                                                        "per_event_by_process": {"consumer0": 3.0, "relay": 0.2}}},
        "fairness": {
            "embedded": {"flood": {"events_queued": 2000}, "latency": {"p50_ms": 20.0, "p99_ms": 900.0},
                         "flood_drain": {"drained": True, "drain_s": 3.0}, "flood_agent_calls": 2},
            "rabbitmq": {"flood": {"events_queued": 2000}, "latency": {"p50_ms": 300.0, "p99_ms": 1200.0},
                         "flood_drain": {"drained": False, "left": 10}, "flood_agent_calls": 1990},
        },
    }
    results.update(over)
    return results


def _rows(results: dict) -> dict[str, dict]:
    return {row["target"]: row for row in report.evaluate(results)}


def _row(results: dict, startswith: str) -> dict:
    matches = [row for name, row in _rows(results).items() if name.startswith(startswith)]
    assert len(matches) == 1, [r["target"] for r in report.evaluate(results)]
    return matches[0]


def test_the_ceiling_is_raw_http_at_the_consumers_concurrency_not_the_sequential_figure():
    row = _row(_results(), "RabbitMQ bus, 1 consumer (4 partitions)")
    assert row["value"] == pytest.approx(420 / 500)  # min(pika 2000, http at 4 in flight 500)
    assert row["verdict"] == "met"
    assert "4 in flight" in row["detail"]
    embedded = _row(_results(), "Embedded bus, 1 consumer")
    assert embedded["value"] == pytest.approx(300 / 500) and embedded["verdict"] == "MISSED"


def test_pika_is_the_ceiling_when_it_is_lower():
    results = _results()
    results["raw"]["pika"]["rate"] = 450.0
    assert _row(results, "RabbitMQ bus, 1 consumer")["value"] == pytest.approx(420 / 450)


def test_without_the_concurrent_http_ceiling_the_target_is_not_measured_rather_than_held_to_the_sequential_one():
    results = _results()
    del results["raw"]["http_concurrent"], results["raw"]["http_concurrent_by_consumers"]
    assert _row(results, "RabbitMQ bus, 1 consumer")["verdict"] == "not measured"
    assert _row(results, "Embedded bus, 1 consumer")["verdict"] == "not measured"


def test_the_headline_cell_follows_the_default_partitions():
    results = _results(bus_settings={"BUS_CONSUMER_CONCURRENCY": 4, "AMQP_PARTITIONS": 1})
    row = _row(results, "RabbitMQ bus, 1 consumer (1 partitions)")
    assert row["value"] == pytest.approx(100 / 500) and row["verdict"] == "MISSED"


def test_matrix_ratios_to_one_consumer_on_the_same_partitions_and_to_the_ceiling_at_the_same_concurrency():
    rows = {r["name"]: r for r in report.matrix_rows(_results())}
    two = rows["rabbitmq_c2_p4"]
    assert two["over_one"] == pytest.approx(630 / 420)
    assert two["ceiling"] == 900.0  # raw HTTP with 2 processes × 4 in flight
    assert two["over_ceiling"] == pytest.approx(630 / 900)
    assert rows["rabbitmq_c1_p1"]["over_one"] == 1.0


def test_statements_per_event_target_is_three_on_the_amqp_path():
    assert _row(_results(), "Statements per event")["verdict"] == "MISSED"
    results = _results()
    results["queries_per_event"]["rabbitmq"]["per_event"] = 2.5
    assert _row(results, "Statements per event")["verdict"] == "met"


def test_fairness_p99_target_is_one_second_on_each_bus():
    assert _row(_results(), "Fairness, embedded")["verdict"] == "met"
    rabbit = _row(_results(), "Fairness, rabbitmq")
    assert rabbit["verdict"] == "MISSED" and "not drained, 10 left" in rabbit["detail"]
    assert "2,000 events queued" in rabbit["target"]


def test_propagation_targets_are_ten_and_fifty_ms():
    rows = _rows(_results())
    assert rows["Propagation p50, embedded_1"]["verdict"] == "met"
    assert rows["Propagation p99, embedded_1"]["verdict"] == "MISSED"  # 60 ms > 50
    assert rows["Propagation p99, rabbitmq_c1_p4"]["verdict"] == "met"
    assert rows["Propagation p50, rabbitmq_c2_p4"]["verdict"] == "not measured"


def _point(users: int, rate: float, p99: float) -> dict:
    return {"users": users, "history_rows": users * 3, "insert_s": 0.0,
            "embedded_1": {"burst": {"events_per_s": rate}, "latency": {"p50_ms": 5.0, "p99_ms": p99}}}


def test_growth_is_judged_at_one_million_users_against_the_smallest_size():
    results = _results(growth={"points": [_point(1000, 100.0, 10.0), _point(10_000, 95.0, 11.0),
                                          _point(1_000_000, 70.0, 12.0)]})
    rate = _row(results, "Growth, embedded_1: events/s")
    assert rate["value"] == pytest.approx(0.7) and rate["verdict"] == "MISSED"
    p99 = _row(results, "Growth, embedded_1: p99")
    assert p99["value"] == pytest.approx(1.2) and p99["verdict"] == "met"
    ratios = [g for g in report.growth_ratios(results) if g["users"] == 10_000]
    assert ratios[0]["rate_ratio"] == pytest.approx(0.95)


def test_growth_that_stopped_short_of_one_million_is_not_measured_and_says_so():
    results = _results(growth={"points": [_point(1000, 100.0, 10.0), _point(100_000, 100.0, 10.0)]})
    row = _row(results, "Growth, embedded_1: events/s")
    assert row["verdict"] == "not measured" and "1,000,000 not reached" in row["detail"]


def test_the_report_renders_the_bus_sections_from_partial_results():
    text = report.markdown(_results(), [], "")
    assert "BUS_CONSUMER_CONCURRENCY=4" in text
    assert "| rabbitmq_c2_p4 | 2 | 4 | 630.0 | 1.50 | 0.70 | – |" in text
    assert "## Fairness" in text and "not in the cap (10 left)" in text
