"""Fixtures for the consumer's tests: a real Agent double in this process; and the helpers that
build their events (plain functions: tests call them with arguments)."""
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from agent_bridge import events
from agent_bridge.agent_client import AgentClient
from agent_bridge.delivery import Cause
from agent_bridge.devagent import DevAgentServer
from agent_bridge.events import Envelope, make_envelope


@pytest.fixture(scope="session")
def devagent_server() -> Iterator[DevAgentServer]:
    with DevAgentServer(token=settings.AGENT_SERVICE_TOKEN) as server:
        yield server


@pytest.fixture
def devagent(devagent_server: DevAgentServer) -> DevAgentServer:
    """The in-process Agent double (main + control ports on loopback), reset for each test."""
    devagent_server.state.reset()
    devagent_server.up()
    return devagent_server


@pytest.fixture
def agent(devagent: DevAgentServer) -> Iterator[AgentClient]:
    """An AgentClient talking to `devagent` over HTTP, as the consumer does."""
    with AgentClient(base_url=devagent.base_url, service_token=settings.AGENT_SERVICE_TOKEN, timeout=2) as client:
        yield client


def envelope(event_type: str, uid, data: dict | None = None) -> Envelope:
    """An event as a transport hands it to the consumer (no outbox row)."""
    return make_envelope(
        event_id=uuid.uuid4(), event_type=event_type, occurred_at=timezone.now(), uid=uid, data=data or {}
    )


def dead_event(
    event_type: str = events.USER_REGISTERED,
    uid: uuid.UUID | None = None,
    *,
    data: dict | None = None,
    reason: str = "AgentAuthError 401",
    failed_ago: timedelta = timedelta(0),
):
    """An outbox row that died after three attempts, with its DeadLetter, as the consumer leaves them."""
    from agent_bridge.models import OutboxEvent
    from agent_bridge.outbox import dead_letter_record
    from consumers.models import DeadLetter

    row = OutboxEvent.objects.create(type=event_type, uid=uid or uuid.uuid4(), data=data or {})
    dead = dead_letter_record(cause=Cause.AGENT_PERMANENT, envelope=row.envelope, attempts=3, reason=reason)
    if failed_ago:
        DeadLetter.objects.filter(pk=dead.pk).update(last_failed_at=timezone.now() - failed_ago)
    row.refresh_from_db()
    return row


def registered(user):
    """A user.registered outbox row for `user`, pending."""
    from agent_bridge.models import OutboxEvent

    return OutboxEvent.objects.create(type=events.USER_REGISTERED, uid=user.uid)


def claim():
    """What one embedded consumer ("test-worker") claims next: a Delivery, or None."""
    from agent_bridge.timing import bus_timing
    from agent_bridge.transports.embedded import EmbeddedTransport

    return EmbeddedTransport(stop=threading.Event(), timing=bus_timing(), worker_id="test-worker").claim()
