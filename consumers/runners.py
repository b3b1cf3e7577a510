"""The long-running processes behind `manage.py consume` and `manage.py relay`.

Each runs until its stop flag is set (SIGTERM/SIGINT), finishes the event in hand, and
survives the loss of the broker or the database by reconnecting with backoff.
"""
import contextlib
import hashlib
import json
import logging
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pika
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection, connections
from django.utils import timezone

from agent_bridge.agent_client import AgentClient
from agent_bridge.events import Envelope
from agent_bridge.leases import WORKER_ID
from agent_bridge.models import OutboxEvent
from agent_bridge.transports import embedded
from agent_bridge.transports import rabbitmq as amqp
from agent_bridge.transports.notify import OutboxWaiter
from consumers import processing, services
from project import metrics, tracing

logger = logging.getLogger("consumers")

RECONNECT_BACKOFF_MAX_SECONDS = 10.0
DEAD_QUEUE_CHECK_SECONDS = 5.0


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


def _check_database() -> None:
    """Raise DatabaseError unless the database answers (before taking messages off the broker)."""
    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def settle(envelope: Envelope, *, attempt: int, outcome: processing.Outcome) -> None:
    """Record a delivered or dead event; retries are recorded by the transport that schedules them."""
    if outcome.done:
        services.outbox_event_mark_delivered(event_id=envelope["id"])
    elif outcome.status == processing.DEAD:
        services.dead_letter_record(envelope=envelope, attempts=attempt, reason=outcome.error)


class EmbeddedConsumer:
    """Consumes straight from the outbox table (no broker)."""

    def __init__(self, *, stop: threading.Event, agent: AgentClient | None = None) -> None:
        self.stop = stop
        self.agent = agent or AgentClient.from_settings()

    def run(self) -> None:
        logger.info("consumer started (embedded bus) worker=%s", WORKER_ID)
        run_resiliently("consumer", self._session, self.stop)
        logger.info("consumer stopped")

    def _session(self) -> None:
        waiter = OutboxWaiter(stop=self.stop)
        waiter.prepare()
        try:
            while not self.stop.is_set():
                close_old_connections()
                event = embedded.outbox_event_claim_next(worker_id=WORKER_ID)
                if event is None:
                    # Until a commit notifies us, or the next delayed retry is due.
                    waiter.wait(max_seconds=embedded.outbox_seconds_until_next_due())
                    continue
                self.handle(event)
        finally:
            waiter.close()

    def handle(self, event: OutboxEvent) -> processing.Outcome:
        attempt = event.attempts + 1
        envelope = event.envelope
        with tracing.delivery_span(traceparent=event.traceparent, event_type=event.type, event_id=envelope["id"]):
            outcome = processing.process_envelope(envelope, attempt=attempt, agent=self.agent)
        if outcome.status == processing.RETRY:
            delay = processing.retry_delay_seconds(attempt=attempt)
            embedded.outbox_event_release_for_retry(event=event, delay_seconds=delay, error=outcome.error)
        else:
            settle(envelope, attempt=attempt, outcome=outcome)
        return outcome


def _envelope_from(body: bytes) -> Envelope | None:
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


def _wake_rollback_unsafe(connection) -> None:
    """Interrupt the connection's event loop from another thread (pika's one thread-safe call).
    If the connection is already gone, the waiting loop notices on its own."""
    with contextlib.suppress(pika.exceptions.ConnectionWrongStateError, pika.exceptions.StreamLostError):
        connection.add_callback_threadsafe(lambda: None)


class RabbitConsumer:
    """Consumes the work queue with manual acks: an event is acked only once settled."""

    def __init__(self, *, stop: threading.Event, agent: AgentClient | None = None) -> None:
        self.stop = stop
        self.agent = agent or AgentClient.from_settings()
        self.topology = amqp.topology_from_settings()
        # Handlers run on one worker thread while the main thread keeps the connection's
        # heartbeats going, so a slow Agent never gets the connection closed under us.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="handler")

    def run(self) -> None:
        logger.info("consumer started (rabbitmq) worker=%s queue=%s", WORKER_ID, self.topology.work_queue)
        try:
            run_resiliently("consumer", self._session, self.stop)
        finally:
            self.worker.shutdown(wait=True)
        logger.info("consumer stopped")

    def _session(self) -> None:
        # Without a database no message can be settled: taking them off the broker would only
        # add to their redelivery count (and a quorum queue dead-letters at the limit).
        self._run_on_worker(None, _check_database)
        connection = amqp.connect_rollback_unsafe(name=f"kairos-consumer {WORKER_ID}")
        try:
            channel = connection.channel()
            amqp.topology_declare(channel, self.topology)
            channel.basic_qos(prefetch_count=settings.AMQP_PREFETCH)
            publisher = connection.channel()
            publisher.confirm_delivery()
            dead_channel = connection.channel()
            self._record_broker_dead_letters(connection, dead_channel)
            dead_checked = time.monotonic()
            for method, properties, body in channel.consume(self.topology.work_queue, inactivity_timeout=0.5):
                if method is not None:
                    self._handle_message(connection, channel, publisher, method, properties, body)
                # When idle, and now and then under load, so broker dead letters never wait for a lull.
                if method is None or time.monotonic() - dead_checked > DEAD_QUEUE_CHECK_SECONDS:
                    if not self.stop.is_set():
                        self._record_broker_dead_letters(connection, dead_channel)
                    dead_checked = time.monotonic()
                if self.stop.is_set():
                    break
            # Messages prefetched but not started go back to the queue at once.
            channel.cancel()
        finally:
            amqp.connection_close_quietly(connection)

    def _run_on_worker(self, connection, fn: Callable, *args, **kwargs):
        """Run `fn` on the handler thread; meanwhile this thread serves the connection's
        heartbeats (pika is not thread-safe, so only this thread touches the connection)."""
        future = self.worker.submit(self._in_worker, fn, *args, **kwargs)
        if connection is None:
            return future.result()
        # Wake this thread's event loop the moment the handler finishes, instead of polling.
        future.add_done_callback(lambda _future: _wake_rollback_unsafe(connection))
        while not future.done():
            connection.process_data_events(time_limit=1.0)
        return future.result()

    @staticmethod
    def _in_worker(fn: Callable, *args, **kwargs):
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        except DatabaseError:
            connections.close_all()
            raise

    def _handle_message(self, connection, channel, publisher, method, properties, body: bytes) -> None:
        envelope = _envelope_from(body)
        if envelope is None:
            logger.error("rejecting malformed message %s to the dead-letter queue", properties.message_id)
            channel.basic_reject(method.delivery_tag, requeue=False)
            return
        attempt = amqp.attempt_of(properties)
        traceparent = amqp.traceparent_of(properties)
        outcome = self._run_on_worker(connection, self._process, envelope, attempt, traceparent)
        if outcome.status == processing.RETRY:
            delay = processing.retry_delay_seconds(attempt=attempt)
            amqp.envelope_publish_retry(
                publisher, self.topology, envelope, attempt=attempt + 1, delay_seconds=delay, traceparent=traceparent
            )
        channel.basic_ack(method.delivery_tag)

    def _process(self, envelope: Envelope, attempt: int, traceparent: str | None = None) -> processing.Outcome:
        # On the handler thread: the trace context must be entered here, not on the connection's.
        with tracing.delivery_span(traceparent=traceparent, event_type=envelope["type"], event_id=envelope["id"]):
            outcome = processing.process_envelope(envelope, attempt=attempt, agent=self.agent)
        if outcome.status == processing.RETRY:
            services.outbox_event_note_retry(
                event_id=envelope["id"],
                attempt=attempt,
                error=outcome.error,
                delay_seconds=processing.retry_delay_seconds(attempt=attempt),
            )
        else:
            settle(envelope, attempt=attempt, outcome=outcome)
        return outcome

    def _record_broker_dead_letters(self, connection, dead_channel) -> None:
        """Messages the broker dead-lettered (rejected, over the delivery limit) become DeadLetter rows."""
        for _ in range(100):
            method, properties, body = dead_channel.basic_get(self.topology.dead_queue)
            if method is None:
                return
            envelope = _envelope_from(body)
            if envelope is None:
                # Kept verbatim for a human; the id is derived from the message so that recording it
                # twice (after a crash before the ack) updates one row.
                raw_id = properties.message_id or hashlib.sha256(body).hexdigest()
                envelope = {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"kairos-dead-letter:{raw_id}")),
                    "type": (properties.type or "")[:64],
                    "uid": None,
                    "message_id": (properties.message_id or "")[:200],
                    "raw": body.decode("utf-8", "replace")[:10000],
                }
            reason = f"dead-lettered by the broker: {amqp.death_reason(properties)}"
            self._run_on_worker(
                connection,
                services.dead_letter_record,
                envelope=envelope,
                attempts=amqp.attempt_of(properties),
                reason=reason,
            )
            dead_channel.basic_ack(method.delivery_tag)


class Relay:
    """Publishes pending outbox rows to RabbitMQ, marking each published once confirmed."""

    def __init__(self, *, stop: threading.Event) -> None:
        self.stop = stop
        self.topology = amqp.topology_from_settings()

    def run(self) -> None:
        logger.info("relay started worker=%s exchange=%s", WORKER_ID, self.topology.exchange)
        run_resiliently("relay", self._session, self.stop)
        logger.info("relay stopped")

    def _session(self) -> None:
        waiter = OutboxWaiter(stop=self.stop)
        connection = amqp.connect_rollback_unsafe(name=f"kairos-relay {WORKER_ID}")
        try:
            channel = connection.channel()
            amqp.topology_declare(channel, self.topology)
            channel.confirm_delivery()
            waiter.prepare()
            while not self.stop.is_set():
                close_old_connections()
                if not self.publish_batch(channel):
                    # Wake on a commit or when a delayed event is due; return often enough to
                    # serve the broker's heartbeats.
                    due = embedded.outbox_seconds_until_next_due()
                    heartbeat = settings.AMQP_HEARTBEAT_SECONDS / 4
                    waiter.wait(max_seconds=heartbeat if due is None else min(due, heartbeat))
                    connection.process_data_events(time_limit=0)
        finally:
            waiter.close()
            amqp.connection_close_quietly(connection)

    def publish_batch(self, channel) -> int:
        # Only due rows: a delayed event (a read-back step) waits in the outbox, not in the broker.
        pending = OutboxEvent.objects.filter(
            status=OutboxEvent.Status.PENDING, available_at__lte=timezone.now()
        ).order_by("id")
        batch = list(pending[: settings.BUS_RELAY_BATCH_SIZE])
        published: list[int] = []
        try:
            for event in batch:
                amqp.envelope_publish(channel, self.topology, event.envelope, traceparent=event.traceparent)
                published.append(event.pk)
                metrics.event_published(event_type=event.type)
                logger.info("relay published event_id=%s event_type=%s uid=%s", event.event_id, event.type, event.uid)
        finally:
            if published:
                OutboxEvent.objects.filter(pk__in=published, status=OutboxEvent.Status.PENDING).update(
                    status=OutboxEvent.Status.PUBLISHED,
                    published_at=timezone.now(),
                    available_at=services.outbox_settle_deadline(),
                )
        return len(published) + self.republish_unsettled(channel)

    def republish_unsettled(self, channel) -> int:
        """Publish again the events the broker took but nobody settled in time (a broker crash can
        lose a message it was moving between queues); handlers are idempotent, so a late
        original only makes a duplicate."""
        overdue = OutboxEvent.objects.filter(
            status=OutboxEvent.Status.PUBLISHED, available_at__lte=timezone.now()
        ).order_by("available_at")
        events = list(overdue[: settings.BUS_RELAY_BATCH_SIZE])
        if events and self._work_queue_backlog(channel):
            return 0  # consumers are still working through a backlog, which likely holds these
        for event in events:
            amqp.envelope_publish(
                channel, self.topology, event.envelope, attempt=event.attempts + 1, traceparent=event.traceparent
            )
            OutboxEvent.objects.filter(pk=event.pk, status=OutboxEvent.Status.PUBLISHED).update(
                available_at=services.outbox_settle_deadline()
            )
            logger.warning(
                "relay republished event_id=%s event_type=%s uid=%s: not settled %ss after it was handed over",
                event.event_id, event.type, event.uid, settings.BUS_REPUBLISH_AFTER_SECONDS,
            )
        return len(events)

    def _work_queue_backlog(self, channel) -> int:
        return channel.queue_declare(self.topology.work_queue, passive=True).method.message_count
