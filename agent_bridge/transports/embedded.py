"""Embedded bus: the outbox table is the queue.

The consumer claims, in one go, the most urgent due row of each of several users (allergy
events first), each together with the pending events of its user and type that the same handler
call delivers (coalescing: handlers send current state), for one ownership window; each claim is
renewed while its handler runs (agent_bridge.leases.RENEWER), so a consumer killed mid-event
leaves the rows to be taken again once the claim lapses, and a slow handler never loses them.
Users with work in flight in this consumer are not claimed again; another consumer process that
claims a row of the same user waits for the user's lease.
"""
import uuid
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future
from concurrent.futures import wait as futures_wait
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from agent_bridge import outbox as owner
from agent_bridge.delivery import Outcome, Status
from agent_bridge.events import Envelope
from agent_bridge.leases import RENEWER, WORKER_ID, user_lease
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
        if self.waiter is not None:
            self.waiter.close()

    def claim_runs(self, *, users: int, busy: Collection[str] = ()) -> list[Run]:
        """The most urgent due event of up to `users` users not in `busy`, each with the pending
        events it delivers too (coalesced); one delivery per run."""
        claims = owner.outbox_claim_users(
            worker_id=self.worker_id, timing=self.timing, users=users,
            exclude_uids=[user for user in busy if not user.startswith("event:")], coalesce_limit=COALESCE_LIMIT,
        )
        return [
            [Delivery(envelope=claim.event.envelope, attempt=claim.event.attempts + 1,
                      tag=Claimed(claim.event.pk, claim.covered), traceparent=claim.event.traceparent or None)]
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
            owner.outbox_claim_renew(pks=[claimed.pk, *claimed.covered], worker_id=self.worker_id, timing=self.timing)

        with RENEWER.hold(renew):
            return work(*args, **kwargs)

    def ownership_for(self, envelope: Envelope) -> AbstractContextManager:
        """The user's lease: consumers claim rows independently, so this serialises their Agent
        calls about one user (raises LeaseBusy, a retry later, when another consumer holds it)."""
        return user_lease(envelope["uid"]) if envelope.get("uid") else nullcontext()

    def settle(self, settled: list[Settled]) -> None:
        self.ack(*(delivery for delivery, outcome in settled if outcome.done))
        for delivery, outcome in settled:
            if outcome.status is Status.RETRY:
                self.retry_later(delivery, outcome)
            elif outcome.status is Status.DEAD:
                self.dead_letter(delivery, outcome)

    def ack(self, *deliveries: Delivery) -> None:
        """Delivered or skipped: every row of `deliveries`, coalesced ones included, in one UPDATE."""
        pks = [pk for delivery in deliveries for pk in (delivery.tag.pk, *delivery.tag.covered)]
        if pks:
            owner.outbox_settle_delivered(pks=pks)

    def retry_later(self, delivery: Delivery, outcome: Outcome) -> None:
        # The coalesced rows were not tried: they go back untouched, due now.
        owner.outbox_claim_release(pks=delivery.tag.covered, worker_id=self.worker_id)
        owner.outbox_schedule_retry(
            event_id=delivery.envelope["id"], attempt=delivery.attempt, error=outcome.error, delay=outcome.retry_after,
            timing=self.timing,
        )

    def dead_letter(self, delivery: Delivery, outcome: Outcome) -> None:
        owner.outbox_claim_release(pks=delivery.tag.covered, worker_id=self.worker_id)
        owner.dead_letter_record(
            envelope=delivery.envelope, attempts=delivery.attempt, reason=outcome.error, cause=outcome.cause
        )

    def housekeeping(self) -> None:
        pass  # nothing lives outside the table
