"""The transport protocol: what the one consumer loop (consumers.runners.Consumer) needs of a bus.

Two implementations: `embedded.EmbeddedTransport` (the outbox table is the queue) and
`rabbitmq.RabbitTransport` (RabbitMQ partition queues, retry queues and dead-letter queue). Both
record state through agent_bridge.outbox, the owner of every outbox and dead-letter write.

The consumer keeps up to BUS_CONSUMER_CONCURRENCY handlers in flight, one per user: it asks the
transport for *runs* (one user's deliveries, in that user's order) of users it is not already
busy with, hands each run to a worker thread, and gives the outcomes back to the transport in
batches (`settle`), on its own thread (the one that owns the broker connection).
"""
from collections.abc import Callable, Collection
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Protocol, TypeVar

from agent_bridge.delivery import Outcome
from agent_bridge.events import Envelope

T = TypeVar("T")


@dataclass(frozen=True)
class Delivery:
    envelope: Envelope
    attempt: int  # counting from 1
    tag: Any  # the transport's own handle: an embedded claim, an AMQP delivery tag
    traceparent: str | None = None  # W3C trace context of the request that raised the event
    # Later deliveries of the same user and type that this one's handler call delivers too
    # (coalesced: the handler sends the state read when it runs); settled with it.
    covered: tuple["Delivery", ...] = ()
    # An earlier delivery of this event may have died mid-handler (RabbitMQ: redelivered after
    # its consumer's connection went; embedded: claimed again after a lapsed claim): an Agent
    # write of it may have been sent with no answer recorded, and may still land.
    taken_over: bool = False

    @cached_property  # read for every message in hand on every take
    def user(self) -> str:
        """Whose events must be handled one at a time, in order (an event without a user is its own)."""
        uid = self.envelope.get("uid")
        return str(uid) if uid else f"event:{self.envelope.get('id')}"


Run = list[Delivery]  # one user's deliveries, in the order they must be handled
Settled = tuple[Delivery, Outcome]


class Transport(Protocol):
    name: str

    def open(self) -> None:
        """Connect (and declare what needs declaring); raise on failure."""

    def close(self) -> None: ...

    def take(self, *, users: int, busy: Collection[str]) -> list[Run]:
        """Runs of up to `users` users not in `busy` (users with work in flight here), allergy
        events' users first; waits a little for work when `busy` is empty."""

    def wait(self, futures: Collection[Future], *, timeout: float) -> None:
        """Until one of `futures` is done, new work may be there, or `timeout`: keeps the
        transport (heartbeats) alive meanwhile."""

    def run(self, delivery: Delivery, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """On a worker thread: run a handler for `delivery`, keeping its ownership alive."""

    def ownership_for(self, envelope: Envelope) -> AbstractContextManager:
        """Held around a handler: makes this consumer the only one talking to the Agent about the
        event's user (embedded: the user's lease; RabbitMQ: nothing more, the partition is ours)."""

    def settle(self, settled: list[Settled]) -> None:
        """Record the outcomes (delivered and skipped ones in one statement; a retry later or a
        dead letter per event, covered deliveries included), then acknowledge them."""

    def housekeeping(self) -> None:
        """Periodic work between takes (e.g. recording the broker's dead letters)."""
