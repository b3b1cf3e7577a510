"""The long-running processes behind `manage.py consume` and `manage.py relay`.

Each runs until its stop flag is set (SIGTERM/SIGINT), finishes the event in hand, and
survives the loss of the broker or the database by reconnecting with backoff.

`Consumer` is the one consumer loop: it drives any transport of agent_bridge.transports
(embedded or RabbitMQ) through the same verbs (take runs, wait, run a handler, settle), with up
to BUS_CONSUMER_CONCURRENCY handlers in flight for different users.
"""
import contextlib
import logging
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import replace

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connections

from agent_bridge import events
from agent_bridge import outbox as owner
from agent_bridge.agent_client import AgentClient
from agent_bridge.delivery import Outcome
from agent_bridge.leases import WORKER_ID
from agent_bridge.timing import BusTiming, bus_timing
from agent_bridge.transports import Delivery, Run, Settled, Transport
from agent_bridge.transports import rabbitmq as amqp
from agent_bridge.transports.embedded import EmbeddedTransport
from agent_bridge.transports.notify import OutboxWaiter
from consumers import processing
from project import metrics, shutdown, tracing

logger = logging.getLogger(__name__)

RECONNECT_BACKOFF_MAX_SECONDS = 10.0
# How often the consumer loop lets Django recycle its database connection (CONN_MAX_AGE).
CONNECTION_CHECK_SECONDS = 1.0


def stop_flag_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: the process finishes its unit of work and exits."""
    return shutdown.stop_on_signals(
        lambda signum: logger.info("received %s, stopping after the event in hand", signum.name)
    )


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


def coalesce(run: Run) -> Run:
    """One user's deliveries → one delivery per handler call: consecutive deliveries of a
    state-carrying type (events.COALESCING_TYPES) at the same attempt become the first of them,
    covering the rest (its handler sends the state read when it runs, which includes every change
    the later ones report: they were committed before they were published)."""
    calls: Run = []
    for delivery in run:
        head = calls[-1] if calls else None
        if (
            head is not None
            and delivery.envelope["type"] == head.envelope["type"]
            and delivery.envelope["type"] in events.COALESCING_TYPES
            and delivery.attempt == head.attempt
        ):
            calls[-1] = replace(head, covered=(*head.covered, delivery))
        else:
            calls.append(delivery)
    return calls


class Consumer:
    """Delivers events from a transport to the handlers until stopped: up to `concurrency` users'
    runs at once on worker threads, a user's own events one at a time and in order.

    This thread takes runs from the transport (never for a user it is already busy with), waits
    while the workers call the Agent (the transport keeps its connection alive meanwhile) and
    settles finished runs in batches, so delivered events cost one UPDATE per batch and the
    broker connection is only ever touched here.
    """

    def __init__(
        self,
        *,
        transport: Transport,
        stop: threading.Event,
        agent: AgentClient | None = None,
        pruner: Pruner | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.transport = transport
        self.stop = stop
        self._shared_agent = agent  # tests pass one; otherwise one client per worker thread
        self._agents = threading.local()  # per thread: its Agent client, when it last checked its DB connection
        self.pruner = pruner
        self.timing = bus_timing().check()
        self.concurrency = max(1, concurrency if concurrency is not None else settings.BUS_CONSUMER_CONCURRENCY)
        self._running: dict[Future, str] = {}  # a run in flight → its user
        self._pool: ThreadPoolExecutor | None = None

    @property
    def agent(self) -> AgentClient:
        if self._shared_agent is not None:
            return self._shared_agent
        client = getattr(self._agents, "client", None)
        if client is None:
            client = self._agents.client = AgentClient.from_settings()
        return client

    def run(self) -> None:
        logger.info("consumer started (%s) worker=%s concurrency=%s", self.transport.name, WORKER_ID,
                    self.concurrency)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="handler")
        try:
            run_resiliently("consumer", self._session, self.stop)
        finally:
            self._pool.shutdown(wait=True)
        logger.info("consumer stopped")

    def _session(self) -> None:
        self.transport.open()
        try:
            while not self.stop.is_set():
                self._check_connection()
                free = self.concurrency - len(self._running)
                for run in self.transport.take(users=free, busy=set(self._running.values())) if free else []:
                    self._running[self._pool.submit(self.deliver_run, run)] = run[0].user
                if self._running:
                    # With a free worker, come back soon for new work (the embedded bus polls).
                    timeout = settings.BUS_POLL_INTERVAL_SECONDS if len(self._running) < self.concurrency else 1.0
                    self.transport.wait(list(self._running), timeout=timeout)
                    self._settle_finished()
                if not self.stop.is_set():
                    self.transport.housekeeping()
                    if self.pruner is not None:
                        self.pruner.maybe()
        finally:
            try:
                self._drain()
            finally:
                self.transport.close()

    def _drain(self) -> None:
        """Finish and settle the runs in flight (SIGTERM, a lost connection): their outcomes are
        recorded even when the broker is gone, and the partitions are let go only after."""
        while self._running:
            with contextlib.suppress(*amqp.CONNECTION_ERRORS):
                self.transport.wait(list(self._running), timeout=1.0)
            if not any(future.done() for future in self._running):
                futures_wait(list(self._running), return_when=FIRST_COMPLETED)
            try:
                self._settle_finished()
            except Exception as exc:  # what was not acked comes again; the session's own error wins
                logger.warning("consumer: settling in-flight work failed (%s)", type(exc).__name__)

    def _settle_finished(self) -> None:
        finished = [future for future in self._running if future.done()]
        settled: list[Settled] = []
        errors: list[BaseException] = []
        for future in finished:
            del self._running[future]
            try:
                settled.extend(future.result())
            except Exception as exc:  # left unsettled: delivered again (at least once)
                errors.append(exc)
        if settled:
            self.transport.settle(settled)
        if errors:
            raise errors[0]

    def deliver_run(self, run: Run) -> list[Settled]:
        """On a worker thread: one user's deliveries in order, coalesced; stops early on SIGTERM
        (what is not delivered stays unsettled and comes again)."""
        self._check_connection()
        settled: list[Settled] = []
        try:
            for delivery in coalesce(run):
                if settled and self.stop.is_set():
                    break
                settled.append((delivery, self.transport.run(delivery, self._process, delivery)))
        except DatabaseError:
            connections.close_all()  # this thread's: the next run opens fresh ones
            raise
        return settled

    def _check_connection(self) -> None:
        """Let Django replace this thread's database connection if it is broken or past
        CONN_MAX_AGE; at most every CONNECTION_CHECK_SECONDS, not per run (with CONN_HEALTH_CHECKS
        each check is a round trip)."""
        last = getattr(self._agents, "connection_checked", 0.0)
        if time.monotonic() - last > CONNECTION_CHECK_SECONDS:
            close_old_connections()
            self._agents.connection_checked = time.monotonic()

    def _process(self, delivery: Delivery) -> Outcome:
        # On the thread that runs the handler: the trace context must be entered there.
        envelope = delivery.envelope
        with tracing.delivery_span(traceparent=delivery.traceparent, event_type=envelope["type"],
                                   event_id=envelope["id"]):
            return processing.process_envelope(
                envelope, attempt=delivery.attempt, agent=self.agent, ownership=self.transport.ownership_for,
                taken_over=delivery.taken_over or any(covered.taken_over for covered in delivery.covered),
            )

    def handle(self, delivery: Delivery) -> Outcome:
        """Deliver and settle one delivery here, on this thread (tests, diagnostics)."""
        outcome = self.transport.run(delivery, self._process, delivery)
        self.transport.settle([(delivery, outcome)])
        return outcome


class ConsumerGroup:
    """Several consumer loops in one process, each on its own connection (RabbitMQ connections
    share the partitions fairly); the process's BUS_CONSUMER_CONCURRENCY is split between them."""

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
    BUS_CONSUMER_CONNECTIONS loops sharing BUS_CONSUMER_CONCURRENCY handlers in flight."""
    timing = bus_timing().check()
    count = max(1, settings.BUS_CONSUMER_CONNECTIONS)
    concurrency = max(1, -(-settings.BUS_CONSUMER_CONCURRENCY // count))

    def one(index: int) -> Consumer:
        if settings.AMQP_URL:
            return Consumer(transport=amqp.RabbitTransport(stop=stop, timing=timing), stop=stop,
                            concurrency=concurrency)
        pruner = Pruner() if index == 0 else None
        return Consumer(transport=EmbeddedTransport(stop=stop, timing=timing), stop=stop, pruner=pruner,
                        concurrency=concurrency)

    return one(0) if count == 1 else ConsumerGroup([one(index) for index in range(count)])


class Relay:
    """Publishes pending outbox rows to RabbitMQ, marking each published once confirmed.

    A batch of up to BUS_RELAY_BATCH_SIZE rows is written to the broker at once and its
    publisher confirms awaited together (`amqp.BatchPublisher`: one round trip per batch, not per
    row). Only rows the broker acked are marked published; a refused (nacked) or unroutable one
    stays pending and is tried again after the first retry delay. A crash before the marking
    leaves the whole batch pending: it is published again (duplicates are harmless).
    """

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
            publisher = amqp.BatchPublisher(connection, channel)
            waiter.prepare()
            while not self.stop.is_set():
                close_old_connections()
                if not self.publish_batch(publisher):
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

    def publish_batch(self, publisher: amqp.BatchPublisher) -> int:
        """Publish the pending rows due now; returns how many the broker took (with republished ones)."""
        batch = owner.outbox_pending(limit=settings.BUS_RELAY_BATCH_SIZE)
        published: list[int] = []
        if batch:
            answers = publisher.publish_rollback_unsafe(self.topology, [
                amqp.Publication(event.envelope, traceparent=event.traceparent or None) for event in batch
            ])
            refused = []
            for event, answer in zip(batch, answers, strict=True):
                if answer is amqp.Confirm.ACKED:
                    published.append(event.pk)
                    metrics.event_published(event_type=event.type)
                    logger.info("relay published event_id=%s event_type=%s uid=%s",
                                event.event_id, event.type, event.uid)
                else:
                    refused.append(event.pk)
                    logger.warning("relay: the broker %s event_id=%s event_type=%s uid=%s; it stays pending",
                                   answer.value, event.event_id, event.type, event.uid)
            owner.outbox_mark_published(pks=published, timing=self.timing)
            owner.outbox_publish_refused(pks=refused, timing=self.timing)
        return len(published) + self.republish_unsettled(publisher)

    def republish_unsettled(self, publisher: amqp.BatchPublisher) -> int:
        """Publish again the events the broker took but nobody settled in time (a broker crash can
        lose a message it was moving between queues); handlers are idempotent, so a late
        original only makes a duplicate."""
        events = owner.outbox_overdue_published(limit=settings.BUS_RELAY_BATCH_SIZE)
        if not events or self._work_queue_backlog(publisher.channel):
            return 0  # consumers are still working through a backlog, which likely holds these
        answers = publisher.publish_rollback_unsafe(self.topology, [
            amqp.Publication(event.envelope, attempt=event.attempts + 1, traceparent=event.traceparent or None)
            for event in events
        ])
        republished = 0
        for event, answer in zip(events, answers, strict=True):
            if answer is not amqp.Confirm.ACKED:  # still overdue: tried again on the next pass
                logger.warning("relay: the broker %s republished event_id=%s", answer.value, event.event_id)
                continue
            owner.outbox_mark_republished(pk=event.pk, timing=self.timing)
            republished += 1
            logger.warning(
                "relay republished event_id=%s event_type=%s uid=%s: not settled %ss after it was handed over",
                event.event_id, event.type, event.uid, round(self.timing.republish_after_seconds),
            )
        return republished

    def _work_queue_backlog(self, channel) -> int:
        return sum(
            channel.queue_declare(queue, passive=True).method.message_count for queue in self.topology.work_queues
        )
