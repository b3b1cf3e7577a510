"""The vocabulary of delivery, shared by the outbox owner, the transports and the consumer.

An attempt to deliver an event ends in an `Outcome`: a `Status` (what becomes of the event) and,
for a failure, a `Cause` (why). Errors raised by handlers say themselves how they may be retried
(`DeliveryError.retry`), so the policy in consumers.processing never inspects their classes or
their text.
"""
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar


class Status(StrEnum):
    DELIVERED = "delivered"  # the handler did its work
    SKIPPED = "skipped"  # nothing left to do (the user is gone, the Agent already has it)
    RETRY = "retry"  # failed for now: deliver again later
    DEAD = "dead"  # failed for good (or retries used up): a dead letter


class Cause(StrEnum):
    NONE = ""
    AGENT_TRANSIENT = "agent_transient"
    AGENT_PERMANENT = "agent_permanent"
    OWNER_BUSY = "owner_busy"  # another consumer holds the user: not a failure to reach the Agent
    EMAIL = "email"
    HANDLER_ERROR = "handler_error"  # an unexpected exception in a handler (a bug, a library)
    NO_HANDLER = "no_handler"
    BROKER = "broker"  # RabbitMQ dead-lettered the message (rejected, delivery limit)
    MALFORMED = "malformed"  # not an event envelope: kept for a human, never replayed


class Retry(StrEnum):
    """How an error may be retried: decided by the error class, never by its text."""

    NOW_AND_LATER = "now_and_later"  # immediate backoff retries, then delayed retries
    LATER = "later"  # delayed retries only (waiting now would only hold the consumer)
    NEVER = "never"  # permanent: a dead letter at once


class DeliveryError(Exception):
    """A failure a handler reports; subclasses set `retry` and `cause`."""

    retry: ClassVar[Retry] = Retry.NEVER
    cause: ClassVar[Cause] = Cause.HANDLER_ERROR


FINAL = (Status.DELIVERED, Status.SKIPPED)


@dataclass(frozen=True)
class Outcome:
    status: Status
    cause: Cause = Cause.NONE
    error: str = ""  # scrubbed text for the operator (logs, last_error, dead letters)
    retry_after: float | None = None  # RETRY: seconds before the next attempt

    @property
    def done(self) -> bool:
        return self.status in FINAL
