"""manage.py housekeeping: the stack's schedule of its periodic commands."""
import logging
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from agent_bridge import events
from agent_bridge.models import OutboxEvent
from consumers import housekeeping
from consumers.housekeeping import Job

pytestmark = pytest.mark.django_db


def test_jobs_are_parsed_from_the_setting() -> None:
    assert housekeeping.jobs_parse(" prune_outbox=1h, reconcile_agent=15m ,x=30s,y=2d") == [
        Job("prune_outbox", 3600), Job("reconcile_agent", 900), Job("x", 30), Job("y", 172800),
    ]
    for bad in ("prune_outbox", "prune_outbox=0h", "prune_outbox=1w", "Prune=1h", "a=1h;b=2h"):
        with pytest.raises(ValueError):
            housekeeping.jobs_parse(bad)


def test_the_command_refuses_unknown_commands_and_an_empty_schedule(settings) -> None:
    settings.HOUSEKEEPING_JOBS = "prune_outbox=1h,no_such_command=1h"
    with pytest.raises(CommandError, match="no_such_command"):
        call_command("housekeeping")
    settings.HOUSEKEEPING_JOBS = ""
    with pytest.raises(CommandError, match="empty"):
        call_command("housekeeping")


# Not inside the test's transaction: a job closes stale connections between runs, as the daemon must.
@pytest.mark.django_db(transaction=True)
def test_the_schedule_runs_each_job_and_survives_a_failing_one(settings, caplog) -> None:
    settings.OUTBOX_RETENTION_DAYS = 1
    two_days_ago = timezone.now() - timedelta(days=2)
    old = OutboxEvent.objects.create(
        type=events.USER_REGISTERED, status=OutboxEvent.Status.DELIVERED, delivered_at=two_days_ago
    )
    kept = OutboxEvent.objects.create(type=events.USER_REGISTERED)  # pending: never pruned
    stop = threading.Event()
    runs: list[str] = []
    real_run = housekeeping.job_run

    def counting_run(job: Job) -> bool:
        ok = real_run(job)
        runs.append(f"{job.command}:{ok}")
        if len(runs) >= 4:
            stop.set()
        return ok

    with caplog.at_level(logging.INFO, logger="consumers.housekeeping"):
        housekeeping.job_run = counting_run
        try:
            # The failing job (a command that raises) comes first and does not stop the other.
            housekeeping.schedule_run([Job("prune_outbox", 0.05), Job("migrate_no_such_app", 0.05)], stop=stop)
        finally:
            housekeeping.job_run = real_run

    assert runs[:2] == ["prune_outbox:True", "migrate_no_such_app:False"] and len(runs) >= 4
    assert list(OutboxEvent.objects.values_list("pk", flat=True)) == [kept.pk]
    assert old.pk not in OutboxEvent.objects.values_list("pk", flat=True)
    assert any("housekeeping prune_outbox done" in r.getMessage() and "deleted 1" in r.getMessage()
               for r in caplog.records)
    assert any("housekeeping migrate_no_such_app failed" in r.getMessage() for r in caplog.records)
