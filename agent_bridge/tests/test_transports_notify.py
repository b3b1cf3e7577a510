"""The relay and the embedded consumer wake at commit on PostgreSQL (migration 0002's trigger +
agent_bridge.transports.notify), and fall back to polling everywhere."""
import threading
import time

import pytest

from agent_bridge import events
from agent_bridge.models import OutboxEvent
from agent_bridge.transports.notify import OutboxWaiter


@pytest.fixture
def waiter():
    waiter = OutboxWaiter(stop=threading.Event())
    waiter.prepare()
    yield waiter
    waiter.close()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_committed_event_wakes_the_waiter_long_before_the_fallback(waiter, settings) -> None:
    settings.BUS_NOTIFY_FALLBACK_SECONDS = 20
    assert waiter.enabled

    started = time.monotonic()
    waiter.wait(max_seconds=0.3)  # nothing committed: sleeps the whole time
    assert time.monotonic() - started >= 0.25

    OutboxEvent.objects.create(type=events.USER_REGISTERED)  # autocommit: NOTIFY is sent
    started = time.monotonic()
    waiter.wait()
    assert time.monotonic() - started < 10  # woken, not the 20 s fallback


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_waiter_survives_losing_its_connection(waiter, settings) -> None:
    settings.BUS_NOTIFY_FALLBACK_SECONDS = 0.2
    waiter._wrapper.connection.close()  # as if PostgreSQL restarted
    waiter.wait()  # logs, polls
    waiter.wait()  # LISTENs again
    assert waiter._wrapper is not None and not waiter._wrapper.connection.closed


@pytest.mark.django_db
def test_without_postgresql_the_waiter_polls(settings) -> None:
    from django.db import connection

    if connection.vendor == "postgresql":
        pytest.skip("SQLite behaviour")
    settings.BUS_POLL_INTERVAL_SECONDS = 0.05
    waiter = OutboxWaiter(stop=threading.Event())
    waiter.prepare()
    started = time.monotonic()
    waiter.wait()
    assert not waiter.enabled and time.monotonic() - started < 1
