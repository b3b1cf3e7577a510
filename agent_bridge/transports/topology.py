"""The names of the RabbitMQ topology (see agent_bridge.transports.rabbitmq), importable without
Django so that test harnesses and benchmarks can clean up after themselves."""
import zlib
from dataclasses import dataclass

import pika

from agent_bridge.events import Envelope


@dataclass(frozen=True)
class Topology:
    prefix: str
    partitions: int = 1

    @property
    def exchange(self) -> str:
        return f"{self.prefix}.events"

    def work_queue(self, partition: int) -> str:
        return f"{self.prefix}.work.{partition}"

    @property
    def work_queues(self) -> list[str]:
        return [self.work_queue(n) for n in range(self.partitions)]

    @property
    def dead_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.prefix}.dead"

    def retry_queue(self, delay_seconds: float) -> str:
        return f"{self.prefix}.delay.{int(delay_seconds)}s"

    def partition_of(self, uid: str | None) -> int:
        """A stable hash of the uid (crc32: the same in every process and release)."""
        return zlib.crc32(str(uid or "").encode()) % self.partitions

    def routing_key(self, envelope: Envelope) -> str:
        return f"p{self.partition_of(envelope.get('uid'))}.{envelope['type']}"


def topology_delete(
    channel: pika.adapters.blocking_connection.BlockingChannel, topology: Topology, *, retry_delays: list[int]
) -> None:
    """Delete what topology_declare made (throwaway prefixes: tests, benchmarks)."""
    for delay in retry_delays:
        channel.queue_delete(topology.retry_queue(delay))
        channel.exchange_delete(topology.retry_queue(delay))
    for queue in (*topology.work_queues, topology.dead_queue):
        channel.queue_delete(queue)
    for exchange in (topology.exchange, topology.dead_exchange):
        channel.exchange_delete(exchange)
