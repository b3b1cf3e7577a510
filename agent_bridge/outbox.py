"""The outbox owner: every write to `OutboxEvent` and `DeadLetter` rows happens here.

State of an outbox row (as Saleor keeps delivery-state changes in one place):

    pending ──claim (embedded; heads of N users, their leases taken)──▶ pending + claimed
       │                              │ settle (many per UPDATE, the users' leases freed in it) ──▶ delivered
       │                              │ retry later: attempts+1, due later, claim released
       │ relay: published             └ dead-letter ──▶ dead (+ DeadLetter row)
       ▼
    published ──settle──▶ delivered | retry later (due = settle deadline) | dead
       └ held by a consumer: settle deadline extended (renewed while held)
    dead ──replay──▶ pending (embedded) | published (RabbitMQ)
    delivered / dead ──prune (retention)──▶ gone;  a user's rows ──erase──▶ redacted or gone

Callers (the transports, the consumer loop, the relay, replay, the receivers) decide *when*;
this module decides *how*, so each transition is written one way only. `DeadLetter` rows keep
their table in the consumers app (their admin lives there) but are written only here.
"""
import logging
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, connections, transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from agent_bridge import events, leases
from agent_bridge.delivery import Cause
from agent_bridge.events import Envelope, Payload
from agent_bridge.models import OutboxEvent
from agent_bridge.timing import BusTiming
from consumers.models import DeadLetter
from project import metrics, rawsql
from project.tracing import current_traceparent

logger = logging.getLogger(__name__)

PENDING = OutboxEvent.Status.PENDING
PUBLISHED = OutboxEvent.Status.PUBLISHED
DELIVERED = OutboxEvent.Status.DELIVERED
DEAD = OutboxEvent.Status.DEAD


class OutboxOutsideTransaction(RuntimeError):
    """An event would not be atomic with the change it reports."""


def outbox_event_add(
    *,
    uid: uuid.UUID | None,
    payload: Payload | None = None,
    event_type: str | None = None,
    data: dict[str, Any] | None = None,
    not_before: datetime | None = None,
) -> OutboxEvent:
    """Write an event in the caller's transaction (the domain change it reports), with the
    caller's trace context; `not_before` delays it (neither the embedded bus nor the relay takes
    it earlier).

    Give the declared `payload`, or `event_type` and `data`, which must then be a declared
    payload of that type (events.UnknownPayload otherwise).
    """
    if payload is None:
        payload = events.payload_check(event_type or "", data or {})
    if not connection.in_atomic_block:
        raise OutboxOutsideTransaction(f"{payload.TYPE} must be written inside the domain change's transaction")
    extra = {"available_at": not_before} if not_before is not None else {}
    return OutboxEvent.objects.create(
        type=payload.TYPE, schema=payload.SCHEMA, uid=uid, data=payload.as_data(),
        traceparent=current_traceparent(), **extra,
    )


def outbox_event_write(*, uid: uuid.UUID | None, payload: Payload) -> None:
    """outbox_event_add for the hottest producer (every allergy change from the API): the same row, in the
    caller's transaction, by one hand-written INSERT that reads nothing back (no ORM compilation, no model
    instance; inside project.rawsql.pipeline it is sent with the transaction's other writes). Returns nothing:
    the row's primary key is not fetched."""
    if not connection.in_atomic_block:
        raise OutboxOutsideTransaction(f"{payload.TYPE} must be written inside the domain change's transaction")
    rawsql.insert_values(OutboxEvent, {
        "type": payload.TYPE, "schema": payload.SCHEMA, "uid": uid, "data": payload.as_data(),
        "traceparent": current_traceparent(),
    })


def _status_of_keyed(*statuses: OutboxEvent.Status) -> Q:
    """status in `statuses`, for rows found by key (primary key, event id), as a test no index can serve (NOT IN
    the other statuses). Statistics taken while nothing was pending or published (the usual state: every row
    delivered) estimate one such row, and a plain `status = ...` then made the planner read every row of that
    status through a status index instead of looking the given ones up by key: each relay batch or claim renewal
    during a burst read the whole backlog."""
    return ~Q(status__in=[status for status in OutboxEvent.Status if status not in statuses])


def _after(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)


# --- embedded bus: the table is the queue ---------------------------------------------------


def _priority():
    # Allergy events first (events.HIGH_PRIORITY_TYPES), then the oldest due.
    return Case(When(type__in=events.HIGH_PRIORITY_TYPES, then=Value(0)), default=Value(1))


@dataclass(frozen=True)
class Claim:
    """A claimed event and the coalesced rows that the same handler call delivers."""

    event: OutboxEvent
    covered: list[int]
    #: The event was claimed before and that claim lapsed: its consumer died (or stalled) maybe
    #: mid-handler, with an Agent write sent and no answer recorded.
    taken_over: bool = False


class _ClaimSql:
    """The embedded claim's statements on SQLite, and the names _PostgresClaim builds its one statement from,
    written by hand once per database: the consumer loop claims before nearly every handler call, and
    compiling the ORM's statements each time cost more CPU than the database spent on them. Only quoted
    names from the model's metadata are interpolated; values are parameters (IN lists get one placeholder
    per value)."""

    def __init__(self, using: str) -> None:
        db = connections[using]
        quote = db.ops.quote_name
        meta = OutboxEvent._meta
        self.using = using
        self.columns = rawsql.Columns(OutboxEvent, "o")
        self.table = f"{quote(meta.db_table)} o"
        bare = {f.attname: quote(f.column) for f in meta.concrete_fields}
        self.col = c = {attname: f"o.{column}" for attname, column in bare.items()}

        def due(c: dict[str, str]) -> str:
            return (f"{c['status']} = %s AND {c['available_at']} <= %s "
                    f"AND ({c['claimed_until']} IS NULL OR {c['claimed_until']} < %s)")

        self.due = due(c)
        urgent = rawsql.placeholders(len(events.HIGH_PRIORITY_TYPES))
        self.priority = f"CASE WHEN {c['type']} IN ({urgent}) THEN 0 ELSE 1 END"
        # The UPDATE names its table without an alias (SQLite's UPDATE takes none).
        self.update = (f"UPDATE {quote(meta.db_table)} SET {bare['claimed_by']} = %s, "  # noqa: S608
                       f"{bare['claimed_until']} = %s WHERE {due(bare)} AND {bare['id']} IN ")

    def prep(self, attname: str, value: Any) -> Any:
        return OutboxEvent._meta.get_field(attname).get_db_prep_value(value, connections[self.using])

    def due_params(self, now: datetime) -> list:
        when = self.prep("available_at", now)
        return [PENDING.value, when, when]

    def rows(self, sql: str, params: list) -> list[tuple]:
        return rawsql.fetchall(sql, params, using=self.using)

    def claim(self, pks: list[int], *, worker_id: str, until: datetime, now: datetime) -> None:
        """Claim those of `pks` that are still due: pending, available, not claimed or claimed until before `now`."""
        rawsql.execute(f"{self.update}({rawsql.placeholders(len(pks))})",
                       [worker_id, self.prep("claimed_until", until), *self.due_params(now), *pks], using=self.using)


_claim_sql: dict[str, _ClaimSql] = {}


def _claim_statements(using: str = "default") -> _ClaimSql:
    found = _claim_sql.get(using)
    if found is None:
        found = _claim_sql[using] = _ClaimSql(using)
    return found


def _uuid_of(value: Any) -> uuid.UUID | None:
    """A uid column's value as the model holds it (SQLite returns its text)."""
    if value is None or isinstance(value, uuid.UUID):
        return value
    return uuid.UUID(str(value))


def outbox_claim_users(
    *, worker_id: str, timing: BusTiming, users: int, exclude_uids: Collection[str] = (), coalesce_limit: int = 500
) -> list[Claim]:
    """Claim, for one ownership window, the most urgent due event of each of up to `users`
    distinct users (allergy events first, then the oldest due), skipping `exclude_uids` (users
    whose work is in flight in this consumer) and users whose lease another consumer holds, each
    with the other due, never-tried events of its user and type that one handler call delivers
    too (events.COALESCING_TYPES).

    The claim takes each claimed user's lease (agent_bridge.leases, owner `worker_id`, until the
    claim's end): while a consumer works on a user no other claims any of that user's events, and
    a consumer killed mid-handler leaves both to lapse together and be taken over. The settle
    frees the lease (outbox_settle_delivered's `free_users`; outbox_claims_end when the consumer
    stops). On PostgreSQL all of it is one statement (_PostgresClaim); on SQLite a few. The
    coalesced rows are committed (visible now), so the state each handler reads after this covers
    them.
    """
    if users <= 0:
        return []
    q = _claim_statements()
    now = timezone.now()
    until = _after(timing.ownership_seconds)
    excluded = [uuid.UUID(str(uid)) for uid in exclude_uids]
    if connections[q.using].vendor == "postgresql":
        return _postgres_claim(q.using).claim(worker_id=worker_id, users=users, excluded=excluded, now=now,
                                              until=until, coalesce_limit=coalesce_limit)
    # One transaction: a statement failing halfway (SQLite busy) must not leave leases taken and rows claimed
    # that nobody returned, to wait out a whole ownership window.
    with transaction.atomic(using=q.using):
        return _claim_users_stepwise(q, worker_id=worker_id, users=users, excluded=excluded, now=now, until=until,
                                     coalesce_limit=coalesce_limit)


def _claim_users_stepwise(q: "_ClaimSql", *, worker_id: str, users: int, excluded: list[uuid.UUID], now: datetime,
                          until: datetime, coalesce_limit: int) -> list[Claim]:
    """outbox_claim_users in several statements (SQLite, which has no writing CTEs): the candidates, the heads'
    leases, the heads' claim and its read-back, then the coalesced rows."""
    c = q.col
    lease = leases.user_lease_sql(q.using)
    where = f"{q.due} AND NOT ({c['uid']} IS NOT NULL AND {lease.held_elsewhere(c['uid'], owner='%s', now='%s')})"
    params = [*q.due_params(now), worker_id, q.prep("claimed_until", now)]
    if excluded:
        where += f" AND NOT ({c['uid']} IN ({rawsql.placeholders(len(excluded))}) AND {c['uid']} IS NOT NULL)"
        params += [q.prep("uid", uid) for uid in excluded]
    # A few candidates per user wanted: a flooding user's rows must not hide everyone else's.
    candidates = q.rows(
        f"SELECT {c['id']}, {c['uid']}, {c['claimed_until']} IS NOT NULL FROM {q.table} WHERE {where} "  # noqa: S608
        f"ORDER BY {q.priority}, {c['available_at']}, {c['id']} LIMIT %s",
        [*params, *events.HIGH_PRIORITY_TYPES, users * 4 + 4],
    )
    heads: dict[object, int] = {}
    lapsed: set[int] = set()
    for pk, uid, was_claimed in candidates:
        key = _uuid_of(uid) if uid is not None else ("event", pk)
        if key not in heads:
            heads[key] = pk
            if was_claimed:
                lapsed.add(pk)
            if len(heads) == users:
                break
    wanted = [key for key in heads if isinstance(key, uuid.UUID)]
    leased = leases.user_leases_take(uids=wanted, owner=worker_id, until=until)
    pks = [pk for key, pk in heads.items() if key in leased or not isinstance(key, uuid.UUID)]
    if not pks:
        return []
    q.claim(pks, worker_id=worker_id, until=until, now=now)
    mine = q.rows(
        f"SELECT {q.columns.select(q.using)} FROM {q.table} WHERE {c['id']} IN ({rawsql.placeholders(len(pks))}) "  # noqa: S608
        f"AND {c['status']} = %s AND {c['claimed_by']} = %s AND {c['claimed_until']} = %s "
        f"ORDER BY {q.priority}, {c['available_at']}, {c['id']}",
        [*pks, PENDING.value, worker_id, q.prep("claimed_until", until), *events.HIGH_PRIORITY_TYPES],
    )
    claimed = [q.columns.instance(row, 0, q.using) for row in mine]
    # A head claimed (or settled) by someone else between the candidates and the claim: its lease goes back.
    leases.user_leases_free(uids=leased - {event.uid for event in claimed}, owner=worker_id)
    covered = _claim_coalesced(claimed, worker_id=worker_id, until=until, now=now, limit=coalesce_limit)
    return [Claim(event, covered.get(event.pk, []), taken_over=event.pk in lapsed) for event in claimed]


class _PostgresClaim:
    """outbox_claim_users on PostgreSQL as one statement, whatever the number of users: the candidates (due, not
    excluded, not leased to another consumer), one head per user, the heads' users' leases taken (an upsert
    whose rows are locked in uid order, so concurrent claims never deadlock), the heads of the users leased
    claimed, their coalesced rows claimed, and the claimed heads returned with their coalesced rows' ids and
    the users leased but not claimed (a head claimed or settled meanwhile: their leases are freed at once).
    Parameters are named and lists are arrays, so the text is the same for every call and the statement is
    prepared on the server (project.rawsql)."""

    def __init__(self, q: "_ClaimSql") -> None:
        meta = OutboxEvent._meta
        quote = connections[q.using].ops.quote_name
        lease = leases.user_lease_sql(q.using)
        bare = {f.attname: quote(f.column) for f in meta.concrete_fields}
        table = quote(meta.db_table)
        o = q.col
        s = {attname: f"s.{column}" for attname, column in bare.items()}
        c = {attname: f"c.{column}" for attname, column in bare.items()}

        def due(col: dict[str, str], *, by_key: bool = False) -> str:
            # by_key: for rows looked up by key (primary key, the user's index), a status test no index can serve
            # (`IS TRUE`; status is never null), as _status_of_keyed for the ORM's updates and for the same reason:
            # during a burst of 3,000 events each claim read all 3,000 several times over (5 ms instead of 1.5).
            status = f"({col['status']} = %(pending)s) IS TRUE" if by_key else f"{col['status']} = %(pending)s"
            return (f"{status} AND {col['available_at']} <= %(now)s "
                    f"AND ({col['claimed_until']} IS NULL OR {col['claimed_until']} < %(now)s)")

        priority = "CASE WHEN {type} = ANY(%(urgent)s::text[]) THEN 0 ELSE 1 END"

        def wanted(rank: str, types: str, gate: str = "", limit: str = "%(scan)s") -> str:
            # Due, of `types` (a condition on the type, or none), of a user not in flight here.
            return (f"SELECT {o['id']} AS id, {o['uid']} AS uid, {rank} AS rank, {o['available_at']} AS available_at, "  # noqa: S608
                    f"{o['type']} AS type, {o['claimed_until']} IS NOT NULL AS lapsed "
                    f"FROM {q.table} WHERE {gate}{due(o)} {types}"
                    f"AND NOT ({o['uid']} IS NOT NULL AND {o['uid']} = ANY(%(excluded)s::uuid[])) "
                    f"ORDER BY {o['available_at']}, {o['id']} LIMIT {limit}")

        # The others are read as the first due rows of any type, the allergy events then dropped: fewer than
        # `scan` of those are due (or this part does not run), so the first 2 * scan rows hold every other
        # row wanted. A filter on "not an allergy event" would let the planner's estimate of it decide the
        # plan: with statistics taken while nearly every row was a pending allergy event (a burst, delivered
        # since), it expected to read the whole table for `scan` rows and chose a sequential scan of it.
        urgent_type = f"AND {o['type']} = ANY(%(urgent)s::text[]) "
        others = (f"SELECT x.id, x.uid, x.rank, x.available_at, x.type, x.lapsed FROM "  # noqa: S608
                  f"({wanted('1', '', '(SELECT count(*) FROM urgent) < %(scan)s AND ', '%(prefix)s')}) x "
                  f"WHERE NOT (x.type = ANY(%(urgent)s::text[])) ORDER BY x.available_at, x.id LIMIT %(scan)s")
        self.returned = rawsql.Columns(OutboxEvent, "c")
        # Only quoted names from the model's metadata are interpolated; values are parameters.
        self.sql = (
            # The oldest due allergy events, then (only if they are fewer than wanted: a one-time filter) the
            # oldest due others, each read in the order of the (status, available_at) index and only as far
            # as needed: no sort of every due row per claim.
            f"WITH urgent AS ({wanted('0', urgent_type)}), "  # noqa: S608
            f"candidate AS (SELECT u.id, u.uid, u.lapsed, "
            f"row_number() OVER (ORDER BY u.rank, u.available_at, u.id) AS pos "
            f"FROM (SELECT * FROM urgent UNION ALL ({others})) u "
            f"ORDER BY u.rank, u.available_at, u.id LIMIT %(scan)s), "
            # One head per user (each event without a user is its own), the most urgent first, of users not
            # leased to another consumer (checked on the candidates only: a probe by key each, however many
            # users have a lease row).
            f"head AS (SELECT h.id, h.uid, h.lapsed FROM candidate h WHERE h.uid IS NULL OR (NOT EXISTS "
            f"(SELECT 1 FROM candidate e WHERE e.uid = h.uid AND e.pos < h.pos) "
            f"AND NOT {lease.held_elsewhere('h.uid', owner='%(worker)s', now='%(now)s')}) "
            f"ORDER BY h.pos LIMIT %(users)s), "
            f"leased AS ({lease.take('SELECT h.uid, %(worker)s, %(until)s FROM head h WHERE h.uid IS NOT NULL ORDER BY h.uid', now='%(now)s')} "  # noqa: E501
            f"RETURNING {lease.table}.{lease.uid} AS uid), "
            f"claimed AS (UPDATE {table} SET {bare['claimed_by']} = %(worker)s, {bare['claimed_until']} = %(until)s "
            f"WHERE {bare['id']} IN (SELECT h.id FROM head h WHERE h.uid IS NULL OR h.uid IN (SELECT uid FROM leased)) "
            f"AND {due(bare, by_key=True)} RETURNING {table}.*), "
            # Up to coalesce_limit due, never-tried rows of each claimed head's user and type (coalescing types only;
            # any of them: the handler sends the state they all led to), found per head by the user's index (a
            # lateral subquery, unordered: ordered by id, the planner walks the primary key) and claimed by primary
            # key. Written as a join of the table with the heads, statistics taken while a few users had thousands
            # of pending rows each (an API burst, delivered since) made the planner hash the whole table twice.
            f"sibling AS (SELECT n.id FROM claimed c CROSS JOIN LATERAL (SELECT {s['id']} AS id FROM {table} s "
            f"WHERE {s['uid']} = {c['uid']} AND {s['type']} = {c['type']} AND {s['id']} <> {c['id']} "
            f"AND {due(s, by_key=True)} "
            f"AND {s['attempts']} = 0 LIMIT %(coalesce_limit)s) n "
            f"WHERE {c['type']} = ANY(%(coalescing)s::text[])), "
            f"covered AS (UPDATE {table} SET {bare['claimed_by']} = %(worker)s, {bare['claimed_until']} = %(until)s "
            f"WHERE {bare['id']} = ANY(ARRAY(SELECT id FROM sibling)) AND {due(bare, by_key=True)} "
            f"RETURNING {bare['id']} AS id, {bare['uid']} AS uid) "
            f"SELECT {self.returned.select(q.using)}, "
            # One head per user, so a covered row's user names its head.
            f"ARRAY(SELECT v.id FROM covered v WHERE v.uid = {c['uid']} ORDER BY v.id), "
            f"ARRAY(SELECT l.uid FROM leased l WHERE NOT EXISTS (SELECT 1 FROM claimed x WHERE x.{bare['uid']} = l.uid)), "  # noqa: E501
            f"(SELECT h.lapsed FROM head h WHERE h.id = {c['id']}) "
            f"FROM (VALUES (1)) AS one (x) LEFT JOIN claimed c ON true "
            f"ORDER BY {priority.format(type=c['type'])}, {c['available_at']}, {c['id']}"
        )
        self.using = q.using
        self.prep = q.prep

    def params(self, *, worker_id: str, users: int, excluded: list[uuid.UUID], now: datetime, until: datetime,
               coalesce_limit: int) -> dict[str, object]:
        """The statement's parameters (also what a test gives EXPLAIN)."""
        scan = users * 4 + 4
        return {
            "pending": PENDING.value, "now": self.prep("available_at", now), "until": self.prep("claimed_until", until),
            "worker": worker_id, "excluded": _array(excluded), "urgent": _array(events.HIGH_PRIORITY_TYPES),
            "coalescing": _array(events.COALESCING_TYPES), "scan": scan, "prefix": 2 * scan, "users": users,
            "coalesce_limit": coalesce_limit,
        }

    def claim(self, *, worker_id: str, users: int, excluded: list[uuid.UUID], now: datetime, until: datetime,
              coalesce_limit: int) -> list[Claim]:
        rows = rawsql.fetchall(self.sql, self.params(
            worker_id=worker_id, users=users, excluded=excluded, now=now, until=until, coalesce_limit=coalesce_limit,
        ), using=self.using)
        width = len(self.returned)
        strays = rows[0][width + 1] if rows else []
        if strays:
            leases.user_leases_free(uids=[_uuid_of(uid) for uid in strays], owner=worker_id)
        return [Claim(self.returned.instance(row, 0, self.using), list(row[width]), taken_over=bool(row[width + 2]))
                for row in rows if row[0] is not None]


def _array(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal of UUIDs or plain names (no quoting needed), passed as text and cast in the
    statement: the same parameter type for every length (psycopg prepares per text and types)."""
    return f"{{{','.join(map(str, values))}}}"


_postgres_claims: dict[str, _PostgresClaim] = {}


def _postgres_claim(using: str) -> _PostgresClaim:
    found = _postgres_claims.get(using)
    if found is None:
        found = _postgres_claims[using] = _PostgresClaim(_claim_statements(using))
    return found


def _claim_coalesced(heads: list[OutboxEvent], *, worker_id: str, until: datetime, now: datetime,
                     limit: int) -> dict[int, list[int]]:
    """Head pk → the due, never-tried rows of its user and type now claimed with it."""
    pairs = {(event.uid, event.type): event.pk for event in heads
             if event.type in events.COALESCING_TYPES and event.uid is not None}
    if not pairs:
        return {}
    q = _claim_statements()
    c = q.col
    same = " OR ".join([f"({c['uid']} = %s AND {c['type']} = %s)"] * len(pairs))
    same_params = [value for uid, event_type in pairs for value in (q.prep("uid", uid), event_type)]
    head_pks = [event.pk for event in heads]
    siblings = q.rows(
        f"SELECT {c['id']} FROM {q.table} WHERE {q.due} AND ({same}) AND {c['attempts']} = 0 "  # noqa: S608
        f"AND NOT ({c['id']} IN ({rawsql.placeholders(len(head_pks))})) ORDER BY {c['id']} LIMIT %s",
        [*q.due_params(now), *same_params, *head_pks, limit * len(pairs)],
    )
    pks = [pk for (pk,) in siblings]
    if not pks:
        return {}
    q.claim(pks, worker_id=worker_id, until=until, now=now)
    covered: dict[int, list[int]] = {}
    taken = q.rows(
        f"SELECT {c['id']}, {c['uid']}, {c['type']} FROM {q.table} "  # noqa: S608
        f"WHERE {c['id']} IN ({rawsql.placeholders(len(pks))}) AND {c['claimed_by']} = %s "
        f"AND {c['claimed_until']} = %s ORDER BY {c['id']}",
        [*pks, worker_id, q.prep("claimed_until", until)],
    )
    for pk, uid, event_type in taken:
        covered.setdefault(pairs[(_uuid_of(uid), event_type)], []).append(pk)
    return covered


def outbox_claim_release(*, pks: list[int], worker_id: str) -> None:
    """Give claimed rows back untouched (coalesced events whose head was not delivered)."""
    if pks:
        OutboxEvent.objects.filter(_status_of_keyed(PENDING), pk__in=pks, claimed_by=worker_id).update(
            claimed_by="", claimed_until=None
        )


def outbox_claim_renew(*, pks: list[int], worker_id: str, timing: BusTiming, uid: uuid.UUID | None = None) -> None:
    """The claim's work still runs: its rows, and the lease of its user `uid` the claim took, for one more window."""
    OutboxEvent.objects.filter(_status_of_keyed(PENDING), pk__in=pks, claimed_by=worker_id).update(
        claimed_until=_after(timing.ownership_seconds)
    )
    if uid is not None:
        leases.user_leases_renew(uids=[uid], owner=worker_id)


def outbox_claims_end(*, worker_id: str) -> None:
    """A consumer's claims are over (its transport closes, nothing of it in flight): the leases its claims
    took are freed for other consumers at once (otherwise they lapse after one ownership window). Its rows
    still claimed stay so until their claim lapses: they may be delivered already (at least once)."""
    leases.user_leases_free_all(owner=worker_id)


def outbox_seconds_until_next_due() -> float | None:
    """Seconds until the next pending event waiting for a delayed retry is due (None: none waits)."""
    now = timezone.now()
    nearest = (
        OutboxEvent.objects.filter(status=PENDING, available_at__gt=now)
        .order_by("available_at")
        .values_list("available_at", flat=True)
        .first()
    )
    return None if nearest is None else max(0.0, (nearest - now).total_seconds())


# --- RabbitMQ: the relay hands events to the broker -----------------------------------------


def outbox_pending(*, limit: int) -> list[OutboxEvent]:
    """Pending rows due now (a `not_before` row waits), allergy events first."""
    due = OutboxEvent.objects.filter(status=PENDING, available_at__lte=timezone.now())
    return list(due.order_by(_priority(), "id")[:limit])


def outbox_mark_published(*, pks: list[int], timing: BusTiming) -> None:
    """The broker confirmed these; each must be settled by its settle deadline or is published again."""
    OutboxEvent.objects.filter(_status_of_keyed(PENDING), pk__in=pks).update(
        status=PUBLISHED, published_at=timezone.now(), available_at=_after(timing.settle_deadline_seconds())
    )


def outbox_publish_refused(*, pks: list[int], timing: BusTiming) -> None:
    """The broker refused these (nack, or no queue for the routing key): they stay pending and
    are offered again after the first retry delay, not in a tight loop."""
    if pks:
        delay = timing.retry_delay_seconds(attempt=1) or timing.renew_seconds
        OutboxEvent.objects.filter(_status_of_keyed(PENDING), pk__in=pks).update(available_at=_after(delay))


def outbox_settle_deadline_extend(*, event_ids: Collection[uuid.UUID | str], timing: BusTiming) -> None:
    """A consumer still holds these messages (taken off the broker, queued behind their user's
    earlier events or in a handler): move their settle deadline on so the relay does not
    publish them again meanwhile (renewed while they are held, like an embedded claim)."""
    if event_ids:
        OutboxEvent.objects.filter(_status_of_keyed(PUBLISHED), event_id__in=list(event_ids)).update(
            available_at=_after(timing.settle_deadline_seconds())
        )


def outbox_overdue_published(*, limit: int) -> list[OutboxEvent]:
    overdue = OutboxEvent.objects.filter(status=PUBLISHED, available_at__lte=timezone.now())
    return list(overdue.order_by("available_at")[:limit])


def outbox_mark_republished(*, pk: int, timing: BusTiming) -> None:
    OutboxEvent.objects.filter(pk=pk, status=PUBLISHED).update(available_at=_after(timing.settle_deadline_seconds()))


# --- outcomes of a delivery attempt (both transports) ---------------------------------------


_settle_sql: dict[str, tuple[str, str, str]] = {}


def outbox_settle_delivered(*, event_ids: Iterable[uuid.UUID | str] = (), pks: Iterable[int] = (),
                            free_users: Collection[uuid.UUID] = (), owner: str = "") -> None:
    """Delivered (or skipped): by event id (what a message carries) and/or by row (claimed rows); with
    `free_users`, `owner`'s leases of those users (taken by its embedded claim) are freed by the same statement
    on PostgreSQL (a second one on SQLite).

    One UPDATE, written by hand (the consumer loop sends it for every batch it settles; compiling
    the ORM's cost more CPU than the database spends on it): the statement
    `filter(Q(event_id__in=…) | Q(pk__in=…)).exclude(status=DELIVERED).update(…)` would send. On
    PostgreSQL the ids go as array parameters (`= ANY(%s)`), so the text is the same for every
    batch size and the statement is prepared on the server like the other hot ones."""
    using = "default"
    db = connections[using]
    fields = OutboxEvent._meta
    ids = [fields.get_field("event_id").get_db_prep_value(event_id, db) for event_id in event_ids]
    keys = [fields.pk.get_db_prep_value(pk, db) for pk in pks]
    if not ids and not keys:
        leases.user_leases_free(uids=free_users, owner=owner)
        return
    arrays = db.vendor == "postgresql"
    found = _settle_sql.get(using)
    if found is None:
        quote = db.ops.quote_name

        def column(name: str) -> str:
            return quote(fields.get_field(name).column)

        def matches(field: Any) -> str:
            return f"{quote(field.column)} = ANY(%s::{field.db_type(db)}[])" if arrays else f"{quote(field.column)} IN "

        # Only quoted names and types from the model's metadata are interpolated; values are parameters.
        found = _settle_sql[using] = (
            f"UPDATE {quote(fields.db_table)} SET {column('status')} = %s, {column('delivered_at')} = %s, "  # noqa: S608
            f"{column('claimed_by')} = '', {column('claimed_until')} = NULL, {column('last_error')} = '' "
            f"WHERE NOT ({column('status')} = %s) AND (",
            matches(fields.get_field("event_id")),
            matches(fields.pk),
        )
    head, by_id, by_key = found
    delivered_at = fields.get_field("delivered_at").get_db_prep_value(timezone.now(), db)
    if arrays:
        # Array literals as text: the same parameter types for every batch (a list's own array type would follow
        # its length and values, and psycopg prepares per text and types). UUIDs and ints need no quoting.
        params = [DELIVERED.value, delivered_at, DELIVERED.value, _array(ids), _array(keys)]
        if free_users:
            # The leases' UPDATE rides along as a writing CTE: no statement of its own (PostgreSQL locks rows,
            # so the owner comes twice: UserLeaseSql.free).
            freeing = leases.user_lease_sql(using).free(owner="%s", uids="= ANY(%s::uuid[])")
            rawsql.execute(f"WITH freed AS ({freeing}) {head}{by_id} OR {by_key})",
                           [owner, owner, _array(free_users), *params])
        else:
            rawsql.execute(f"{head}{by_id} OR {by_key})", params)
        return
    where = [f"{by_id}({rawsql.placeholders(len(ids))})"] if ids else []
    where += [f"{by_key}({rawsql.placeholders(len(keys))})"] if keys else []
    with db.cursor() as cursor:
        cursor.execute(f"{head}{' OR '.join(where)})", [DELIVERED.value, delivered_at, DELIVERED.value, *ids, *keys])
    leases.user_leases_free(uids=free_users, owner=owner)


def outbox_schedule_retry(
    *, event_id: uuid.UUID | str | None = None, event_ids: Collection[uuid.UUID | str] = (), attempt: int, error: str,
    delay: float, timing: BusTiming,
) -> None:
    """Attempt `attempt` failed for now (of `event_id`, or of every event of `event_ids`: the
    messages one coalesced handler call stood for). Embedded: the row is due again after `delay`
    and its claim is released. RabbitMQ: the broker holds it for `delay`; the row's settle
    deadline moves on."""
    ids = [event_id] if event_id is not None else list(event_ids)
    OutboxEvent.objects.filter(_status_of_keyed(PENDING, PUBLISHED), event_id__in=ids).update(
        attempts=attempt,
        last_error=error,
        claimed_by="",
        claimed_until=None,
        available_at=Case(
            When(status=PUBLISHED, then=Value(_after(timing.settle_deadline_seconds(retry_delay=delay)))),
            default=Value(_after(delay)),
        ),
    )


def dead_letter_record(*, envelope: Envelope | dict, attempts: int, reason: str, cause: Cause) -> DeadLetter:
    """Record a dead letter (idempotent per event) and take the event out of the outbox flow."""
    now = timezone.now()
    event_id = envelope["id"]
    with transaction.atomic():
        dead_letter, created = DeadLetter.objects.get_or_create(
            event_id=event_id,
            defaults={
                "type": envelope.get("type", ""),
                "uid": envelope.get("uid"),
                "envelope": envelope,
                "attempts": attempts,
                "reason": reason,
                "cause": cause,
                "first_failed_at": now,
                "last_failed_at": now,
            },
        )
        if created:
            metrics.dead_letter_recorded(event_type=dead_letter.type)
        else:
            DeadLetter.objects.filter(pk=dead_letter.pk).update(
                attempts=max(dead_letter.attempts, attempts), reason=reason, cause=cause, last_failed_at=now
            )
            dead_letter.refresh_from_db()
        OutboxEvent.objects.filter(event_id=event_id).update(
            status=DEAD, attempts=attempts, last_error=reason, claimed_by="", claimed_until=None
        )
    return dead_letter


# --- replay ---------------------------------------------------------------------------------


def _outbox_row_for(dead_letter: DeadLetter) -> OutboxEvent:
    """The event's outbox row, recreated from the stored envelope if it is gone."""
    envelope = dead_letter.envelope
    row, _ = OutboxEvent.objects.get_or_create(
        event_id=dead_letter.event_id,
        defaults={
            "type": dead_letter.type,
            "uid": dead_letter.uid,
            "data": envelope.get("data") or {},
            "status": DEAD,
        },
    )
    return row


def dead_letter_resolve_stale(*, dead_letter: DeadLetter, reason: str) -> None:
    """A superseded event counts as done, as the handler's own "skipped" would."""
    with transaction.atomic():
        DeadLetter.objects.filter(pk=dead_letter.pk).delete()
        OutboxEvent.objects.filter(event_id=dead_letter.event_id, status=DEAD).update(
            status=DELIVERED, delivered_at=timezone.now(), last_error=f"replay skipped: {reason}"
        )


def dead_letter_requeue_embedded(*, dead_letter: DeadLetter) -> None:
    """Embedded bus: the event's row is due again; the consumer never touches a dead row."""
    with transaction.atomic():
        row = _outbox_row_for(dead_letter)
        OutboxEvent.objects.filter(pk=row.pk).update(
            status=PENDING, attempts=0, available_at=timezone.now(), claimed_by="", claimed_until=None, last_error=""
        )
        DeadLetter.objects.filter(pk=dead_letter.pk).delete()


def dead_letter_republish(*, dead_letter: DeadLetter, publish: Callable[[Envelope], None], timing: BusTiming) -> None:
    """RabbitMQ: publish with confirms; the dead letter goes only once the broker confirmed.

    The row is set back to `published` *before* publishing: a consumer that takes the message at
    once must find a row it can settle that nothing later overwrites. If publishing fails the row
    goes back to `dead`. If this process dies between the two, the row shows as backlog and the
    dead letter stays, so running the replay again repairs it (delivery is at least once).
    """
    with transaction.atomic():
        row = _outbox_row_for(dead_letter)
        OutboxEvent.objects.filter(pk=row.pk).update(
            status=PUBLISHED,
            attempts=0,
            published_at=timezone.now(),
            available_at=_after(timing.settle_deadline_seconds()),
            last_error="",
        )
    try:
        publish(dead_letter.envelope)
    except BaseException:
        OutboxEvent.objects.filter(pk=row.pk, status=PUBLISHED).update(
            status=DEAD, attempts=dead_letter.attempts, last_error=dead_letter.reason
        )
        raise
    # Unless the replayed event already failed again (the consumer updated this dead letter).
    DeadLetter.objects.filter(pk=dead_letter.pk, last_failed_at=dead_letter.last_failed_at).delete()


# --- retention ------------------------------------------------------------------------------


def _delete_in_batches(pks_of: Callable[[int], list[int]], model: type, batch_size: int,
                       on_batch: Callable[[int], None] | None, total: int) -> int:
    while True:
        with transaction.atomic():
            pks = pks_of(batch_size)
            if not pks:
                return total
            deleted, _ = model.objects.filter(pk__in=pks).delete()
        total += deleted
        if on_batch is not None:
            on_batch(total)


def outbox_prune(
    *,
    older_than_days: int | None = None,
    dead_older_than_days: int | None = None,
    batch_size: int = 1000,
    dry_run: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> int:
    """Delete delivered rows past OUTBOX_RETENTION_DAYS, and dead letters (with their dead rows)
    whose last failure is past BUS_DEAD_RETENTION_DAYS, `batch_size` rows per transaction so the
    tables are never locked for long. Pending and published rows are never pruned. Returns the
    number of rows deleted (or, with `dry_run`, that would be)."""
    days = settings.OUTBOX_RETENTION_DAYS if older_than_days is None else older_than_days
    dead_days = settings.BUS_DEAD_RETENTION_DAYS if dead_older_than_days is None else dead_older_than_days
    if days < 0 or dead_days < 0:
        raise ValueError("retention days must be >= 0")
    now = timezone.now()
    delivered = OutboxEvent.objects.filter(status=DELIVERED, delivered_at__lte=now - timedelta(days=days))
    dead_letters = DeadLetter.objects.filter(last_failed_at__lte=now - timedelta(days=dead_days))
    dead_rows = OutboxEvent.objects.filter(status=DEAD, occurred_at__lte=now - timedelta(days=dead_days))
    if dry_run:
        return delivered.count() + dead_letters.count() + dead_rows.exclude(
            event_id__in=DeadLetter.objects.exclude(pk__in=dead_letters.values("pk")).values("event_id")
        ).count()

    def rows(queryset):
        return lambda n: list(queryset.order_by("pk").values_list("pk", flat=True)[:n])

    total = _delete_in_batches(rows(delivered), OutboxEvent, batch_size, on_batch, 0)
    total = _delete_in_batches(rows(dead_letters), DeadLetter, batch_size, on_batch, total)
    # A dead row goes once no dead letter (one replay could still need) refers to it.
    orphans = dead_rows.exclude(event_id__in=DeadLetter.objects.values("event_id"))
    return _delete_in_batches(rows(orphans), OutboxEvent, batch_size, on_batch, total)


# --- erasure --------------------------------------------------------------------------------

ERASED = "[erased with the account]"


def bus_user_erase(*, uid: uuid.UUID) -> None:
    """Remove the bus's copies of a deleted user's data (call in the deletion's transaction).

    What stays is what the erasure itself needs: the user's `user.deleted` events (uid and
    type) and any events still in flight, emptied of data — their handlers find the user gone
    and skip. Finished rows and dead letters of other types are deleted.
    """
    with transaction.atomic():
        OutboxEvent.objects.filter(uid=uid, status__in=(DELIVERED, DEAD)).exclude(type="user.deleted").delete()
        OutboxEvent.objects.filter(uid=uid).update(data={}, last_error="")
        DeadLetter.objects.filter(uid=uid).exclude(type="user.deleted").delete()
        for dead_letter in DeadLetter.objects.filter(uid=uid):
            envelope = {**dead_letter.envelope, "data": {}} if isinstance(dead_letter.envelope, dict) else {}
            DeadLetter.objects.filter(pk=dead_letter.pk).update(envelope=envelope, reason=ERASED)
