"""Turning one delivery of an event into an outcome: the retry and dead-letter policy.

A transient failure is retried a few times at once with jittered exponential backoff; if it
persists, the transport schedules a delayed retry (BUS_RETRY_DELAYS_SECONDS) that does not
block other events, and once those are used up the event becomes a dead letter. A permanent
failure is a dead letter at once.
"""
import logging
import re
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime

import backoff
from django.conf import settings
from django.db import DatabaseError

from agent_bridge import events, verification
from agent_bridge.agent_client import AgentClient
from agent_bridge.delivery import Cause, DeliveryError, Outcome, Retry, Status
from agent_bridge.events import Envelope
from agent_bridge.leases import user_lease
from agent_bridge.timing import bus_timing
from consumers.handlers import FAILURE_RECORDERS, HANDLERS
from project import metrics

logger = logging.getLogger(__name__)


def _user_lease(envelope: Envelope) -> AbstractContextManager:
    return user_lease(envelope["uid"]) if envelope.get("uid") else nullcontext()


def retry_delay_seconds(*, attempt: int) -> float | None:
    """Delay before delivery attempt `attempt + 1`, or None when retries are used up."""
    return bus_timing().retry_delay_seconds(attempt=attempt)


_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]+@", re.IGNORECASE)


def scrub_secrets(text: str) -> str:
    """Remove the service token and URL passwords from text bound for logs and dead letters.

    The Agent client already scrubs its errors; this also covers errors from anywhere else
    (a handler's bug, an SMTP or broker error that quotes a URL).
    """
    token = settings.AGENT_SERVICE_TOKEN
    if token and token in text:
        text = text.replace(token, "[redacted]")
    return _URL_PASSWORD.sub(r"\g<scheme>:[redacted]@", text)


def _describe(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    status = getattr(exc, "status", None)
    parts = [type(exc).__name__]
    if status:
        parts.append(str(status))
    if code:
        parts.append(str(code))
    return scrub_secrets(f"{' '.join(parts)}: {exc}")[:1000]


def _call_with_immediate_retries(envelope: Envelope, agent: AgentClient) -> Status:
    handler = HANDLERS[envelope["type"]]

    @backoff.on_exception(
        backoff.expo,
        DeliveryError,
        giveup=lambda exc: exc.retry is not Retry.NOW_AND_LATER,
        max_tries=lambda: max(1, settings.BUS_IMMEDIATE_TRIES),
        jitter=backoff.full_jitter,
        factor=0.1,
        max_value=lambda: settings.BUS_IMMEDIATE_BACKOFF_MAX_SECONDS,
        logger=None,
    )
    def call() -> Status:
        return handler(envelope, agent)

    return call()


def _after_transient(attempt: int, cause: Cause, error: str) -> Outcome:
    delay = retry_delay_seconds(attempt=attempt)
    if delay is None:
        return Outcome(Status.DEAD, cause, error)
    return Outcome(Status.RETRY, cause, error, retry_after=delay)


def process_envelope(
    envelope: Envelope,
    *,
    attempt: int,
    agent: AgentClient,
    ownership: Callable[[Envelope], AbstractContextManager] | None = None,
    taken_over: bool = False,
) -> Outcome:
    """Deliver one event (attempt `attempt`, counting from 1) and say what became of it.

    `ownership(envelope)` is held around the handler (and its immediate retries) so that no other
    consumer talks to the Agent about the same user meanwhile; it is the transport's (see
    agent_bridge.transports), by default the user's lease. `taken_over`: an earlier delivery of
    the event may have died mid-handler, so a read-back of the user starts first.

    Database errors propagate: the transport leaves the event to be delivered again once the
    database is back. Any other unexpected exception (a handler bug, a library error) is treated
    as transient: delayed retries give a fix or a recovered dependency a chance, and the
    schedule is bounded, so it ends as a dead letter rather than looping.
    """
    started = time.monotonic()
    if envelope.get("type") not in HANDLERS:
        outcome = Outcome(Status.DEAD, Cause.NO_HANDLER, f"no handler for event type {envelope.get('type')!r}")
    else:
        try:
            with (ownership or _user_lease)(envelope):
                if taken_over:
                    verification.read_back_after_takeover(envelope)
                outcome = Outcome(Status(_call_with_immediate_retries(envelope, agent)))
        except DeliveryError as exc:
            error = _describe(exc)
            if exc.retry is Retry.NEVER:
                outcome = Outcome(Status.DEAD, exc.cause, error)
            else:
                outcome = _after_transient(attempt, exc.cause, error)
        except DatabaseError:
            raise
        except Exception as exc:
            # The traceback is scrubbed like the error: exception messages can quote secrets.
            logger.error(
                "handler for %s %s failed unexpectedly\n%s",
                envelope.get("type"),
                envelope.get("id"),
                scrub_secrets("".join(traceback.format_exception(exc))),
            )
            outcome = _after_transient(attempt, Cause.HANDLER_ERROR, _describe(exc))
    log_delivery(envelope, attempt=attempt, outcome=outcome, duration=time.monotonic() - started)
    metrics.delivery_observe(
        event_type=str(envelope.get("type")),
        outcome=metrics.DeliveryOutcome(outcome.status),
        commit_age_seconds=_seconds_since(envelope.get("occurred_at")),
    )
    recorder = FAILURE_RECORDERS.get(envelope.get("type", ""))
    if recorder is not None and not outcome.done:
        recorder(envelope, outcome)
    return outcome


def _seconds_since(iso: object) -> float | None:
    try:
        return (datetime.now(UTC) - datetime.fromisoformat(str(iso))).total_seconds()
    except ValueError:
        return None


def log_delivery(envelope: Envelope, *, attempt: int, outcome: Outcome, duration: float) -> None:
    """One structured line per delivery attempt; allergy dead letters are CRITICAL.

    Only identifiers, counters and the (scrubbed) error go in: never the event's data, which
    can hold personal details, and never a credential.
    """
    level = logging.INFO
    if outcome.status is Status.RETRY:
        level = logging.WARNING
    elif outcome.status is Status.DEAD:
        level = logging.CRITICAL if envelope.get("type") == events.ALLERGIES_REPLACED else logging.ERROR
    data = envelope.get("data") or {}
    extra = {
        "event_id": envelope.get("id"),
        "event_type": envelope.get("type"),
        "uid": envelope.get("uid"),
        "attempt": attempt,
        "outcome": outcome.status.value,
        "duration_ms": round(duration * 1000, 1),
    }
    if "revision" in data:
        extra["revision"] = data["revision"]
    message = " ".join(f"{key}={value}" for key, value in extra.items())
    if outcome.cause is not Cause.NONE:
        extra["cause"] = outcome.cause.value
        message += f" cause={outcome.cause.value}"
    if outcome.error:
        extra["error"] = scrub_secrets(outcome.error)
        message += f" error={extra['error']!r}"
    logger.log(level, "delivery %s", message, extra=extra)
