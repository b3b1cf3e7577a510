"""Embedded bus: the outbox table is the queue.

The consumer claims, in one go, the most urgent due row of each of several users (allergy
events first), each together with the pending events of its user and type that the same handler
call delivers (coalescing: handlers send current state), for one ownership window; each claim is
renewed while its handler runs (agent_bridge.leases.RENEWER), so a consumer killed mid-event
leaves the rows to be taken again once the claim lapses, and a slow handler never loses them.
The claim takes the user's lease too, in the same statement, and the settle frees it: no other
consumer claims a user's events while one works on them (it claims other users instead), with no
lease statement per event. Users with work in flight in this consumer are not claimed again.
"""
import contextlib
import uuid
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as futures_wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import DatabaseError

from agent_bridge import outbox as owner
from agent_bridge.delivery import Outcome, Status
from agent_bridge.events import Envelope
from agent_bridge.leases import RENEWER, WORKER_ID
from agent_bridge.timing import BusTiming
from agent_bridge.transports import Delivery, Run, Settled
from agent_bridge.transports.notify import OutboxWaiter

T = TypeVar("T")
# At most this many pending events delivered by one handler call.
COALESCE_LIMIT = 500


@dataclass(frozen=True)
class Claimed:
    pk: int  # the event delivered
    covered: list[int]  # coalesced rows that the same handler call delivers


class EmbeddedTransport:
    name = "embedded"

    def __init__(self, *, stop, timing: BusTiming, worker_id: str | None = None) -> None:
        self.stop = stop
        self.timing = timing
        # One per transport: several consumer loops of a process never mistake each other's claims.
        self.worker_id = worker_id or f"{WORKER_ID}:{uuid.uuid4().hex[:6]}"
        self.waiter: OutboxWaiter | None = None

    def open(self) -> None:
        self.waiter = OutboxWaiter(stop=self.stop)
        self.waiter.prepare()

    def close(self) -> None:
        try:
            if self.waiter is not None:
                self.waiter.close()
        finally:
            # The consumer loop drained its runs before: no handler of ours holds a user now.
            with contextlib.suppress(DatabaseError):  # a database that is gone: they lapse on their own
                owner.outbox_claims_end(worker_id=self.worker_id)

    def claim_runs(self, *, users: int, busy: Collection[str] = ()) -> list[Run]:
        """The most urgent due event of up to `users` users not in `busy`, each with the pending
        events it delivers too (coalesced); one delivery per run."""
        claims = owner.outbox_claim_users(
            worker_id=self.worker_id, timing=self.timing, users=users,
            exclude_uids=[user for user in busy if not user.startswith("event:")], coalesce_limit=COALESCE_LIMIT,
        )
        return [
            [Delivery(envelope=claim.event.envelope, attempt=claim.event.attempts + 1,
                      tag=Claimed(claim.event.pk, claim.covered), traceparent=claim.event.traceparent or None,
                      taken_over=claim.taken_over)]
            for claim in claims
        ]

    def claim(self) -> Delivery | None:
        """The most urgent due event (of one user), or None."""
        runs = self.claim_runs(users=1)
        return runs[0][0] if runs else None

    def take(self, *, users: int, busy: Collection[str]) -> list[Run]:
        runs = self.claim_runs(users=users, busy=busy) if users > 0 else []
        if not runs and not busy and self.waiter is not None:
            # Until a commit notifies us, or the next delayed retry is due.
            self.waiter.wait(max_seconds=owner.outbox_seconds_until_next_due())
        return runs

    def wait(self, futures: Collection[Future], *, timeout: float) -> None:
        futures_wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)

    def run(self, delivery: Delivery, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        claimed = delivery.tag

        def renew() -> None:
            owner.outbox_claim_renew(pks=[claimed.pk, *claimed.covered], worker_id=self.worker_id, timing=self.timing,
                                     uid=_uid(delivery))

        with RENEWER.hold(renew):
            return work(*args, **kwargs)

    def ownership_for(self, envelope: Envelope) -> AbstractContextManager:
        # The claim took the user's lease (renewed in run(), freed by the settle): nothing more to hold.
        return nullcontext()

    def settle(self, settled: list[Settled]) -> None:
        """Retries and dead letters first (a statement each), then every delivered row and every settled user's
        lease in one statement: a user is let go only once all its outcomes are recorded."""
        for delivery, outcome in settled:
            if outcome.status is Status.RETRY:
                self._retry_later(delivery, outcome)
            elif outcome.status is Status.DEAD:
                self._dead_letter(delivery, outcome)
        self._ack([delivery for delivery, outcome in settled if outcome.done],
                  users=[delivery for delivery, _ in settled])

    def ack(self, *deliveries: Delivery) -> None:
        """Delivered or skipped: every row of `deliveries`, coalesced ones included, and their users' leases, in
        one UPDATE."""
        self._ack(list(deliveries), users=deliveries)

    def _ack(self, deliveries: list[Delivery], *, users: Collection[Delivery]) -> None:
        pks = [pk for delivery in deliveries for pk in (delivery.tag.pk, *delivery.tag.covered)]
        free = {uid for uid in map(_uid, users) if uid is not None}
        if pks or free:
            owner.outbox_settle_delivered(pks=pks, free_users=free, owner=self.worker_id)

    def retry_later(self, delivery: Delivery, outcome: Outcome) -> None:
        self._retry_later(delivery, outcome)
        self._ack([], users=[delivery])

    def dead_letter(self, delivery: Delivery, outcome: Outcome) -> None:
        self._dead_letter(delivery, outcome)
        self._ack([], users=[delivery])

    def _retry_later(self, delivery: Delivery, outcome: Outcome) -> None:
        # The coalesced rows were not tried: they go back untouched, due now.
        owner.outbox_claim_release(pks=delivery.tag.covered, worker_id=self.worker_id)
        owner.outbox_schedule_retry(
            event_id=delivery.envelope["id"], attempt=delivery.attempt, error=outcome.error, delay=outcome.retry_after,
            timing=self.timing,
        )

    def _dead_letter(self, delivery: Delivery, outcome: Outcome) -> None:
        owner.outbox_claim_release(pks=delivery.tag.covered, worker_id=self.worker_id)
        owner.dead_letter_record(
            envelope=delivery.envelope, attempts=delivery.attempt, reason=outcome.error, cause=outcome.cause
        )

    def housekeeping(self) -> None:
        pass  # nothing lives outside the table


def _uid(delivery: Delivery) -> uuid.UUID | None:
    """The user whose lease the delivery's claim took (None: an event without a user took none)."""
    uid = delivery.envelope.get("uid")
    return uuid.UUID(str(uid)) if uid else None
