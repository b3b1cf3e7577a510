"""RabbitMQ: one consumer with several Agent calls in flight (BUS_CONSUMER_CONCURRENCY) keeps each
user's events serial and in order, and a user's queued run of state-carrying events is delivered
by one Agent call with every message it covers settled and acked. Needs a broker (AMQP_URL)."""
import itertools
import signal

import pika
import pytest

from tests.e2e.bus_helpers import agent_calls, bus, wait_drained
from tests.e2e.harness import wait_for
from tests.e2e.helpers import create_verified_user

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

LATENCY_S = 0.25


def queued(stack) -> int:
    """Messages in the partition queues (ready, or unacked by a consumer that is gone)."""
    connection = pika.BlockingConnection(pika.URLParameters(stack.amqp_url))
    try:
        channel = connection.channel()
        return sum(channel.queue_declare(f"{stack.prefix}.work.{n}", passive=True).method.message_count
                   for n in range(int(stack.env["AMQP_PARTITIONS"])))
    finally:
        connection.close()


def test_concurrent_deliveries_never_overlap_or_reorder_one_users_events(stack_factory) -> None:
    # One partition: every user's events share one queue and one consumer, so only the consumer's
    # own concurrency can put several Agent calls in flight.
    stack = stack_factory(extra_env={"BUS_CONSUMER_CONCURRENCY": "4", "AMQP_PARTITIONS": "1"})
    busy = create_verified_user(stack, email="busy@example.com", username="busy")
    others = [create_verified_user(stack, email=f"other{n}@example.com", username=f"other{n}") for n in range(3)]
    wait_drained(stack)
    stack.agent.fault(latency_ms=int(LATENCY_S * 1000))

    # The busy user alternates two types of one priority (nothing to coalesce), the others change once.
    for n in range(3):
        assert stack.api("PATCH", "/api/preferences/", token=busy.token,
                         json={"preferences": {"vibes": [f"v{n}"]}}).status_code == 200
        assert stack.api("DELETE", "/api/interactions/", token=busy.token).status_code == 202
    for user in others:
        assert stack.api("PATCH", "/api/preferences/", token=user.token,
                         json={"preferences": {"vibes": ["calm"]}}).status_code == 200
    wait_drained(stack, timeout=90)

    mine = [c for c in agent_calls(stack, uid=busy.uid) if c["method"] in ("PATCH", "DELETE")]
    # The user's order (a preferences event may make two calls: a reset, then the merge).
    assert [method for method, _ in itertools.groupby(c["method"] for c in mine)] == ["PATCH", "DELETE"] * 3
    starts = [c["timestamp"] for c in mine]
    assert all(b - a >= LATENCY_S * 0.9 for a, b in itertools.pairwise(starts))  # never overlapping
    # ...while other users' calls were in flight at the same time as the busy user's.
    theirs = [c["timestamp"] for u in others for c in agent_calls(stack, uid=u.uid, method="PATCH")]
    assert any(abs(t - s) < LATENCY_S * 0.9 for t in theirs for s in starts)
    assert bus(stack)["dead_letters"] == 0


def test_a_queued_run_of_preference_changes_is_one_agent_call_and_every_message_is_settled(stack_factory) -> None:
    stack = stack_factory()
    user = create_verified_user(stack, email="flood@example.com", username="flood")
    other = create_verified_user(stack, email="calm@example.com", username="calm")
    wait_drained(stack)
    stack.kill("consumer0", signal.SIGTERM)

    for n in range(30):
        assert stack.api("PATCH", "/api/preferences/", token=user.token,
                         json={"preferences": {"vibes": [f"v{n}"]}}).status_code == 200
    assert stack.api("PATCH", "/api/preferences/", token=other.token,
                     json={"preferences": {"vibes": ["calm"]}}).status_code == 200
    wait_for(lambda: queued(stack) == 31, timeout=30, what="the relay to publish the 31 events")
    before = len(agent_calls(stack, uid=user.uid, method="PATCH"))

    stack.agent.fault(latency_ms=int(LATENCY_S * 1000))
    stack.start_consumer(0)
    status = wait_drained(stack, timeout=60)

    assert status["dead_letters"] == 0 and status["backlog"] == 0  # all 30 rows settled...
    assert len(agent_calls(stack, uid=user.uid, method="PATCH")) - before <= 2  # ...by one call (two at worst)
    assert stack.agent.user(user.uid)["preferences"]["vibes"] == ["v29"]  # with the latest state
    stack.kill("consumer0", signal.SIGTERM)
    assert queued(stack) == 0  # ...and acked: nothing went back to the queue when the consumer left
