"""The retry and dead-letter policy (consumers.processing) against a real Agent double over HTTP."""

import logging
import uuid

import pytest
from django.db import OperationalError

from agent_bridge import events
from agent_bridge.delivery import Status
from agent_bridge.models import AgentCopy, OutboxEvent
from consumers import processing
from consumers.handlers import HANDLERS
from consumers.tests.conftest import envelope

pytestmark = pytest.mark.django_db


def agent_calls(devagent) -> list[dict]:
    return [r for r in devagent.state.request_log() if r["path"].startswith("/users/")]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_transient_answers_are_retried_at_once_then_scheduled(devagent, agent, verified_user, settings, status) -> None:
    settings.BUS_IMMEDIATE_TRIES = 3
    devagent.state.set_fault({"status": status})

    outcome = processing.process_envelope(envelope(events.USER_REGISTERED, verified_user.uid), attempt=1, agent=agent)

    assert outcome.status == Status.RETRY
    assert str(status) in outcome.error
    assert len(agent_calls(devagent)) == 3  # BUS_IMMEDIATE_TRIES tries in all, then a delayed retry


def test_the_agent_refusing_connections_is_transient(devagent, agent, verified_user) -> None:
    devagent.down()
    outcome = processing.process_envelope(envelope(events.USER_REGISTERED, verified_user.uid), attempt=1, agent=agent)
    assert outcome.status == Status.RETRY
    assert outcome.error.startswith("AgentConnectionError")


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "INVALID_SERVICE_TOKEN"), (422, "INVALID_PAYLOAD"), (400, "MISSING_USER_ID"), (403, "FORBIDDEN")],
)
def test_permanent_answers_are_dead_letters_at_once(devagent, agent, verified_user, status, code) -> None:
    devagent.state.set_fault({"status": status, "code": code})

    outcome = processing.process_envelope(envelope(events.USER_REGISTERED, verified_user.uid), attempt=1, agent=agent)

    assert outcome.status == Status.DEAD
    assert code in outcome.error
    assert len(agent_calls(devagent)) == 1  # no retry storm


def test_a_transient_failure_that_clears_within_the_immediate_tries_is_delivered(
    devagent, agent, verified_user, settings
):
    settings.BUS_IMMEDIATE_TRIES = 3
    devagent.state.set_fault({"status": 503, "fail_count": 2})

    outcome = processing.process_envelope(envelope(events.USER_REGISTERED, verified_user.uid), attempt=1, agent=agent)

    assert outcome.status == Status.DELIVERED
    assert [r["status"] for r in agent_calls(devagent)] == [503, 503, 201]


def test_one_immediate_try_means_no_immediate_retry(devagent, agent, verified_user, settings) -> None:
    settings.BUS_IMMEDIATE_TRIES = 1
    devagent.state.set_fault({"status": 503})
    processing.process_envelope(envelope(events.USER_REGISTERED, verified_user.uid), attempt=1, agent=agent)
    assert len(agent_calls(devagent)) == 1


def test_retry_schedule_follows_the_settings(settings) -> None:
    settings.BUS_RETRY_DELAYS_SECONDS = [5, 30, 120]
    assert [processing.retry_delay_seconds(attempt=a) for a in (1, 2, 3, 4)] == [5.0, 30.0, 120.0, None]


def test_a_transient_failure_on_the_last_attempt_is_a_dead_letter(devagent, agent, verified_user, settings) -> None:
    settings.BUS_RETRY_DELAYS_SECONDS = [1, 2]
    devagent.state.set_fault({"status": 503})
    env = envelope(events.USER_REGISTERED, verified_user.uid)

    assert processing.process_envelope(env, attempt=2, agent=agent).status == Status.RETRY
    assert processing.process_envelope(env, attempt=3, agent=agent).status == Status.DEAD


def test_an_unknown_event_type_is_a_dead_letter_without_calling_the_agent(devagent, agent) -> None:
    outcome = processing.process_envelope(envelope("no.such.type", uuid.uuid4()), attempt=1, agent=agent)
    assert outcome.status == Status.DEAD
    assert agent_calls(devagent) == []


def test_an_unexpected_handler_error_is_retried_later_not_fatal(agent, monkeypatch) -> None:
    def broken(envelope, agent):
        raise KeyError("surprise")

    monkeypatch.setitem(HANDLERS, events.USER_REGISTERED, broken)
    outcome = processing.process_envelope(envelope(events.USER_REGISTERED, uuid.uuid4()), attempt=1, agent=agent)
    assert outcome.status == Status.RETRY
    assert outcome.error.startswith("KeyError")


def test_database_errors_propagate_to_the_transport(agent, monkeypatch) -> None:
    def db_down(envelope, agent):
        raise OperationalError("connection refused")

    monkeypatch.setitem(HANDLERS, events.USER_REGISTERED, db_down)
    with pytest.raises(OperationalError):
        processing.process_envelope(envelope(events.USER_REGISTERED, uuid.uuid4()), attempt=1, agent=agent)


def delivery_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == processing.logger.name]


def test_one_structured_log_line_per_attempt(devagent, agent, verified_user, caplog) -> None:
    env = envelope(events.USER_REGISTERED, verified_user.uid)
    with caplog.at_level(logging.INFO, logger=processing.logger.name):
        processing.process_envelope(env, attempt=2, agent=agent)

    [record] = delivery_records(caplog)
    assert record.levelno == logging.INFO
    assert (record.event_id, record.event_type, record.uid) == (env["id"], env["type"], str(verified_user.uid))
    assert (record.attempt, record.outcome) == (2, "delivered")
    assert isinstance(record.duration_ms, float)


def test_allergy_dead_letters_are_logged_critical_with_the_revision(devagent, agent, verified_user, caplog) -> None:
    devagent.state.set_fault({"status": 422})
    env = envelope(events.ALLERGIES_REPLACED, verified_user.uid, {"revision": 4})
    # The profile must be behind the event's revision, or the handler has nothing to send.
    from allergies.models import AllergyProfile

    AllergyProfile.objects.create(user=verified_user, revision=4, confirmed=["peanuts"], severity={"peanuts": "severe"})
    with caplog.at_level(logging.INFO, logger=processing.logger.name):
        outcome = processing.process_envelope(env, attempt=1, agent=agent)

    assert outcome.status == Status.DEAD
    [record] = delivery_records(caplog)
    assert record.levelno == logging.CRITICAL
    assert record.revision == 4
    assert "INVALID_PAYLOAD" in record.getMessage()


def test_secrets_never_reach_the_log_line(agent, settings, monkeypatch, caplog) -> None:
    token = settings.AGENT_SERVICE_TOKEN

    def leaky(envelope, agent):
        raise RuntimeError(f"token {token} broker amqp://kairos:s3cret-pass@rabbit:5672/%2F")

    monkeypatch.setitem(HANDLERS, events.USER_REGISTERED, leaky)
    with caplog.at_level(logging.INFO):
        outcome = processing.process_envelope(envelope(events.USER_REGISTERED, uuid.uuid4()), attempt=1, agent=agent)

    assert token not in outcome.error and "s3cret-pass" not in outcome.error
    logged = caplog.text + "".join(str(vars(r)) for r in caplog.records)
    assert token not in logged
    assert "s3cret-pass" not in logged
    assert "amqp://kairos:[redacted]@rabbit" in outcome.error


def test_a_delivery_taken_over_from_a_dead_consumer_reads_the_user_back(devagent, agent, verified_user) -> None:
    """A consumer killed while the Agent held its write recorded no unknown outcome, and the write
    may land after a newer one: the delivery that takes the event over starts the read-back."""
    uid = verified_user.uid
    processing.process_envelope(envelope(events.USER_REGISTERED, uid), attempt=1, agent=agent)
    assert not AgentCopy.objects.filter(uid=uid, read_back_chain__isnull=False).exists()

    outcome = processing.process_envelope(envelope(events.USER_REGISTERED, uid), attempt=1, agent=agent,
                                          taken_over=True)
    assert outcome.status == Status.DELIVERED
    assert AgentCopy.objects.get(uid=uid).read_back_chain is not None
    assert OutboxEvent.objects.filter(type=events.AGENT_READ_BACK_DUE, uid=uid).count() == 1

    # An email sends nothing to the Agent: nothing to read back.
    AgentCopy.objects.filter(uid=uid).update(read_back_chain=None)
    processing.process_envelope(envelope(events.EMAIL_REQUESTED, uid, {"kind": "verify"}), attempt=1, agent=agent,
                                taken_over=True)
    assert not AgentCopy.objects.filter(uid=uid, read_back_chain__isnull=False).exists()
