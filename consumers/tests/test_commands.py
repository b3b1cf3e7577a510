"""replay_dead_letters, prune_outbox and bus_status, as an operator runs them."""
import json
import os
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from agent_bridge import events
from agent_bridge.models import OutboxEvent
from consumers.management.commands.replay_dead_letters import parse_duration
from consumers.models import DeadLetter
from consumers.tests.conftest import dead_event

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("2h", timedelta(hours=2)),
     ("1d", timedelta(days=1)), ("1W", timedelta(weeks=1))],
)
def test_durations(text, expected) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "30", "m", "-1h", "1y", "1.5h"])
def test_bad_durations_are_refused(bad) -> None:
    with pytest.raises(CommandError):
        run("replay_dead_letters", "--older-than", bad)


def test_dry_run_lists_and_changes_nothing(settings) -> None:
    settings.AMQP_URL = ""
    rows = [dead_event(), dead_event(events.USER_DELETED)]

    out = run("replay_dead_letters", "--dry-run")

    assert "[1/2] would replay" in out and "[2/2] would replay" in out
    assert all(str(row.event_id) in out for row in rows)
    assert "nothing changed" in out
    assert DeadLetter.objects.count() == 2
    assert set(OutboxEvent.objects.values_list("status", flat=True)) == {OutboxEvent.Status.DEAD}


def test_replay_with_filters_replays_exactly_the_selection(settings) -> None:
    settings.AMQP_URL = ""
    uid = uuid.uuid4()
    target = dead_event(uid=uid, failed_ago=timedelta(hours=2))
    too_recent = dead_event(uid=uid)
    other_type = dead_event(events.USER_DELETED, uid=uid, failed_ago=timedelta(hours=2))
    other_user = dead_event(failed_ago=timedelta(hours=2))

    out = run("replay_dead_letters", "--type", events.USER_REGISTERED, "--uid", str(uid), "--older-than", "1h")

    assert "replayed 1, skipped 0 as stale, failed 0" in out
    assert OutboxEvent.objects.get(pk=target.pk).status == OutboxEvent.Status.PENDING
    assert set(DeadLetter.objects.values_list("event_id", flat=True)) == {
        too_recent.event_id, other_type.event_id, other_user.event_id
    }


def test_replay_limit(settings) -> None:
    settings.AMQP_URL = ""
    for _ in range(3):
        dead_event()
    assert "replayed 2" in run("replay_dead_letters", "--limit", "2")
    assert DeadLetter.objects.count() == 1


def test_replay_refuses_a_bad_uid() -> None:
    with pytest.raises(CommandError):
        run("replay_dead_letters", "--uid", "not-a-uuid")


def test_prune_outbox_dry_run_then_for_real(settings) -> None:
    settings.OUTBOX_RETENTION_DAYS = 3
    for days in (5, 4, 1):
        OutboxEvent.objects.create(type=events.USER_REGISTERED, status=OutboxEvent.Status.DELIVERED,
                                   delivered_at=timezone.now() - timedelta(days=days))

    assert "dry run: 2 rows past retention (delivered: 3 days)" in run("prune_outbox", "--dry-run")
    assert OutboxEvent.objects.count() == 3
    assert "deleted 2 rows" in run("prune_outbox", "--batch-size", "1")
    assert "deleted 1 rows" in run("prune_outbox", "--days", "0")
    assert not OutboxEvent.objects.exists()


def test_bus_status_json_has_integer_figures() -> None:
    OutboxEvent.objects.create(type=events.USER_REGISTERED, occurred_at=timezone.now() - timedelta(seconds=90))
    OutboxEvent.objects.create(type=events.USER_REGISTERED, attempts=2, status=OutboxEvent.Status.PUBLISHED)
    OutboxEvent.objects.create(type=events.USER_DELETED, status=OutboxEvent.Status.DELIVERED)
    dead_event(events.ALLERGIES_REPLACED)

    status = json.loads(run("bus_status", "--json"))

    assert status["backlog"] == 2 and status["retrying"] == 1 and status["dead_letters"] == 1
    assert 90 <= status["oldest_pending_age_seconds"] < 300
    for key in ("backlog", "oldest_pending_age_seconds", "retrying", "dead_letters"):
        assert type(status[key]) is int
    assert status["by_type"] == {
        events.USER_REGISTERED: {"backlog": 2, "retrying": 1, "dead_letters": 0},
        events.ALLERGIES_REPLACED: {"backlog": 0, "retrying": 0, "dead_letters": 1},
    }
    assert "backlog 2" in run("bus_status")


def test_bus_status_of_an_empty_bus() -> None:
    status = json.loads(run("bus_status", "--json"))
    verification = status.pop("verification")
    assert status == {
        "backlog": 0, "oldest_pending_age_seconds": 0, "retrying": 0, "dead_letters": 0, "by_type": {}
    }
    assert verification["drift"] == {"missing": 0, "allergies": 0, "preferences": 0, "leftover": 0}
    assert (verification["users"], verification["verifying"], verification["tombstones"]) == (0, 0, 0)


@pytest.mark.rabbitmq
def test_replay_publishes_to_a_real_broker_with_confirms(settings) -> None:
    import pika

    from agent_bridge.transports import rabbitmq as amqp

    settings.AMQP_URL = os.environ["AMQP_URL"]
    settings.BUS_PREFIX = f"kairos-test-replay-{uuid.uuid4().hex[:8]}"
    settings.BUS_RETRY_DELAYS_SECONDS = [1]
    settings.AMQP_PARTITIONS = 1
    rows = [dead_event(), dead_event(events.USER_DELETED)]
    topology = amqp.topology_from_settings()
    connection = pika.BlockingConnection(pika.URLParameters(settings.AMQP_URL))
    channel = connection.channel()
    try:
        out = run("replay_dead_letters", "--type", events.USER_DELETED)

        assert "replayed 1" in out
        method, properties, body = channel.basic_get(topology.work_queue(0), auto_ack=True)
        assert method is not None and json.loads(body) == rows[1].envelope
        assert amqp.attempt_of(properties) == 1
        assert channel.basic_get(topology.work_queue(0))[0] is None
        assert list(DeadLetter.objects.values_list("event_id", flat=True)) == [rows[0].event_id]
        assert OutboxEvent.objects.get(pk=rows[1].pk).status == OutboxEvent.Status.PUBLISHED
    finally:
        amqp.topology_delete(channel, topology, retry_delays=[1])
        connection.close()
