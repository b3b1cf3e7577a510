"""RabbitMQ: the topology on both queue types, heartbeats during a slow Agent call, and a broker
restart in the middle of a stream of events. Needs a broker (AMQP_URL)."""
import json
import os
import signal
import threading
import time
import uuid

import pika
import pytest

from agent_bridge.transports import rabbitmq as amqp
from tests.e2e.bus_helpers import agent_calls, bus, sentinel, services_script, uid_of, wait_drained
from tests.e2e.harness import wait_for
from tests.e2e.helpers import signup

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

ENVELOPE = {"id": str(uuid.uuid4()), "type": "user.registered", "schema": 1, "occurred_at": "2026-01-01T00:00:00Z",
            "uid": str(uuid.uuid4()), "data": {}}


@pytest.fixture
def channel(settings):
    settings.AMQP_URL = os.environ["AMQP_URL"]
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    declared: list[amqp.Topology] = []
    yield connection.channel(), declared
    cleanup = connection.channel()
    for topology in declared:
        amqp.topology_delete(cleanup, topology, retry_delays=[1])
    connection.close()


def get(channel, queue: str, timeout: float = 10):
    """The next message of `queue`, left unacked (TTL and dead-lettering take a moment).

    Consumed, not basic_get: partition queues are single-active-consumer queues, and quorum
    ones refuse basic.get."""
    channel.basic_qos(prefetch_count=1)
    for method, properties, body in channel.consume(queue, inactivity_timeout=timeout):
        channel.cancel()
        if method is None:
            raise TimeoutError(f"no message in {queue} after {timeout}s")
        return method, properties, body
    raise AssertionError("unreachable")


def empty(channel, queue: str) -> bool:
    return channel.queue_declare(queue, passive=True).method.message_count == 0


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_topology_routes_retries_back_and_rejections_to_the_dead_queue(channel, settings, queue_type) -> None:
    channel, declared = channel
    settings.AMQP_DELIVERY_LIMIT = 2
    topology = amqp.Topology(prefix=f"kairos-test-topo-{uuid.uuid4().hex[:8]}")
    declared.append(topology)
    amqp.topology_declare(channel, topology, queue_type=queue_type, retry_delays=[1])
    amqp.topology_declare(channel, topology, queue_type=queue_type, retry_delays=[1])  # idempotent
    channel.confirm_delivery()

    amqp.envelope_publish_rollback_unsafe(channel, topology, ENVELOPE)
    method, properties, body = get(channel, topology.work_queue(0))
    assert json.loads(body) == ENVELOPE and amqp.attempt_of(properties) == 1
    assert properties.delivery_mode == pika.DeliveryMode.Persistent.value
    channel.basic_ack(method.delivery_tag)

    # a delayed retry comes back to the work queue after its TTL, as the next attempt
    amqp.envelope_publish_retry_rollback_unsafe(channel, topology, ENVELOPE, attempt=2, delay_seconds=1)
    assert empty(channel, topology.work_queue(0))
    method, properties, _ = get(channel, topology.work_queue(0))
    assert amqp.attempt_of(properties) == 2

    # a rejected message is not dropped: it lands in the dead queue, with the reason
    channel.basic_reject(method.delivery_tag, requeue=False)
    method, properties, body = get(channel, topology.dead_queue)
    assert json.loads(body)["id"] == ENVELOPE["id"] and amqp.death_reason(properties) == "rejected"
    channel.basic_ack(method.delivery_tag)


def test_a_quorum_work_queue_dead_letters_at_the_delivery_limit_instead_of_dropping(channel, settings) -> None:
    channel, declared = channel
    settings.AMQP_DELIVERY_LIMIT = 2
    topology = amqp.Topology(prefix=f"kairos-test-limit-{uuid.uuid4().hex[:8]}")
    declared.append(topology)
    amqp.topology_declare(channel, topology, queue_type="quorum", retry_delays=[1])
    channel.confirm_delivery()
    amqp.envelope_publish_rollback_unsafe(channel, topology, ENVELOPE)

    for _ in range(3):  # a poison message: every consumer that takes it gives it back
        method, _, _ = get(channel, topology.work_queue(0))
        channel.basic_nack(method.delivery_tag, requeue=True)

    method, properties, body = get(channel, topology.dead_queue)
    assert json.loads(body)["id"] == ENVELOPE["id"]
    assert amqp.death_reason(properties) == "delivery_limit"
    assert empty(channel, topology.work_queue(0))


def test_heartbeats_survive_a_handler_slower_than_two_heartbeats(stack_factory) -> None:
    stack = stack_factory(extra_env={"AMQP_HEARTBEAT_SECONDS": "1", "AGENT_TIMEOUT_SECONDS": "15"})
    stack.agent.fault(latency_ms=5000, fail_count=1)

    signup(stack, "slow@example.com")
    uid = uid_of(stack, "slow@example.com")
    wait_for(lambda: stack.agent.user(uid), timeout=40, what="the slow call to deliver")
    wait_drained(stack)
    sentinel(stack, "slow@example.com")  # a redelivery of her event would come before this one

    assert len(agent_calls(stack, uid=uid, method="POST")) == 1  # never redelivered
    consumer_log = (stack.workdir / "consumer0.log").read_text()
    assert "connection lost" not in consumer_log
    assert "outcome=delivered" in consumer_log


@pytest.mark.skipif(not os.environ.get("KAIROS_SERVICES_SCRIPT"),
                    reason="restarts the broker: needs KAIROS_SERVICES_SCRIPT (scripts/services.sh env, .ci/run)")
def test_restarting_rabbitmq_mid_stream_loses_nothing(stack_factory) -> None:
    """Restarts the broker of this run (scripts/services.sh, KAIROS_* environment): other test
    runs on the same broker see a blip."""
    stack = stack_factory()
    emails = [f"user{i}@example.com" for i in range(24)]
    done = threading.Event()

    def stream() -> None:
        for email in emails:
            signup(stack, email)
            time.sleep(0.15)  # a pace, not a wait: the stream must still be flowing when the broker restarts
        done.set()

    writer = threading.Thread(target=stream)
    writer.start()
    wait_for(lambda: len(stack.agent.state()["users"]) >= 4, timeout=30, what="the stream to flow")
    services_script("restart-rabbitmq")
    writer.join(timeout=120)
    assert done.is_set()

    wait_for(lambda: len(stack.agent.state()["users"]) == len(emails), timeout=90, interval=0.5,
             what="every user at the Agent")
    status = wait_drained(stack, timeout=60)
    assert status["dead_letters"] == 0
    logs = (stack.workdir / "relay.log").read_text() + (stack.workdir / "consumer0.log").read_text()
    assert "broker connection lost" in logs  # the restart did happen under the daemons
    assert stack.processes["relay"].poll() is None and stack.processes["consumer0"].poll() is None
    assert bus(stack)["backlog"] == 0


def test_a_message_the_broker_dead_letters_becomes_a_visible_dead_letter(stack) -> None:
    signup(stack, "first@example.com")  # the daemons are up and have declared the topology
    wait_for(lambda: stack.agent.state()["users"], timeout=30, what="the first event delivered")
    connection = pika.BlockingConnection(pika.URLParameters(stack.amqp_url))
    try:
        publisher = connection.channel()
        publisher.confirm_delivery()
        publisher.basic_publish(f"{stack.prefix}.events", "p0.user.registered", b"not json at all",
                                properties=pika.BasicProperties(message_id="garbage-1", type="user.registered"),
                                mandatory=True)
    finally:
        connection.close()

    wait_for(lambda: bus(stack)["dead_letters"] == 1, timeout=30, what="the rejected message recorded")
    result = stack.manage("replay_dead_letters", check=False)
    assert result.returncode != 0 and "not an event envelope" in result.stdout
    assert bus(stack)["dead_letters"] == 1  # kept for a human to look at


def partition_owners(stack) -> dict[str, str]:
    script = (
        "from agent_bridge.models import PartitionLease as P; import json; from django.utils import timezone as t; "
        "print(json.dumps({p.name: p.owner for p in P.objects.filter(name__contains='.work.', owner__gt='', "
        "expires_at__gt=t.now())}))"
    )
    return json.loads(stack.manage("shell", "-c", script).stdout.strip().splitlines()[-1])


def test_two_consumers_share_the_partitions_and_a_standby_takes_over(stack_factory) -> None:
    """Single-active-consumer queues never move by themselves: the consumers hand partitions over
    until each has its fair share, and a killed consumer's partitions go to the other."""
    stack = stack_factory(consumers=2, extra_env={"BUS_CONSUMER_CONNECTIONS": "1", "AMQP_PARTITIONS": "4"})
    count = 0

    def spread() -> bool:
        nonlocal count
        for _ in range(4):  # traffic on every partition, so each new owner takes its lease
            count += 1
            signup(stack, f"user{count}@example.com", username=f"user{count}")
        owners = list(partition_owners(stack).values())
        return len(owners) == 4 and sorted(owners.count(owner) for owner in set(owners)) == [2, 2]

    wait_for(spread, timeout=90, interval=1, what="the partitions shared 2 + 2")
    stack.kill("consumer0", signal.SIGKILL)

    def taken_over() -> bool:
        spread()  # more traffic
        owners = partition_owners(stack)
        return len(owners) == 4 and len(set(owners.values())) == 1

    wait_for(taken_over, timeout=90, interval=1, what="the survivor owning all four")
    wait_drained(stack)
    assert len(stack.agent.state()["users"]) == count
