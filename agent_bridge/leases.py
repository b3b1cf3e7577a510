"""Per-user ownership: one consumer at a time talks to the Agent about a given user.

On the embedded bus the claim takes the lease of every user it claims and the settle frees it,
inside their own statements (agent_bridge.outbox, with the statements' text from `UserLeaseSql`);
`user_lease` holds one around a block (diagnostics and tests, or a caller without a claim).

A holder's ownership lasts `BusTiming.ownership_seconds` and is renewed every third of that by
the process's `RENEWER` thread for as long as the work runs, so a long handler never outlives
its lease and a crashed holder blocks the user for one window at most.
"""
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta

from django.db import DatabaseError, connection, connections
from django.db.models import Q
from django.utils import timezone

from agent_bridge.delivery import Cause, DeliveryError, Retry
from agent_bridge.models import PartitionLease, UserSyncLease
from agent_bridge.timing import bus_timing

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"


class LeaseBusy(DeliveryError):
    """Another consumer is working on this user; deliver the event again later (waiting now
    would only hold this consumer)."""

    retry = Retry.LATER
    cause = Cause.OWNER_BUSY


class Renewer:
    """One thread per process that keeps every registered ownership alive while its work runs.

    Each hold is renewed `renew_seconds` after it was taken and every `renew_seconds` after
    that, so the short holds of ordinary deliveries cost no renewal at all.
    """

    TICK_SECONDS = 0.1

    def __init__(self) -> None:
        self._holds: dict[object, list] = {}  # key → [renew, next due (monotonic)]
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def hold(self, renew: Callable[[], None]) -> Iterator[None]:
        key = object()
        with self._lock:
            self._holds[key] = [renew, time.monotonic() + bus_timing().renew_seconds]
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ownership-renewer", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._holds.pop(key, None)

    def _run(self) -> None:
        while True:
            time.sleep(self.TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                due = [hold for hold in self._holds.values() if hold[1] <= now]
                for hold in due:
                    hold[1] = now + bus_timing().renew_seconds
                idle = not self._holds
            for renew, _ in due:
                try:
                    renew()
                except DatabaseError as exc:  # the next renewal tries again on a fresh connection
                    logger.warning("ownership renewal failed (%s)", type(exc).__name__)
                    connection.close()
            if idle and connection.connection is not None:
                # Renewals are rare (only work longer than renew_seconds): nothing to renew, no
                # database session kept open for it.
                connection.close()


RENEWER = Renewer()


def _expiry() -> timezone.datetime:
    return timezone.now() + timedelta(seconds=bus_timing().ownership_seconds)


@dataclass(frozen=True)
class UserLeaseSql:
    """The user lease's statements, as SQL text for one database, so that the embedded claim and settle
    (agent_bridge.outbox) can take and free many users' leases inside their own statements (no statement of
    their own per event) while what "taken" means is written here only. Placeholders are the caller's
    (`%s`, or `%(name)s` in a statement with named parameters). Only quoted names from the model's
    metadata are interpolated."""

    table: str
    uid: str
    owner: str
    expires_at: str
    row_locks: bool = False  # the database locks rows (PostgreSQL): take them in uid order, as the claim does

    def take(self, rows: str, *, now: str) -> str:
        """Insert or take the leases of `rows` (a VALUES list or a SELECT of uid, owner, expires_at): taken
        when free, lapsed or already this owner's; a row updated or inserted counts (and is RETURNING's), a
        busy one does not (PostgreSQL and SQLite alike)."""
        t, o, e = self.table, self.owner, self.expires_at
        return (f"INSERT INTO {t} ({self.uid}, {o}, {e}) {rows} "
                f"ON CONFLICT ({self.uid}) DO UPDATE SET {o} = excluded.{o}, {e} = excluded.{e} "
                f"WHERE {t}.{o} = '' OR {t}.{e} < {now} OR {t}.{o} = excluded.{o}")

    def free(self, *, owner: str, uids: str) -> str:
        """Free this owner's leases of `uids` (`= ANY(...)`, `IN (...)`; `owner` is used twice). Its rows are
        locked in uid order, as the claim's upsert takes them, so a settle and a concurrent claim that both
        touch several users' leases never wait for each other in a cycle."""
        set_free = f"UPDATE {self.table} SET {self.owner} = '', {self.expires_at} = NULL "  # noqa: S608
        if not self.row_locks:
            return f"{set_free}WHERE {self.owner} = {owner} AND {self.uid} {uids}"
        return (f"{set_free}WHERE {self.owner} = {owner} AND {self.uid} IN (SELECT {self.uid} FROM {self.table} "  # noqa: S608
                f"WHERE {self.owner} = {owner} AND {self.uid} {uids} ORDER BY {self.uid} FOR UPDATE)")

    def held_elsewhere(self, uid: str, *, owner: str, now: str) -> str:
        """True while another owner holds the lease of the user in column `uid`."""
        return (f"EXISTS (SELECT 1 FROM {self.table} l WHERE l.{self.uid} = {uid} AND l.{self.owner} <> '' "  # noqa: S608
                f"AND l.{self.owner} <> {owner} AND l.{self.expires_at} >= {now})")


_lease_sql: dict[str, UserLeaseSql] = {}


def user_lease_sql(using: str = "default") -> UserLeaseSql:
    found = _lease_sql.get(using)
    if found is None:
        quote = connections[using].ops.quote_name
        meta = UserSyncLease._meta
        found = _lease_sql[using] = UserLeaseSql(quote(meta.db_table), *(
            quote(meta.get_field(name).column) for name in ("uid", "owner", "expires_at")),
            row_locks=connections[using].vendor == "postgresql")
    return found


def _datetime_param(value: timezone.datetime, using: str = "default") -> object:
    return UserSyncLease._meta.get_field("expires_at").get_db_prep_value(value, connections[using])


def _uid_param(uid: uuid.UUID, using: str = "default") -> object:
    return UserSyncLease._meta.pk.get_db_prep_value(uid, connections[using])


# user_lease takes and frees a user's lease in one statement each, written by hand (no ORM compilation): the
# take is an upsert, so a user's first delivery (no lease row yet) costs the same one statement as later ones.
def _try_acquire(uid: uuid.UUID, owner: str, *, expires_at: timezone.datetime | None = None) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(user_lease_sql().take("VALUES (%s, %s, %s)", now="%s"), [
            _uid_param(uid), owner, _datetime_param(expires_at or _expiry()), _datetime_param(timezone.now())])
        return cursor.rowcount == 1


def user_leases_take(*, uids: list[uuid.UUID], owner: str, until: timezone.datetime) -> set[uuid.UUID]:
    """Take the leases of `uids` that are free, lapsed or `owner`'s already, until `until`; returns those taken
    (one statement per user: the embedded claim's path on SQLite; on PostgreSQL its claim statement takes them)."""
    return {uid for uid in sorted(uids) if _try_acquire(uid, owner, expires_at=until)}


def user_leases_free(*, uids: Collection[uuid.UUID], owner: str) -> None:
    """Free `owner`'s leases of `uids` (one statement)."""
    if uids:
        listed = [_uid_param(uid) for uid in uids]
        sql = user_lease_sql()
        params = [owner, owner, *listed] if sql.row_locks else [owner, *listed]
        with connection.cursor() as cursor:
            cursor.execute(sql.free(owner="%s", uids=f"IN ({', '.join(['%s'] * len(listed))})"), params)


def user_leases_free_all(*, owner: str) -> None:
    """Free every lease `owner` holds (a consumer's claims ended: its transport closes)."""
    UserSyncLease.objects.filter(owner=owner).update(owner="", expires_at=None)


def user_leases_renew(*, uids: Collection[uuid.UUID], owner: str) -> None:
    """Move on `owner`'s leases of `uids` by one ownership window (its work still runs)."""
    if uids:
        UserSyncLease.objects.filter(uid__in=list(uids), owner=owner).update(expires_at=_expiry())


@contextmanager
def user_lease(uid: uuid.UUID | str, *, wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the user's lease for the block (renewed while it runs); raise LeaseBusy if it stays
    taken for `wait_seconds` (default: one ownership window)."""
    uid = uuid.UUID(str(uid))
    owner = f"{WORKER_ID}:{uuid.uuid4().hex[:8]}"
    wait = bus_timing().lease_wait_seconds if wait_seconds is None else wait_seconds
    deadline = time.monotonic() + wait
    while not _try_acquire(uid, owner):
        if time.monotonic() >= deadline:
            raise LeaseBusy(f"user {uid} is being synced by another consumer")
        time.sleep(0.05)

    def renew() -> None:
        UserSyncLease.objects.filter(uid=uid, owner=owner).update(expires_at=_expiry())

    try:
        with RENEWER.hold(renew):
            yield
    finally:
        user_leases_free(uids=[uid], owner=owner)


def user_lease_forget(*, uid: uuid.UUID | str) -> None:
    """Drop the lease row of a user erased at the Agent."""
    UserSyncLease.objects.filter(uid=uid).delete()


class PartitionOwnership:
    """The partitions one consumer connection owns: taken when its first message arrives, renewed
    while held, released when the connection's work is over (never per event)."""

    def __init__(self, *, owner: str | None = None) -> None:
        self.owner = owner or f"{WORKER_ID}:{uuid.uuid4().hex[:8]}"
        self._held: dict[str, ExitStack] = {}

    def holds(self, name: str) -> bool:
        return name in self._held

    def try_take(self, name: str) -> bool:
        now = timezone.now()
        taken = PartitionLease.objects.filter(
            Q(owner="") | Q(expires_at__lt=now) | Q(owner=self.owner), name=name
        ).update(owner=self.owner, expires_at=_expiry())
        if not taken:
            _, taken = PartitionLease.objects.get_or_create(
                name=name, defaults={"owner": self.owner, "expires_at": _expiry()}
            )
        if taken:
            def renew() -> None:
                PartitionLease.objects.filter(name=name, owner=self.owner).update(expires_at=_expiry())

            stack = ExitStack()
            stack.enter_context(RENEWER.hold(renew))
            self._held[name] = stack
        return bool(taken)

    def release(self, name: str) -> None:
        stack = self._held.pop(name, None)
        if stack is not None:
            stack.close()
        PartitionLease.objects.filter(name=name, owner=self.owner).update(owner="", expires_at=None)

    def release_all(self) -> None:
        """Stop renewing every partition first, then free them in one statement: when the
        database is gone the leases lapse on their own, where renewing them on would keep this
        (dead) connection their owner and the next session waiting for them for good."""
        names = list(self._held)
        for name in names:
            self._held.pop(name).close()
        if names:
            PartitionLease.objects.filter(name__in=names, owner=self.owner).update(owner="", expires_at=None)


class Membership:
    """A consumer connection's presence, so connections can share the partitions fairly: each
    renews a `<prefix>.member.<owner>` row while connected (standbys included)."""

    def __init__(self, *, prefix: str, owner: str) -> None:
        self.prefix = prefix
        self.name = f"{prefix}.member.{owner}"
        self._stack: ExitStack | None = None

    def join(self) -> None:
        PartitionLease.objects.update_or_create(name=self.name, defaults={"owner": self.name, "expires_at": _expiry()})

        def renew() -> None:
            PartitionLease.objects.filter(name=self.name).update(expires_at=_expiry())

        self._stack = ExitStack()
        self._stack.enter_context(RENEWER.hold(renew))

    def leave(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        PartitionLease.objects.filter(name=self.name).delete()

    def members(self) -> int:
        live = PartitionLease.objects.filter(name__startswith=f"{self.prefix}.member.", expires_at__gt=timezone.now())
        return max(1, live.count())
