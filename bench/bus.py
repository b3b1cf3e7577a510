"""Bus measurements, run inside the orchestrator's Django process (bench settings, the bench database).

Events are produced by the real domain service (`allergies.services.allergy_profile_replace`),
so each one is a committed allergy change with its outbox row, exactly as PUT /api/allergies/
makes it. Delivery is observed where it ends: the Agent double's request log (`timestamp`,
epoch seconds, taken when the double starts handling the request).
"""
import json
import time
import uuid
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from bench.stack import Stack, wait_for
from bench.stats import summarize_ms

BODIES = [
    {"confirmed": ["peanuts"], "intolerances": ["lactose"], "severity": {"peanuts": "anaphylactic",
                                                                          "lactose": "intolerance"}},
    {"confirmed": ["shellfish"], "intolerances": [], "severity": {"shellfish": "severe"}},
]
PASSWORD = "bench-Password-4821"  # noqa: S105 - throwaway users of a throwaway database


def users_create(n: int, *, label: str) -> list:
    """Verified users with one shared password hash (hashing once keeps setup fast)."""
    from django.contrib.auth.hashers import make_password

    from identity.models import User

    password = make_password(PASSWORD)
    users = [
        User(email=f"{label}-{i}-{uuid.uuid4().hex[:6]}@bench.invalid", username=f"{label}{i}", password=password,
             is_verified=True)
        for i in range(n)
    ]
    User.objects.bulk_create(users, batch_size=1000)
    return list(User.objects.filter(email__in=[u.email for u in users]).order_by("id"))


def agent_users_create(stack: Stack, users: list) -> None:
    """Create the users at the double first, so every event is one PATCH (no USER_NOT_FOUND detour)."""
    import requests

    session = requests.Session()
    headers = {"X-Service-Token": stack.env["AGENT_SERVICE_TOKEN"]}
    for user in users:
        session.post(f"{stack.agent_url}/users/{user.uid}", json={}, headers=headers, timeout=10).raise_for_status()


def produce(user: Any, index: int) -> None:
    from allergies.services import allergy_profile_replace

    allergy_profile_replace(user=user, **BODIES[index % len(BODIES)])


def last_event_id() -> int:
    from agent_bridge.models import OutboxEvent

    return OutboxEvent.objects.aggregate(m=Max("id"))["m"] or 0


def settled_count(after_id: int) -> int:
    from agent_bridge.models import OutboxEvent

    return OutboxEvent.objects.filter(id__gt=after_id).exclude(status__in=["pending", "published"]).count()


def outbox_quiesce() -> int:
    """Take every event still in flight out of the flow (between measurements, bus stopped)."""
    from agent_bridge.models import OutboxEvent

    return OutboxEvent.objects.filter(status__in=["pending", "published"]).update(
        status="delivered", delivered_at=timezone.now(), claimed_by="", claimed_until=None
    )


def _first_delivery(stack: Stack, since: float) -> dict[str, float]:
    """uid → timestamp of the double's first successful allergy PATCH for it since `since`."""
    first: dict[str, float] = {}
    for entry in stack.agent_requests():
        if entry["timestamp"] < since or not 200 <= entry["status"] < 300:
            continue
        path = entry["path"]
        if entry["method"] != "PATCH" or not path.endswith("/allergies"):
            continue
        uid = path.split("/")[2]
        if uid not in first or entry["timestamp"] < first[uid]:
            first[uid] = entry["timestamp"]
    return first


def _wait_settled(after_id: int, n: int, cap_s: float) -> bool:
    try:
        wait_for(lambda: settled_count(after_id) >= n, timeout=cap_s, interval=0.2, what="events to settle")
        return True
    except TimeoutError:
        return False


def warm_up(stack: Stack, users: list) -> None:
    start_id = last_event_id()
    for i, user in enumerate(users):
        produce(user, i)
    _wait_settled(start_id, len(users), 30)


def burst(stack: Stack, users: list, *, cap_s: float) -> dict[str, Any]:
    """Commit len(users) events in one transaction, then time their delivery to the double."""
    start_id = last_event_id()
    t_start = time.time()
    with transaction.atomic():
        for i, user in enumerate(users):
            produce(user, i)
    t_commit = time.time()
    complete = _wait_settled(start_id, len(users), cap_s)
    first = _first_delivery(stack, t_start)
    stamps = sorted(first[str(u.uid)] for u in users if str(u.uid) in first)
    seconds = (stamps[-1] - t_commit) if stamps else None
    return {
        "events": len(users),
        "delivered": len(stamps),
        "complete": complete,
        "produce_s": round(t_commit - t_start, 3),
        "drain_s": round(seconds, 3) if seconds else None,
        "events_per_s": round(len(stamps) / seconds, 1) if seconds else None,
    }


def paced(stack: Stack, users: list, *, rate: float, cap_s: float) -> dict[str, Any]:
    """One event per `1/rate` s, each its own transaction; latency = double timestamp − commit time."""
    start_id = last_event_id()
    t_start = time.time()
    before: dict[str, float] = {}
    committed: dict[str, float] = {}
    for i, user in enumerate(users):
        delay = t_start + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        uid = str(user.uid)
        before[uid] = time.time()
        produce(user, i)  # the service's transaction.atomic() commits on return
        committed[uid] = time.time()
    complete = _wait_settled(start_id, len(users), cap_s)
    first = _first_delivery(stack, t_start)
    latencies = [first[uid] - committed[uid] for uid in committed if uid in first and first[uid] >= before[uid]]
    return {
        "events": len(users),
        "rate_per_s": rate,
        "complete": complete,
        **summarize_ms([max(0.0, x) for x in latencies]),
    }


def history_add(rows: int) -> float:
    """Add `rows` delivered outbox rows (3 per simulated user), like weeks of past traffic.

    PostgreSQL: one INSERT … SELECT over generate_series (300k rows in seconds, where
    bulk_create takes a minute on this machine); other databases: bulk_create.
    """
    from django.db import connection

    from agent_bridge import events
    from agent_bridge.models import OutboxEvent

    kinds = [(events.USER_REGISTERED, {}), (events.EMAIL_REQUESTED, {"kind": "verify"}),
             (events.ALLERGIES_REPLACED, {"revision": 1, **BODIES[0], "allergy_flags": ["lactose", "peanuts"]})]
    started = time.time()
    if connection.vendor == "postgresql":
        table = OutboxEvent._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} (event_id, type, schema, uid, occurred_at, data, status, attempts, available_at,
                                     claimed_by, claimed_until, published_at, delivered_at, last_error)
                SELECT gen_random_uuid(), (ARRAY[%s, %s, %s])[1 + i %% 3], 1, gen_random_uuid(), t,
                       (ARRAY[%s::jsonb, %s::jsonb, %s::jsonb])[1 + i %% 3], 'delivered', 0, t, '', NULL, t, t, ''
                FROM (SELECT i, now() - make_interval(secs => %s - i) AS t FROM generate_series(1, %s) AS i) AS s
                """,  # noqa: S608 - the table name is the model's own
                [*(k for k, _ in kinds), *(json.dumps(d) for _, d in kinds), rows, rows],
            )
        return time.time() - started
    now = timezone.now()
    batch: list = []
    for i in range(rows):
        kind, data = kinds[i % 3]
        when = now - timedelta(seconds=rows - i)
        batch.append(OutboxEvent(type=kind, uid=uuid.uuid4(), data=data, status="delivered", occurred_at=when,
                                 available_at=when, published_at=when, delivered_at=when))
        if len(batch) >= 5000:
            OutboxEvent.objects.bulk_create(batch)
            batch = []
    if batch:
        OutboxEvent.objects.bulk_create(batch)
    return time.time() - started


def queries_per_event(stack: Stack, user: Any) -> dict[str, Any]:
    """Database statements the consumer spends on one allergy event (in-process, bus processes stopped).

    Counts what the embedded consumer runs to claim and settle one event (its user lease
    included), and what the RabbitMQ consumer runs for one message: the handler under the
    partition's ownership (no lease per event) and the settle of the ack; each statement is a
    round trip to the database.
    """
    import contextlib
    import threading

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from agent_bridge import outbox as owner
    from agent_bridge.agent_client import AgentClient
    from agent_bridge.timing import bus_timing
    from agent_bridge.transports.embedded import EmbeddedTransport
    from consumers import processing
    from consumers.runners import Consumer

    out: dict[str, Any] = {}
    produce(user, 0)
    transport = EmbeddedTransport(stop=threading.Event(), timing=bus_timing(), worker_id="bench-diagnostic")
    consumer = Consumer(transport=transport, stop=transport.stop)
    with CaptureQueriesContext(connection) as claim:
        delivery = transport.claim()
    with CaptureQueriesContext(connection) as handle:
        outcome = consumer.handle(delivery)
    out["embedded"] = {"claim": len(claim.captured_queries), "handle_and_settle": len(handle.captured_queries),
                       "outcome": outcome.status.value}
    produce(user, 1)
    delivery = transport.claim()
    with CaptureQueriesContext(connection) as rabbit:
        outcome = processing.process_envelope(
            delivery.envelope, attempt=1, agent=AgentClient.from_settings(),
            ownership=lambda envelope: contextlib.nullcontext(),
        )
        owner.outbox_settle_delivered(event_ids=[delivery.envelope["id"]])
    out["rabbitmq_handler"] = {"handle_and_settle": len(rabbit.captured_queries), "outcome": outcome.status.value,
                               "statements": [q["sql"][:90] for q in rabbit.captured_queries]}
    batch_users = users_create(20, label="batch")
    agent_users_create(stack, batch_users)
    out["rabbitmq_batch"] = queries_per_event_batch(batch_users)  # what a consumer's batch costs per event
    return out


def queries_per_event_batch(users: list) -> dict[str, Any]:
    """Statements the RabbitMQ consumer spends per event on a batch of allergy events, one per user
    of `users` (in-process, bus processes stopped): each user's run delivered as a worker thread
    does it (`Consumer.deliver_run`) and the whole batch settled as the consumer's loop does
    (`RabbitTransport.settle`, its acks going nowhere); what a batch costs divided by its events."""
    import threading

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from agent_bridge import outbox as owner
    from agent_bridge.models import OutboxEvent
    from agent_bridge.timing import bus_timing
    from agent_bridge.transports import Delivery
    from agent_bridge.transports.rabbitmq import RabbitTransport, Tag
    from consumers.runners import Consumer

    class NoBroker:
        def basic_ack(self, *args: Any, **kwargs: Any) -> None:
            pass

    start_id = last_event_id()
    for i, user in enumerate(users):
        produce(user, i)
    rows = list(OutboxEvent.objects.filter(id__gt=start_id).order_by("id"))
    owner.outbox_mark_published(pks=[row.pk for row in rows], timing=bus_timing())  # as the relay does
    runs = [[Delivery(envelope=row.envelope, attempt=1, tag=Tag(n + 1, 0))] for n, row in enumerate(rows)]
    transport = RabbitTransport(stop=threading.Event(), timing=bus_timing())
    transport.channel = transport.publisher = NoBroker()
    consumer = Consumer(transport=transport, stop=transport.stop, concurrency=1)
    with CaptureQueriesContext(connection) as batch:
        settled = [result for run in runs for result in consumer.deliver_run(run)]
        transport.settle(settled)
    statements = len(batch.captured_queries)
    return {"events": len(rows), "statements": statements, "per_event": round(statements / max(1, len(rows)), 2),
            "outcomes": sorted({outcome.status.value for _, outcome in settled})}
