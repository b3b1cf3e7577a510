"""Bus measurements, run inside the orchestrator's Django process (bench settings, the bench database).

Events are produced by the real domain service (`allergies.services.allergy_profile_replace`),
so each one is a committed allergy change with its outbox row, exactly as PUT /api/allergies/
makes it. Delivery is observed where it ends: the Agent double's request log (`timestamp`,
epoch seconds, taken when the double starts handling the request).
"""
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
    """bulk_create `rows` delivered outbox rows (3 per simulated user), like days of past traffic."""
    from agent_bridge import events
    from agent_bridge.models import OutboxEvent

    kinds = [(events.USER_REGISTERED, {}), (events.EMAIL_REQUESTED, {"kind": "verify"}),
             (events.ALLERGIES_REPLACED, {"revision": 1, **BODIES[0], "allergy_flags": ["lactose", "peanuts"]})]
    started = time.time()
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
