"""The chaos run's own broker: the classic queues it kills are on the v2 index and come back.

A chaos run on CI once ended with a node that would not boot after a kill -9: RabbitMQ 3.10's
v1 queue index crashed recovering its journal (rabbit_queue_index:recover_journal). The test
brokers now put classic queues on the v2 index, the only one RabbitMQ 4 has."""
import uuid

import pika
import pytest

from agent_bridge.transports import rabbitmq as amqp
from tests.chaos.broker import OwnBroker, rabbitmq_missing_reason

pytestmark = [pytest.mark.e2e, pytest.mark.rabbitmq]

ENVELOPE = {"id": str(uuid.uuid4()), "type": "user.registered", "schema": 1, "occurred_at": "2026-01-01T00:00:00Z",
            "uid": str(uuid.uuid4()), "data": {}}


def index_version(broker: OwnBroker, queue: str) -> int:
    """The index version of a classic queue. A priority queue reports the sum over its
    per-priority queues, hence the division."""
    expression = (
        f'{{ok,Q}}=rabbit_amqqueue:lookup(rabbit_misc:r(<<"/">>,queue,<<"{queue}">>)),'
        "[{backing_queue_status,S}]=rabbit_amqqueue:info(Q,[backing_queue_status]),"
        "{proplists:get_value(version,S),length(proplists:get_value(priority_lengths,S,[none]))}."
    )
    total, queues = (int(part) for part in broker.rabbitmqctl("eval", expression).strip().strip("{}").split(","))
    return total // queues


def message_count(broker: OwnBroker, queue: str) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


def test_the_chaos_broker_keeps_classic_queues_on_the_v2_index_and_their_messages_across_a_kill() -> None:
    reason = rabbitmq_missing_reason()
    if reason:
        pytest.skip(f"starts its own broker node: {reason}")
    broker = OwnBroker().start()
    try:
        topology = amqp.Topology(prefix="kairos-index", partitions=1)
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        channel = connection.channel()
        amqp.topology_declare(channel, topology, queue_type="classic", retry_delays=[60])
        channel.confirm_delivery()
        amqp.envelope_publish_rollback_unsafe(channel, topology, ENVELOPE)
        connection.close()

        queues = [topology.work_queue(0), topology.retry_queue(60), topology.dead_queue]
        assert {queue: index_version(broker, queue) for queue in queues} == dict.fromkeys(queues, 2)

        broker.kill()
        broker.start()
        assert message_count(broker, topology.work_queue(0)) == 1
        assert index_version(broker, topology.work_queue(0)) == 2
    finally:
        broker.destroy()
