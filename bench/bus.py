"""Bus measurements, run inside the orchestrator's Django process (bench settings, the bench database).

Events are produced by the real domain service (`allergies.services.allergy_profile_replace`),
so each one is a committed allergy change with its outbox row, exactly as PUT /api/allergies/
makes it. Delivery is observed where it ends: the Agent double's request log (`timestamp`,
epoch seconds, taken when the double starts handling the request).
"""
import contextlib
import time
import uuid
from contextlib import AbstractContextManager
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


def burst(stack: Stack, users: list, *, cap_s: float,
          meter: AbstractContextManager[Any] | None = None) -> dict[str, Any]:
    """Commit len(users) events in one transaction, then time their delivery to the double;
    `meter` (a bench.cpu.CpuMeter) spans the drain: from just before the COMMIT (the bus sees
    nothing earlier) until the last event settled, not the producing."""
    start_id = last_event_id()
    t_start = time.time()
    with contextlib.ExitStack() as drain:
        with transaction.atomic():
            for i, user in enumerate(users):
                produce(user, i)
            drain.enter_context(meter or contextlib.nullcontext())
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
        **_relay_rate(start_id, len(users), t_commit),
    }


def _relay_rate(after_id: int, n: int, t_commit: float) -> dict[str, Any]:
    """RabbitMQ: when the relay had marked the whole burst published (`published_at` of its last
    batch), so a reader can tell whether the relay or the consumers set the pace."""
    from agent_bridge.models import OutboxEvent

    last = OutboxEvent.objects.filter(id__gt=after_id).aggregate(m=Max("published_at"))["m"]
    if last is None:
        return {}
    seconds = last.timestamp() - t_commit
    return {"relay_s": round(seconds, 3), "relay_events_per_s": round(n / seconds, 1) if seconds > 0 else None}


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


def history_span_seconds() -> float:
    """The age range of the history rows: the retention window plus the hour that the production
    schedule (a prune every BUS_PRUNE_INTERVAL_SECONDS, 1 h by default) lets accumulate past it.
    So the table holds what it holds in production's steady state, and each prune deletes one
    interval's slice (the oldest 1/169 of the rows with the defaults)."""
    from django.conf import settings

    return settings.OUTBOX_RETENTION_DAYS * 86400 + max(settings.BUS_PRUNE_INTERVAL_SECONDS, 1.0)


def history_add(rows: int) -> float:
    """Add `rows` delivered outbox rows (3 kinds in turn: registered, email, allergies), delivered
    at ages spread evenly over history_span_seconds(); returns the seconds it took.

    PostgreSQL: one INSERT … SELECT over generate_series that copies every other column from three
    rows written with the ORM (so a column added to the model needs no change here); 3M rows in
    about a minute, where bulk_create would take an hour on this machine. Other databases:
    bulk_create.
    """
    from django.db import connection

    from agent_bridge import events
    from agent_bridge.models import OutboxEvent

    kinds = [(events.USER_REGISTERED, {}), (events.EMAIL_REQUESTED, {"kind": "verify"}),
             (events.ALLERGIES_REPLACED, {"revision": 1})]
    span = history_span_seconds()
    started = time.time()
    now = timezone.now()
    if rows <= 0:
        return 0.0
    if connection.vendor == "postgresql":
        templates = [OutboxEvent.objects.create(type=kind, uid=uuid.uuid4(), data=data, status="delivered",
                                                occurred_at=now, available_at=now, published_at=now,
                                                delivered_at=now)
                     for kind, data in kinds]
        table = OutboxEvent._meta.db_table
        columns, values = [], []
        for field in OutboxEvent._meta.concrete_fields:
            if field.primary_key:
                continue
            columns.append(connection.ops.quote_name(field.column))
            if field.name in ("event_id", "uid"):
                values.append("gen_random_uuid()")
            elif field.get_internal_type() == "DateTimeField" and getattr(templates[0], field.attname) is not None:
                values.append("s.t")
            else:
                values.append(f"tpl.{connection.ops.quote_name(field.column)}")
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} ({", ".join(columns)})
                SELECT {", ".join(values)}
                FROM (SELECT i, now() - make_interval(secs => %s * i / %s) AS t
                      FROM generate_series(1, %s) AS i) AS s
                JOIN {table} AS tpl ON tpl.id = (ARRAY[%s, %s, %s]::bigint[])[1 + s.i %% 3]
                """,  # noqa: S608 - the table and column names are the model's own
                [span, rows, rows - len(templates), *(t.pk for t in templates)],
            )
        return time.time() - started
    batch: list = []
    for i in range(rows):
        kind, data = kinds[i % 3]
        when = now - timedelta(seconds=span * (i + 1) / rows)
        batch.append(OutboxEvent(type=kind, uid=uuid.uuid4(), data=data, status="delivered", occurred_at=when,
                                 available_at=when, published_at=when, delivered_at=when))
        if len(batch) >= 5000:
            OutboxEvent.objects.bulk_create(batch)
            batch = []
    if batch:
        OutboxEvent.objects.bulk_create(batch)
    return time.time() - started


def history_vacuum() -> float | None:
    """VACUUM (ANALYZE) the outbox after a bulk insert, as autovacuum would have done long before a
    production table reached that size: otherwise the measurement right after the insert measures
    the insert's aftermath (stale statistics, unset visibility map, vacuum and checkpoint I/O in
    the middle of it), not the table's size. Seconds taken; None when not PostgreSQL."""
    from django.db import connection

    from agent_bridge.models import OutboxEvent

    if connection.vendor != "postgresql":
        return None
    started = time.time()
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(OutboxEvent._meta.db_table)}")
    return round(time.time() - started, 1)


def history_prune() -> dict[str, Any]:
    """What the scheduled prune does at this size, timed: the production code (the consumer's or the
    relay's Pruner and `manage.py prune_outbox` call the same function), with its defaults."""
    from agent_bridge import outbox as owner
    from agent_bridge.models import OutboxEvent

    started = time.time()
    deleted = owner.outbox_prune()
    return {"deleted": deleted, "prune_s": round(time.time() - started, 3), "rows_after": OutboxEvent.objects.count()}


PRICE_TIERS = (["$"], ["$$"])  # a preference change that always changes something


def flood(user: Any, n: int, *, per_transaction: int = 200) -> dict[str, Any]:
    """`n` preference updates of one user through the real service (`identity.services`), committed
    `per_transaction` at a time, bus stopped: `n` undelivered events of one user (unless the
    service refuses some, e.g. a per-user limit on queued events: counted, not hidden)."""
    from identity.services import user_preferences_update

    start_id = last_event_id()
    started = time.time()
    refused: dict[str, int] = {}
    done = 0
    while done < n:
        with transaction.atomic():
            for _ in range(min(per_transaction, n - done)):
                try:
                    with transaction.atomic():
                        user_preferences_update(user=user, preferences={"price_comfort": PRICE_TIERS[done % 2]})
                except Exception as exc:  # a refusal is a measured outcome, reported by type
                    refused[type(exc).__name__] = refused.get(type(exc).__name__, 0) + 1
                done += 1
    from agent_bridge.models import OutboxEvent

    queued = OutboxEvent.objects.filter(id__gt=start_id, uid=user.uid).count()
    return {"updates": n, "events_queued": queued, "refused": refused, "commit_s": round(time.time() - started, 2),
            "first_id": start_id, "started_at": started}


def drain_watch(after_id: int, uid: Any, total: int, started: float, cap_s: float) -> dict[str, Any]:
    """Poll (own database connection, in a thread) until every one of the user's `total` events
    after `after_id` is settled; `drain_s` from `started`."""
    from django.db import connection

    from agent_bridge.models import OutboxEvent

    out: dict[str, Any] = {"drained": False, "drain_s": None, "left": total}
    try:
        deadline = started + cap_s
        while time.time() < deadline:
            left = OutboxEvent.objects.filter(id__gt=after_id, uid=uid, status__in=["pending", "published"]).count()
            out["left"] = left
            if left == 0:
                out.update(drained=True, drain_s=round(time.time() - started, 2))
                break
            time.sleep(0.1)
    finally:
        connection.close()
    return out


def agent_calls_for(stack: Stack, uid: Any, since: float) -> int:
    """Requests the double received for one user since `since` (coalescing shows here)."""
    return sum(1 for e in stack.agent_requests() if e["timestamp"] >= since and f"/users/{uid}" in e["path"])


def partitions_balanced(prefix: str, partitions: int) -> bool:
    """Every partition queue owned, and no consumer connection holding more than its fair share
    (the consumers' own criterion: ceil(partitions / live members), agent_bridge.leases)."""
    from django.utils import timezone as tz

    from agent_bridge.models import PartitionLease

    now = tz.now()
    leases = PartitionLease.objects.filter(name__startswith=f"{prefix}.work.", expires_at__gt=now).exclude(owner="")
    owners = list(leases.values_list("name", "owner"))
    members = PartitionLease.objects.filter(name__startswith=f"{prefix}.member.", expires_at__gt=now).count()
    if len({name for name, _ in owners}) < partitions or members == 0:
        return False
    per_owner: dict[str, int] = {}
    for _, owner in owners:
        per_owner[owner] = per_owner.get(owner, 0) + 1
    return max(per_owner.values()) <= -(-partitions // members)


def balance(stack: Stack, users: list, *, partitions: int, cap_s: float = 30.0) -> dict[str, Any]:
    """Drive a trickle of events until the partitions are shared fairly (a consumer takes a
    partition's ownership with its first message, and gives one up every few seconds when it
    holds more than its share), so that a burst measures the consumers, not the hand-over."""
    started = time.time()
    i = 0
    while time.time() - started < cap_s:
        try:
            if partitions_balanced(stack.prefix, partitions):
                return {"balanced": True, "balance_s": round(time.time() - started, 1)}
        except Exception as exc:  # a bus without these leases: measure anyway, say so
            return {"balanced": None, "balance_s": None, "note": f"ownership not readable: {type(exc).__name__}"}
        for _ in range(8):
            produce(users[i % len(users)], i)
            i += 1
        time.sleep(0.5)
    return {"balanced": False, "balance_s": round(time.time() - started, 1)}


def queries_per_event_batch(users: list) -> dict[str, Any]:
    """Statements the RabbitMQ consumer spends per event on a batch of allergy events, one per user
    of `users` (in-process, bus processes stopped; a cross-check of the daemons' own count in
    `run.Bench.statements_per_event`, which includes everything they send): each user's run delivered as a worker thread
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
