"""RabbitMQ transport: topology, publishing with confirms, and message properties.

Topology (names start with BUS_PREFIX, "kairos" by default; AMQP_PARTITIONS partitions):

    <p>.events  topic exchange ──p<n>.#──▶ <p>.work.<n> queues ──(rejected / delivery limit)──▶ <p>.dead
    <p>.delay.<N>s fanout exchange ──▶ <p>.delay.<N>s queue: TTL N s, then dead-lettered back to
                <p>.events with the message's own routing key, hence to its partition
    <p>.dead    fanout exchange ──▶ <p>.dead queue (recorded as DeadLetter rows by the consumer)

Events are routed `p<n>.<type>`, n a stable hash of the uid (`partition_of`), so all of a
user's events share one partition queue. Each partition queue has `x-single-active-consumer`:
the broker gives it to one consumer at a time (others wait as standbys), which is what orders a
user's events without a database lease per event; `leases.PartitionOwnership` fences the
hand-over. Classic partition queues have two priorities: allergy events (events.PRIORITY 0)
overtake the rest.

Every queue is durable, every message persistent, and no queue can drop a message on its own:
the partition queues dead-letter to <p>.dead, each delay queue dead-letters back to <p>.events, and
<p>.dead has neither a length limit, a TTL nor a delivery limit (it is always a classic queue,
because on RabbitMQ 4 a quorum queue gets a default delivery limit of 20 and would need a
dead-letter target of its own).

AMQP_QUEUE_TYPE chooses the type of the work and retry queues: `classic`, or `quorum`
(replicated; the production choice on RabbitMQ 4). Quorum queues dead-letter `at-least-once`
(which RabbitMQ only allows with `x-overflow: reject-publish`), so a message moving from a
retry queue back to the work queue, or from the work queue to <p>.dead after
AMQP_DELIVERY_LIMIT redeliveries, cannot be lost on the way. Classic queues dead-letter
at most once, which is acceptable for development brokers only.

A queue's arguments cannot change once declared: switching AMQP_QUEUE_TYPE on a broker that
already has the queues makes the declare fail (PRECONDITION_FAILED), and the runners log it.
"""
import contextlib
import enum
import hashlib
import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import pika
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

from agent_bridge import events
from agent_bridge import outbox as owner
from agent_bridge.delivery import Cause, Status
from agent_bridge.events import Envelope
from agent_bridge.leases import RENEWER, WORKER_ID, Membership, PartitionOwnership
from agent_bridge.timing import BusTiming
from agent_bridge.transports import Delivery, Run, Settled
from agent_bridge.transports.topology import Topology, topology_delete  # noqa: F401 - part of this module's API

logger = logging.getLogger(__name__)
T = TypeVar("T")
DEAD_QUEUE_CHECK_SECONDS = 5.0

ATTEMPT_HEADER = "x-kairos-attempt"
TRACE_HEADER = "traceparent"  # W3C trace context (project.tracing), as OpenTelemetry's AMQP propagators name it
# pika errors after which a fresh connection is the way on.
CONNECTION_ERRORS = (
    pika.exceptions.AMQPConnectionError,
    pika.exceptions.AMQPChannelError,
    pika.exceptions.StreamLostError,
    pika.exceptions.ConnectionClosed,
    ConnectionError,
)
QUEUE_TYPES = ("classic", "quorum")
HIGH_PRIORITY = 1  # message priority of allergy events on classic partition queues
# The broker refused one message (a nack, or no queue took it): the others may still go.
PUBLISH_REFUSED = (pika.exceptions.NackError, pika.exceptions.UnroutableError)
CONFIRM_TIMEOUT_SECONDS = 30.0  # a broker that takes longer is treated as lost: the batch stays pending


def topology_from_settings() -> Topology:
    return Topology(prefix=settings.BUS_PREFIX, partitions=max(1, settings.AMQP_PARTITIONS))


def connect(*, name: str) -> pika.BlockingConnection:
    """Open a connection to the broker.

    The heartbeat is AMQP_HEARTBEAT_SECONDS; callers that block for longer than that (a slow
    Agent call) must keep calling `connection.sleep()` or `process_data_events()`.
    """
    params = pika.URLParameters(settings.AMQP_URL)
    params.heartbeat = settings.AMQP_HEARTBEAT_SECONDS
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    params.socket_timeout = 10
    params.client_properties = {"connection_name": name}
    return pika.BlockingConnection(params)


def broker_ping(*, timeout_seconds: float = 2.0) -> None:
    """Open and close a connection (the readiness probe); raises what `connect` raises."""
    params = pika.URLParameters(settings.AMQP_URL)
    params.connection_attempts = 1
    params.socket_timeout = params.blocked_connection_timeout = timeout_seconds
    params.client_properties = {"connection_name": "kairos-readiness"}
    pika.BlockingConnection(params).close()


def connection_close_quietly(connection: pika.BlockingConnection | None) -> None:
    """Close a connection that may already be broken (after a broker restart)."""
    if connection is None:
        return
    try:
        if connection.is_open:
            connection.close()
    except Exception:  # noqa: S110 - the connection is being thrown away either way
        pass


def _queue_arguments(queue_type: str, **extra: object) -> dict:
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"AMQP_QUEUE_TYPE must be one of {QUEUE_TYPES}, not {queue_type!r}")
    arguments: dict = {"x-queue-type": queue_type, **extra}
    if queue_type == "quorum" and "x-dead-letter-exchange" in arguments:
        arguments.update({"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"})
    return arguments


def topology_declare(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    topology: Topology,
    *,
    queue_type: str | None = None,
    retry_delays: list[int] | None = None,
) -> None:
    """Declare exchanges, queues and bindings; safe to run at every start."""
    queue_type = queue_type or settings.AMQP_QUEUE_TYPE
    delays = settings.BUS_RETRY_DELAYS_SECONDS if retry_delays is None else retry_delays
    channel.exchange_declare(topology.exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(topology.dead_exchange, exchange_type="fanout", durable=True)
    channel.queue_declare(topology.dead_queue, durable=True, arguments={"x-queue-type": "classic"})
    channel.queue_bind(topology.dead_queue, topology.dead_exchange)

    work_extra: dict = {"x-dead-letter-exchange": topology.dead_exchange, "x-single-active-consumer": True}
    if queue_type == "quorum":
        # RabbitMQ 3 quorum queues have no limit unless told; RabbitMQ 4 defaults to 20. Either
        # way a message redelivered this often (a poison message crashing consumers) goes to
        # <p>.dead rather than round in circles.
        work_extra["x-delivery-limit"] = settings.AMQP_DELIVERY_LIMIT
    else:
        work_extra["x-max-priority"] = HIGH_PRIORITY
    for partition in range(topology.partitions):
        queue = topology.work_queue(partition)
        channel.queue_declare(queue, durable=True, arguments=_queue_arguments(queue_type, **work_extra))
        channel.queue_bind(queue, topology.exchange, routing_key=f"p{partition}.#")

    for delay in delays:
        name = topology.retry_queue(delay)
        channel.exchange_declare(name, exchange_type="fanout", durable=True)
        channel.queue_declare(
            name,
            durable=True,
            arguments=_queue_arguments(
                queue_type,
                **{"x-message-ttl": int(delay * 1000), "x-dead-letter-exchange": topology.exchange},
            ),
        )
        channel.queue_bind(name, name)


def _properties(envelope: Envelope, attempt: int, traceparent: str | None = None) -> pika.BasicProperties:
    payload = events.PAYLOADS.get(envelope["type"])
    headers: dict = {ATTEMPT_HEADER: attempt}
    if traceparent:
        headers[TRACE_HEADER] = traceparent
    return pika.BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=envelope["id"],
        type=envelope["type"],
        priority=HIGH_PRIORITY if payload is not None and payload.PRIORITY == 0 else 0,
        headers=headers,
    )


def envelope_publish_rollback_unsafe(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    topology: Topology,
    envelope: Envelope,
    *,
    attempt: int = 1,
    traceparent: str | None = None,
) -> None:
    """Publish an event to the work exchange; the channel must be in confirm mode. Once the broker
    has it, no database rollback takes it back: publish only what is committed.

    Returns once the broker confirmed; raises NackError on a nack and UnroutableError when no
    queue took the message (mandatory).
    """
    channel.basic_publish(
        topology.exchange,
        topology.routing_key(envelope),
        json.dumps(envelope).encode(),
        properties=_properties(envelope, attempt=attempt, traceparent=traceparent),
        mandatory=True,
    )


def _nothing() -> None:
    pass


class Confirm(enum.Enum):
    """What the broker answered for one message of a batch."""

    ACKED = "acked"  # durably taken (persistent message, durable queue: written or replicated)
    NACKED = "nacked"  # refused (e.g. a quorum queue without a quorum, or reject-publish)
    RETURNED = "returned"  # mandatory and no queue is bound for its routing key


@dataclass(frozen=True)
class Publication:
    envelope: Envelope
    attempt: int = 1
    traceparent: str | None = None
    exchange: str | None = None  # None: the work exchange; a retry goes to its delay queue's


class BatchPublisher:
    """Publishes a batch to the work exchange with one wait for the broker's confirms.

    `BlockingChannel.confirm_delivery()` makes every `basic_publish` wait for its own confirm: one
    broker round trip per message. Here the confirm mode is set on pika's asynchronous channel
    under the BlockingChannel (`channel._impl`, pika's documented layering: BlockingChannel drives
    a `pika.channel.Channel`), so a batch is written in one go and the acks and nacks (`multiple`
    covers every earlier delivery tag) are collected by tag while the connection processes frames.
    An AMQP transaction (tx.select/tx.commit) would also cost one round trip per batch, and the
    broker completes a commit only once every queue has confirmed, so it is as durable; but when a
    queue refuses one message the whole commit fails ("partial tx completion", channel closed)
    without saying which one, so a single refused message would hold the whole batch back.
    Confirms name each refused message, which then simply stays pending.

    A basic.return of an unroutable mandatory message always precedes its ack, so it is known
    by the time the batch is settled. The channel must not also be put in blocking confirm mode;
    its other methods (declares, basic_get) stay usable.
    """

    def __init__(self, connection: pika.BlockingConnection,
                 channel: pika.adapters.blocking_connection.BlockingChannel) -> None:
        self.connection = connection
        self.channel = channel
        self._impl = channel._impl  # pika's asynchronous channel: see the class docstring
        self._last_tag = 0  # the broker numbers a confirm-mode channel's publishes from 1
        self._open: dict[int, Confirm | None] = {}  # delivery tag -> answer (None: not yet)
        self._tag_of_message: dict[str, int] = {}
        self.waits = 0  # how many times a batch waited for the broker (tests, diagnostics)
        self._done: Callable[[], bool] | None = None  # what the current wait is waiting for
        selected: list[object] = []

        def on_select_ok(frame: pika.frame.Method) -> None:
            selected.append(frame)
            self._wake_if_done()

        self._impl.add_on_return_callback(self._on_return)
        self._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=on_select_ok)
        self._wait_until(lambda: bool(selected))

    def publish_rollback_unsafe(self, topology: Topology, publications: list[Publication]) -> list[Confirm]:
        """Publish every message, then wait once for all their confirms; the answers are in the
        order of `publications`. Once the broker has a message no database rollback takes it
        back: publish only what is committed. Raises a CONNECTION_ERRORS error if the channel
        or connection is lost meanwhile (then nothing of the batch counts as confirmed)."""
        tags = []
        for publication in publications:
            self._last_tag += 1
            tag = self._last_tag
            self._open[tag] = None
            self._tag_of_message[publication.envelope["id"]] = tag
            tags.append(tag)
            self.channel.basic_publish(
                publication.exchange or topology.exchange,
                topology.routing_key(publication.envelope),
                json.dumps(publication.envelope).encode(),
                properties=_properties(publication.envelope, attempt=publication.attempt,
                                       traceparent=publication.traceparent),
                mandatory=True,
            )
        try:
            self.waits += 1
            self._wait_until(lambda: all(self._open[tag] is not None for tag in tags))
            return [self._open[tag] for tag in tags]  # type: ignore[misc]
        finally:
            for tag, publication in zip(tags, publications, strict=True):
                self._open.pop(tag, None)
                self._tag_of_message.pop(publication.envelope["id"], None)

    def _wait_until(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + CONFIRM_TIMEOUT_SECONDS
        self._done = done
        try:
            while not done():
                if not self._impl.is_open:
                    raise pika.exceptions.ChannelClosed(-1, "channel closed while waiting for confirms")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise pika.exceptions.AMQPConnectionError(f"no confirm within {CONFIRM_TIMEOUT_SECONDS}s")
                # Returns at the time limit or once _wake_if_done has queued its event.
                self.connection.process_data_events(time_limit=min(remaining, 1.0))
        finally:
            self._done = None

    def _wake_if_done(self) -> None:
        # The asynchronous channel's callbacks are invisible to process_data_events, which
        # returns early only for an event of the BlockingConnection: queue an empty one.
        if self._done is not None and self._done():
            self._done = None
            self.connection.call_later(0, _nothing)

    def _on_confirm(self, frame: pika.frame.Method) -> None:
        method = frame.method
        answer = Confirm.ACKED if isinstance(method, pika.spec.Basic.Ack) else Confirm.NACKED
        tags = [t for t in self._open if t <= method.delivery_tag] if method.multiple else [method.delivery_tag]
        for tag in tags:
            # A returned message stays RETURNED unless the broker also nacked it.
            current = self._open.get(tag, Confirm.ACKED)  # a tag not open is not this batch's
            if current is None or (current is Confirm.RETURNED and answer is Confirm.NACKED):
                self._open[tag] = answer
        self._wake_if_done()

    def _on_return(self, _channel, _method, properties: pika.BasicProperties, _body: bytes) -> None:
        # Marked now, answered by the ack that follows: _on_confirm keeps RETURNED.
        tag = self._tag_of_message.get(properties.message_id or "")
        if tag is not None and tag in self._open:
            self._open[tag] = Confirm.RETURNED


class RetryNotParked(pika.exceptions.AMQPError):
    """The broker did not confirm a retry into its delay queue: the settle stops before its acks."""


def envelope_publish_retry_rollback_unsafe(
    channel: pika.adapters.blocking_connection.BlockingChannel,
    topology: Topology,
    envelope: Envelope,
    *,
    attempt: int,
    delay_seconds: float,
    traceparent: str | None = None,
) -> None:
    """Park an event in the delay queue of `delay_seconds`; it comes back to its partition as
    attempt `attempt` (the routing key it keeps decides where)."""
    channel.basic_publish(
        topology.retry_queue(delay_seconds),
        topology.routing_key(envelope),
        json.dumps(envelope).encode(),
        properties=_properties(envelope, attempt=attempt, traceparent=traceparent),
        mandatory=True,
    )


def attempt_of(properties: pika.BasicProperties) -> int:
    headers = properties.headers or {}
    try:
        return max(1, int(headers.get(ATTEMPT_HEADER, 1)))
    except (TypeError, ValueError):
        return 1


def traceparent_of(properties: pika.BasicProperties) -> str | None:
    value = (properties.headers or {}).get(TRACE_HEADER)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value if isinstance(value, str) else None


def death_reason(properties: pika.BasicProperties) -> str:
    """Why the broker dead-lettered a message (`rejected`, `delivery_limit`, `expired`...)."""
    deaths = (properties.headers or {}).get("x-death") or []
    if deaths and isinstance(deaths[0], dict):
        reason = deaths[0].get("reason", "unknown")
        return reason.decode() if isinstance(reason, bytes) else str(reason)
    return "unknown"


def envelope_from(body: bytes) -> Envelope | None:
    """The event envelope in a message body, or None if it is not one we can settle
    (every id we store is a UUID: anything else would fail at the database, again and again)."""
    try:
        envelope = json.loads(body)
        if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str):
            return None
        if not 0 < len(envelope["type"]) <= 64:  # DeadLetter.type and OutboxEvent.type hold 64
            return None
        uuid.UUID(str(envelope.get("id")))
        if envelope.get("uid") is not None:
            uuid.UUID(str(envelope["uid"]))
    except (ValueError, TypeError, UnicodeDecodeError):
        return None
    return envelope


def _wake(connection_: pika.BlockingConnection) -> None:
    """Interrupt the connection's event loop from another thread (pika's one thread-safe call).
    If the connection is already gone, the waiting loop notices on its own."""
    with contextlib.suppress(pika.exceptions.ConnectionWrongStateError, pika.exceptions.StreamLostError):
        connection_.add_callback_threadsafe(lambda: None)


def _check_database() -> None:
    """Raise DatabaseError unless the database answers (before taking messages off the broker)."""
    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


@dataclass(frozen=True)
class Tag:
    """A message's handle: its delivery tag on the consuming channel and its partition."""

    delivery_tag: int
    partition: int


def _covered_too(delivery: Delivery) -> list[Delivery]:
    return [delivery, *delivery.covered]


def runs_of(inbox: list[Delivery], *, users: int, busy: Collection[str], skip_partition: int | None = None
            ) -> tuple[list[Run], list[Delivery]]:
    """Split the messages in hand into runs of up to `users` users not in `busy` (each user's
    messages in arrival order, which is the partition's order) and the rest, kept in order.

    Runs of users with an allergy event come first; a user's own messages are never reordered.
    Messages of `skip_partition` (being handed over) are all kept.
    """
    urgent: list[str] = []  # users with an allergy event in hand, in order of arrival
    others: dict[str, None] = {}
    for delivery in inbox:
        user = delivery.user
        if delivery.tag.partition == skip_partition or user in busy:
            continue
        if delivery.envelope["type"] in events.HIGH_PRIORITY_TYPES:
            if user not in urgent:
                urgent.append(user)
                if len(urgent) >= users:
                    break  # enough users: the rest of the inbox cannot come before these
        else:
            others[user] = None
    chosen = [*urgent, *(user for user in others if user not in urgent)][:max(0, users)]
    runs: dict[str, Run] = {user: [] for user in chosen}
    kept: list[Delivery] = []
    for delivery in inbox:
        run = runs.get(delivery.user) if delivery.tag.partition != skip_partition else None
        (run if run is not None else kept).append(delivery)
    return list(runs.values()), kept


class RabbitTransport:
    """The partition queues with manual acks: a message is acked only once its outcome is recorded.

    It consumes every partition queue; the broker delivers only from those where this consumer
    is the single active one (AMQP_PREFETCH messages each). Before the first message of a
    partition it takes the partition's lease (`PartitionOwnership`), held until the connection's
    work is over, so handlers need no per-user lease here. Messages wait in `_inbox` until their
    user has no handler in flight; handlers run on the consumer's worker threads while this
    thread (the only one touching pika) keeps the connection's heartbeats going and acks.
    While a message is held its settle deadline is renewed, so the relay never publishes again
    an event that is only queued behind its user's earlier ones.
    """

    name = "rabbitmq"

    def __init__(self, *, stop, timing: BusTiming) -> None:
        self.stop = stop
        self.timing = timing
        self.topology = topology_from_settings()
        self.connection: pika.BlockingConnection | None = None
        self.ownership: PartitionOwnership | None = None
        self._inbox: list[Delivery] = []
        self._in_hand: dict[int, Delivery] = {}  # delivery tag → taken, not yet settled
        # Delivery tags received and not yet acked, nacked or rejected, in the order received.
        self._unacked: dict[int, None] = {}
        # Settled, their ack held back until the earlier messages still in hand settle too (one
        # ack with `multiple` then covers them all); at most `_ack_defer_limit` of them.
        self._ack_deferred: set[int] = set()
        self._ack_defer_limit = max(1, settings.AMQP_PREFETCH // 2)
        self._held_lock = threading.Lock()
        self._renewal: contextlib.ExitStack | None = None
        self._partition_of_tag: dict[str, int] = {}
        self._draining: int | None = None  # a partition being handed to a standby
        self._watched: set[Future] = set()
        self._dead_checked = 0.0

    def open(self) -> None:
        # Without a database no message can be settled: taking them off the broker would only
        # add to their redelivery count (and a quorum queue dead-letters at the limit).
        _check_database()
        self.connection = connect(name=f"kairos-consumer {WORKER_ID}")
        self.channel = self.connection.channel()
        topology_declare(self.channel, self.topology)
        self.channel.basic_qos(prefetch_count=settings.AMQP_PREFETCH)
        # Retries of one settle are parked together, with one wait for their confirms.
        self.publisher = BatchPublisher(self.connection, self.connection.channel())
        self.dead_channel = self.connection.channel()
        self.ownership = PartitionOwnership()
        self.membership = Membership(prefix=self.topology.prefix, owner=self.ownership.owner)
        self.membership.join()
        with self._held_lock:
            self._inbox, self._in_hand, self._unacked, self._ack_deferred = [], {}, {}, set()
        self._draining = None
        self._renewal = contextlib.ExitStack()
        self._renewal.enter_context(RENEWER.hold(self._renew_held))
        self._tag_of_partition: dict[int, str] = {}
        for partition in range(self.topology.partitions):
            self._subscribe(partition)
        self.housekeeping(force=True)

    def _renew_held(self) -> None:
        """On the renewer's thread: the messages this consumer holds are not lost, only waiting."""
        with self._held_lock:
            ids = [d.envelope["id"] for d in self._inbox] + [d.envelope["id"] for d in self._in_hand.values()]
        owner.outbox_settle_deadline_extend(event_ids=ids, timing=self.timing)

    def _subscribe(self, partition: int) -> None:
        tag = self.channel.basic_consume(self.topology.work_queue(partition), self._on_message)
        self._partition_of_tag[tag] = partition
        self._tag_of_partition[partition] = tag

    def _rebalance(self) -> None:
        """Give up one partition when this connection owns more than its fair share.

        The broker never moves a single-active-consumer queue by itself, so the first consumer to
        subscribe would keep every partition. The partition's messages in hand are no longer
        handed out; once its handlers in flight are settled (`_hand_over`), cancelling hands the
        queue to the next waiting consumer, and subscribing again puts this one at the back as a
        standby.
        """
        if self._draining is not None:
            return
        owned = [n for n in range(self.topology.partitions) if self.ownership.holds(self.topology.work_queue(n))]
        fair = -(-self.topology.partitions // self.membership.members())
        if len(owned) > fair:
            self._draining = owned[-1]
            logger.info("consumer gives partition %s to a standby (fair share %s)", owned[-1], fair)

    def _hand_over(self) -> None:
        partition = self._draining
        if partition is None or any(d.tag.partition == partition for d in self._in_hand.values()):
            return  # the next owner must never overtake a handler of ours with a newer state
        self._ack_deferred_flush()  # acked on this channel before the next owner can be handed them again
        tag = self._tag_of_partition.pop(partition)
        self.channel.basic_cancel(tag)  # pika nacks what it had not dispatched yet
        with self._held_lock:
            mine = [d for d in self._inbox if d.tag.partition == partition]
            self._inbox = [d for d in self._inbox if d.tag.partition != partition]
        for delivery in mine:
            self.channel.basic_nack(delivery.tag.delivery_tag, requeue=True)
            self._unacked.pop(delivery.tag.delivery_tag, None)
        self.ownership.release(self.topology.work_queue(partition))
        self._draining = None
        logger.info("consumer gave partition %s to a standby", partition)
        self._subscribe(partition)

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        envelope = envelope_from(body)
        if envelope is None:
            logger.error("rejecting malformed message %s to the dead-letter queue", properties.message_id)
            self.channel.basic_reject(method.delivery_tag, requeue=False)
            return
        self._unacked[method.delivery_tag] = None
        delivery = Delivery(
            envelope=envelope,
            attempt=attempt_of(properties),
            tag=Tag(method.delivery_tag, self._partition_of_tag.get(method.consumer_tag, 0)),
            traceparent=traceparent_of(properties),
            taken_over=bool(method.redelivered),
        )
        with self._held_lock:
            self._inbox.append(delivery)

    def close(self) -> None:
        # The consumer settled its handlers in flight before: only now may the partitions go,
        # so the next owner never overtakes them with a newer state of the same user.
        if self._renewal is not None:
            self._renewal.close()
            self._renewal = None
        if self._ack_deferred and self.connection is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):  # unacked, they come again: at least once
                self._ack_deferred_flush()
        if self.ownership is not None:
            close_old_connections()  # after a database error: free the partitions on a fresh connection
            with contextlib.suppress(DatabaseError):
                self.ownership.release_all()
            with contextlib.suppress(DatabaseError):
                self.membership.leave()
        connection_close_quietly(self.connection)
        self.connection = None

    def take(self, *, users: int, busy: Collection[str]) -> list[Run]:
        if not self._inbox:
            self.connection.process_data_events(time_limit=0 if busy else 0.5)
        self._hand_over()
        if users <= 0 or not self._inbox:
            return []
        with self._held_lock:
            runs, self._inbox = runs_of(self._inbox, users=users, busy=busy, skip_partition=self._draining)
            for run in runs:
                for delivery in run:
                    self._in_hand[delivery.tag.delivery_tag] = delivery
        for partition in sorted({d.tag.partition for run in runs for d in run}):
            self._own(partition)
        return runs

    def wait(self, futures: Collection[Future], *, timeout: float) -> None:
        for future in futures:
            if future not in self._watched:
                self._watched.add(future)
                # Wake this thread's event loop the moment a handler finishes, instead of polling.
                future.add_done_callback(lambda _future: _wake(self.connection))
        deadline = time.monotonic() + timeout
        waiting = len(self._inbox)
        while not any(f.done() for f in futures) and len(self._inbox) == waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.connection.process_data_events(time_limit=min(left, 1.0))
        self._watched = {f for f in self._watched if not f.done()}

    def _own(self, partition: int) -> None:
        """Take the partition's lease; wait (serving heartbeats) while its last owner finishes."""
        name = self.topology.work_queue(partition)
        while not self.ownership.holds(name):
            if self.ownership.try_take(name):
                return
            if self.stop.is_set():
                raise ConnectionError("stopping while waiting for a partition")  # redelivered later
            self.connection.process_data_events(time_limit=0.2)

    def run(self, delivery: Delivery | None, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        # The partition lease and the held messages' deadlines are renewed by RENEWER meanwhile.
        return work(*args, **kwargs)

    def ownership_for(self, envelope: Envelope):
        # The partition lease, taken in take(), already makes this consumer the user's only one.
        return contextlib.nullcontext()

    def settle(self, settled: list[Settled]) -> None:
        """Outcomes recorded first (the delivered ones of every run in one statement), then the
        retries parked in their delay queue, then the acks (one with `multiple` when no earlier
        message is still unacknowledged)."""
        delivered = [m.envelope["id"] for d, outcome in settled if outcome.done for m in _covered_too(d)]
        if delivered:
            owner.outbox_settle_delivered(event_ids=delivered)
        retries: list[Publication] = []
        for delivery, outcome in settled:
            if outcome.done:
                continue
            messages = _covered_too(delivery)
            if outcome.status is Status.RETRY:
                owner.outbox_schedule_retry(
                    event_ids=[m.envelope["id"] for m in messages], attempt=delivery.attempt, error=outcome.error,
                    delay=outcome.retry_after, timing=self.timing,
                )
                retries += [
                    Publication(message.envelope, attempt=message.attempt + 1, traceparent=message.traceparent,
                                exchange=self.topology.retry_queue(outcome.retry_after))
                    for message in messages
                ]
            else:
                for message in messages:
                    owner.dead_letter_record(
                        envelope=message.envelope, attempts=message.attempt, reason=outcome.error, cause=outcome.cause
                    )
        if retries:
            self._park_retries_rollback_unsafe(retries)
        self._ack([m.tag.delivery_tag for d, _ in settled for m in _covered_too(d)])

    def _park_retries_rollback_unsafe(self, retries: list[Publication]) -> None:
        """Publish the retries into their delay queues with one wait for all their confirms; if the
        broker refuses any, nothing of this settle is acked (every message comes again: at least once)."""
        answers = self.publisher.publish_rollback_unsafe(self.topology, retries)
        refused = [p.envelope["id"] for p, answer in zip(retries, answers, strict=True) if answer is not Confirm.ACKED]
        if refused:
            raise RetryNotParked(f"the broker refused {len(refused)} retries (first: event_id={refused[0]})")

    def _ack(self, tags: list[int]) -> None:
        """Ack the settled `tags`: the settled messages received before any unsettled one with one
        `multiple` ack; the others later, together, while a handler still holds an earlier message
        (one by one once none does, or once too many wait)."""
        if not tags:
            return
        with self._held_lock:
            for tag in tags:
                self._in_hand.pop(tag, None)
            held = bool(self._in_hand)
        self._ack_deferred.update(tags)
        prefix = list(itertools.takewhile(self._ack_deferred.__contains__, self._unacked))
        if prefix:
            for tag in prefix:
                del self._unacked[tag]
            self._ack_deferred.difference_update(prefix)
            self.channel.basic_ack(prefix[-1], multiple=True)
        if self._ack_deferred and (not held or len(self._ack_deferred) > self._ack_defer_limit):
            self._ack_deferred_flush()

    def _ack_deferred_flush(self) -> None:
        for tag in sorted(self._ack_deferred):
            self.channel.basic_ack(tag)
            self._unacked.pop(tag, None)
        self._ack_deferred.clear()

    def housekeeping(self, *, force: bool = False) -> None:
        """Messages the broker dead-lettered (rejected, over the delivery limit) become dead letters;
        when idle, and now and then under load, so they never wait for a lull."""
        if not force and time.monotonic() - self._dead_checked < DEAD_QUEUE_CHECK_SECONDS:
            return
        self._dead_checked = time.monotonic()
        if not force:
            self._rebalance()
        for _ in range(100):
            method, properties, body = self.dead_channel.basic_get(self.topology.dead_queue)
            if method is None:
                return
            envelope = envelope_from(body)
            cause = Cause.BROKER
            if envelope is None:
                # Kept verbatim for a human; the id is derived from the message so that recording it
                # twice (after a crash before the ack) updates one row.
                raw_id = properties.message_id or hashlib.sha256(body).hexdigest()
                cause = Cause.MALFORMED
                envelope = {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kairos-dead-letter:{raw_id}")),
                    "type": (properties.type or "")[:64],
                    "uid": None,
                    "message_id": (properties.message_id or "")[:200],
                    "body": body.decode("utf-8", "replace")[:10000],
                }
            owner.dead_letter_record(
                envelope=envelope,
                attempts=attempt_of(properties),
                reason=f"dead-lettered by the broker: {death_reason(properties)}",
                cause=cause,
            )
            self.dead_channel.basic_ack(method.delivery_tag)
