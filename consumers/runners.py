"""The long-running processes behind `manage.py consume` and `manage.py relay`.

Each runs until its stop flag is set (SIGTERM/SIGINT), finishes the event in hand, and
survives the loss of the broker or the database by reconnecting with backoff.

`Consumer` is the one consumer loop: it drives any transport of agent_bridge.transports
(embedded or RabbitMQ) through the same four verbs (next, ack, retry later, dead-letter).
"""
import contextlib
import logging
import signal
import threading
import time
import traceback
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from agent_bridge import outbox as owner
from agent_bridge.agent_client import AgentClient
from agent_bridge.delivery import Outcome, Status
from agent_bridge.leases import WORKER_ID
from agent_bridge.timing import BusTiming, bus_timing
from agent_bridge.transports import Delivery, Transport
from agent_bridge.transports import rabbitmq as amqp
from agent_bridge.transports.embedded import EmbeddedTransport
from agent_bridge.transports.notify import OutboxWaiter
from consumers import processing
from project import metrics, tracing

logger = logging.getLogger(__name__)

RECONNECT_BACKOFF_MAX_SECONDS = 10.0


def stop_flag_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the process finishes its unit of work and exits."""
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        logger.info("received %s, stopping after the event in hand", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop


def run_resiliently(name: str, session: Callable[[], None], stop: threading.Event) -> None:
    """Run `session` until stopped; after a broker or database loss, back off and start again.

    Anything else a session raises is logged with its traceback and treated the same way: a
    daemon that exits on the first surprise leaves events undelivered until someone notices.
    """
    delay = 0.5
    while not stop.is_set():
        try:
            session()
            delay = 0.5
        except amqp.CONNECTION_ERRORS as exc:
            logger.warning("%s: broker connection lost (%s); reconnecting in %.1fs", name, type(exc).__name__, delay)
        except DatabaseError as exc:
            logger.warning("%s: database error (%s); reconnecting in %.1fs", name, type(exc).__name__, delay)
            _close_db_connections()
        except Exception:
            trace = processing.scrub_secrets(traceback.format_exc())
            logger.error("%s: unexpected error; starting again in %.1fs\n%s", name, delay, trace)
            _close_db_connections()
        stop.wait(delay)
        delay = min(delay * 2, RECONNECT_BACKOFF_MAX_SECONDS)


def _close_db_connections() -> None:
    # Closing a connection to a database that is gone can fail too.
    with contextlib.suppress(DatabaseError):
        connections.close_all()


class Pruner:
    """Retention pruning scheduled by the daemon itself (no cron): every BUS_PRUNE_INTERVAL_SECONDS,
    the first time at start."""

    def __init__(self, *, interval_seconds: float | None = None) -> None:
        self.interval = settings.BUS_PRUNE_INTERVAL_SECONDS if interval_seconds is None else interval_seconds
        self.last: float | None = None

    def maybe(self) -> int:
        if self.interval <= 0 or (self.last is not None and time.monotonic() - self.last < self.interval):
            return 0
        self.last = time.monotonic()
        deleted = owner.outbox_prune()
        if deleted:
            logger.info("pruned %s outbox rows and dead letters past retention", deleted)
        return deleted


class Consumer:
    """Delivers events from a transport to the handlers, one at a time, until stopped."""

    def __init__(
        self,
        *,
        transport: Transport,
        stop: threading.Event,
        agent: AgentClient | None = None,
        pruner: Pruner | None = None,
    ) -> None:
        self.transport = transport
        self.stop = stop
        self.agent = agent or AgentClient.from_settings()
        self.pruner = pruner
        self.timing = bus_timing().check()

    def run(self) -> None:
        logger.info("consumer started (%s) worker=%s", self.transport.name, WORKER_ID)
        try:
            run_resiliently("consumer", self._session, self.stop)
        finally:
            shutdown = getattr(self.transport, "shutdown", None)
            if shutdown is not None:
                shutdown()
        logger.info("consumer stopped")

    def _session(self) -> None:
        self.transport.open()
        try:
            while not self.stop.is_set():
                close_old_connections()
                delivery = self.transport.next()
                if delivery is not None:
                    self.handle(delivery)
                if not self.stop.is_set():
                    self.transport.housekeeping()
                    if self.pruner is not None:
                        self.pruner.maybe()
        finally:
            self.transport.close()

    def _process(self, delivery: Delivery) -> Outcome:
        # On the thread that runs the handler: the trace context must be entered there.
        envelope = delivery.envelope
        with tracing.delivery_span(traceparent=delivery.traceparent, event_type=envelope["type"],
                                   event_id=envelope["id"]):
            return processing.process_envelope(
                envelope, attempt=delivery.attempt, agent=self.agent, ownership=self.transport.ownership_for
            )

    def handle(self, delivery: Delivery) -> Outcome:
        outcome = self.transport.run(delivery, self._process, delivery)
        if outcome.done:
            self.transport.ack(delivery)
        elif outcome.status is Status.RETRY:
            self.transport.retry_later(delivery, outcome)
        else:
            self.transport.dead_letter(delivery, outcome)
        return outcome


class ConsumerGroup:
    """Several consumer loops in one process, each on its own connection: several Agent calls in
    flight at once, for different users (a user's events stay with one loop: its partition on
    RabbitMQ, its lease on the embedded bus)."""

    def __init__(self, consumers: list[Consumer]) -> None:
        self.consumers = consumers

    def run(self) -> None:
        threads = [
            threading.Thread(target=consumer.run, name=f"consumer-{index}")
            for index, consumer in enumerate(self.consumers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def consumer_from_settings(*, stop: threading.Event) -> Consumer | ConsumerGroup:
    """RabbitMQ when AMQP_URL is set (the relay prunes), else the embedded bus (the consumer prunes);
    BUS_CONSUMER_CONNECTIONS loops."""
    timing = bus_timing().check()

    def one(index: int) -> Consumer:
        if settings.AMQP_URL:
            return Consumer(transport=amqp.RabbitTransport(stop=stop, timing=timing), stop=stop)
        pruner = Pruner() if index == 0 else None
        return Consumer(transport=EmbeddedTransport(stop=stop, timing=timing), stop=stop, pruner=pruner)

    count = max(1, settings.BUS_CONSUMER_CONNECTIONS)
    return one(0) if count == 1 else ConsumerGroup([one(index) for index in range(count)])


class Relay:
    """Publishes pending outbox rows to RabbitMQ, marking each published once confirmed."""

    def __init__(self, *, stop: threading.Event, timing: BusTiming | None = None) -> None:
        self.stop = stop
        self.topology = amqp.topology_from_settings()
        self.timing = timing or bus_timing().check()
        self.pruner = Pruner()

    def run(self) -> None:
        logger.info("relay started worker=%s exchange=%s", WORKER_ID, self.topology.exchange)
        run_resiliently("relay", self._session, self.stop)
        logger.info("relay stopped")

    def _session(self) -> None:
        waiter = OutboxWaiter(stop=self.stop)
        connection = amqp.connect(name=f"kairos-relay {WORKER_ID}")
        try:
            channel = connection.channel()
            amqp.topology_declare(channel, self.topology)
            channel.confirm_delivery()
            waiter.prepare()
            while not self.stop.is_set():
                close_old_connections()
                if not self.publish_batch(channel):
                    self.pruner.maybe()
                    # Wake on a commit or when a delayed event is due; return often enough to
                    # serve the broker's heartbeats.
                    due = owner.outbox_seconds_until_next_due()
                    heartbeat = settings.AMQP_HEARTBEAT_SECONDS / 4
                    waiter.wait(max_seconds=heartbeat if due is None else min(due, heartbeat))
                    connection.process_data_events(time_limit=0)
        finally:
            waiter.close()
            amqp.connection_close_quietly(connection)

    def publish_batch(self, channel) -> int:
        batch = owner.outbox_pending(limit=settings.BUS_RELAY_BATCH_SIZE)
        published: list[int] = []
        try:
            for event in batch:
                amqp.envelope_publish_rollback_unsafe(channel, self.topology, event.envelope,
                                                      traceparent=event.traceparent or None)
                metrics.event_published(event_type=event.type)
                published.append(event.pk)
                metrics.event_published(event_type=event.type)
                logger.info("relay published event_id=%s event_type=%s uid=%s", event.event_id, event.type, event.uid)
        finally:
            if published:
                owner.outbox_mark_published(pks=published, timing=self.timing)
        return len(published) + self.republish_unsettled(channel)

    def republish_unsettled(self, channel) -> int:
        """Publish again the events the broker took but nobody settled in time (a broker crash can
        lose a message it was moving between queues); handlers are idempotent, so a late
        original only makes a duplicate."""
        events = owner.outbox_overdue_published(limit=settings.BUS_RELAY_BATCH_SIZE)
        if events and self._work_queue_backlog(channel):
            return 0  # consumers are still working through a backlog, which likely holds these
        for event in events:
            amqp.envelope_publish_rollback_unsafe(
                channel, self.topology, event.envelope, attempt=event.attempts + 1,
                traceparent=event.traceparent or None,
            )
            owner.outbox_mark_republished(pk=event.pk, timing=self.timing)
            logger.warning(
                "relay republished event_id=%s event_type=%s uid=%s: not settled %ss after it was handed over",
                event.event_id, event.type, event.uid, round(self.timing.republish_after_seconds),
            )
        return len(events)

    def _work_queue_backlog(self, channel) -> int:
        return sum(
            channel.queue_declare(queue, passive=True).method.message_count for queue in self.topology.work_queues
        )
