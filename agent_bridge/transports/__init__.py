"""The transport protocol: what the one consumer loop (consumers.runners.Consumer) needs of a bus.

Two implementations: `embedded.EmbeddedTransport` (the outbox table is the queue) and
`rabbitmq.RabbitTransport` (RabbitMQ work queue, retry queues and dead-letter queue). Both record
state through agent_bridge.outbox, the owner of every outbox and dead-letter write.
"""
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from agent_bridge.delivery import Outcome
from agent_bridge.events import Envelope

T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    envelope: Envelope
    attempt: int  # counting from 1
    tag: Any  # the transport's own handle: an outbox pk, an AMQP delivery tag
    traceparent: str | None = None  # W3C trace context of the request that raised the event


class Transport(Protocol):
    name: str

    def open(self) -> None:
        """Connect (and declare what needs declaring); raise on failure."""

    def close(self) -> None: ...

    def next(self) -> Delivery | None:
        """The next delivery, or None after waiting a little for one."""

    def run(self, delivery: Delivery, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a handler for `delivery`, keeping the transport (heartbeats, ownership) alive."""

    def ownership_for(self, envelope: Envelope) -> AbstractContextManager:
        """Held around a handler: makes this consumer the only one talking to the Agent about the
        event's user (embedded: the user's lease; RabbitMQ: nothing more, the partition is ours)."""

    def ack(self, delivery: Delivery) -> None:
        """Delivered or skipped: settle it for good."""

    def retry_later(self, delivery: Delivery, outcome: Outcome) -> None:
        """Failed for now: deliver it again (as attempt + 1) after `outcome.retry_after` seconds."""

    def dead_letter(self, delivery: Delivery, outcome: Outcome) -> None:
        """Failed for good: record a dead letter and settle it."""

    def housekeeping(self) -> None:
        """Periodic work between deliveries (e.g. recording the broker's dead letters)."""
