"""Embedded bus: the outbox table is the queue.

A consumer claims the most urgent due row (allergy events first), together with the pending
events of the same user and type that the same handler call delivers (coalescing: handlers send
current state), for one ownership window and renews the claim while its handler runs
(agent_bridge.leases.RENEWER), so a consumer killed mid-event leaves the row to be taken again
once the claim lapses, and a slow handler never loses it.
"""
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

from agent_bridge import outbox as owner
from agent_bridge.delivery import Outcome
from agent_bridge.events import Envelope
from agent_bridge.leases import RENEWER, WORKER_ID, user_lease
from agent_bridge.timing import BusTiming
from agent_bridge.transports import Delivery
from agent_bridge.transports.notify import OutboxWaiter

T = TypeVar("T")


@dataclass(frozen=True)
class Claimed:
    pk: int  # the event delivered
    covered: list[int]  # coalesced rows that the same handler call delivers
# At most this many pending events delivered by one handler call (one claim statement).
COALESCE_LIMIT = 500


class EmbeddedTransport:
    name = "embedded"

    def __init__(self, *, stop, timing: BusTiming, worker_id: str = WORKER_ID) -> None:
        self.stop = stop
        self.timing = timing
        self.worker_id = worker_id
        self.waiter: OutboxWaiter | None = None

    def open(self) -> None:
        self.waiter = OutboxWaiter(stop=self.stop)
        self.waiter.prepare()

    def close(self) -> None:
        if self.waiter is not None:
            self.waiter.close()

    def claim(self) -> Delivery | None:
        """The most urgent due event, with the pending events it delivers too (coalesced)."""
        event = owner.outbox_claim_next(worker_id=self.worker_id, timing=self.timing)
        if event is None:
            return None
        covered = owner.outbox_claim_coalesced(
            event=event, worker_id=self.worker_id, timing=self.timing, limit=COALESCE_LIMIT
        )
        return Delivery(envelope=event.envelope, attempt=event.attempts + 1, tag=Claimed(event.pk, covered),
                        traceparent=event.traceparent or None)

    def next(self) -> Delivery | None:
        delivery = self.claim()
        if delivery is None and self.waiter is not None:
            # Until a commit notifies us, or the next delayed retry is due.
            self.waiter.wait(max_seconds=owner.outbox_seconds_until_next_due())
        return delivery

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

    def ack(self, delivery: Delivery) -> None:
        owner.outbox_settle_delivered(pks=[delivery.tag.pk, *delivery.tag.covered])

    def retry_later(self, delivery: Delivery, outcome: Outcome) -> None:
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
