"""The stack's own schedule for its periodic commands (`manage.py housekeeping`).

HOUSEKEEPING_JOBS names management commands and how often each runs, e.g.
`prune_outbox=1h,reconcile_agent=15m`. Each job runs once at start, then every interval, one
after another in this process; a job that fails is logged and runs again at its next turn, so a
database outage delays the housekeeping without stopping it. Nothing here is a cron that
someone must remember: docker-compose.yml runs this command as a service.
"""
from __future__ import annotations

import io
import logging
import re
import threading
import time
import traceback
from dataclasses import dataclass

from django.core.management import call_command
from django.db import close_old_connections

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_JOB = re.compile(r"^\s*(?P<command>[a-z_][a-z0-9_]*)\s*=\s*(?P<count>\d+)(?P<unit>[smhd])\s*$")


@dataclass(frozen=True)
class Job:
    command: str
    every_seconds: float


def jobs_parse(spec: str) -> list[Job]:
    """`prune_outbox=1h,reconcile_agent=15m` → jobs; raises ValueError on anything else."""
    jobs = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        match = _JOB.match(item)
        if match is None or int(match["count"]) == 0:
            raise ValueError(f"HOUSEKEEPING_JOBS: {item!r} is not <command>=<N><s|m|h|d> with N > 0")
        jobs.append(Job(match["command"], int(match["count"]) * _UNITS[match["unit"]]))
    return jobs


def job_run(job: Job) -> bool:
    """Run one job now; True when it succeeded. Its output goes to one log line."""
    close_old_connections()
    output = io.StringIO()
    started = time.monotonic()
    try:
        call_command(job.command, stdout=output)
    except Exception:
        from consumers.processing import scrub_secrets

        logger.error("housekeeping %s failed\n%s", job.command, scrub_secrets(traceback.format_exc()))
        return False
    finally:
        close_old_connections()
    summary = " | ".join(line for line in output.getvalue().splitlines() if line.strip())[-500:]
    logger.info(
        "housekeeping %s done in %.1fs: %s", job.command, time.monotonic() - started, summary,
        extra={"job": job.command, "duration_ms": round((time.monotonic() - started) * 1000, 1)},
    )
    return True


def schedule_run(jobs: list[Job], *, stop: threading.Event) -> None:
    """Run `jobs` on their intervals until `stop` is set."""
    due = {job: 0.0 for job in jobs}
    while not stop.is_set():
        for job in jobs:
            if stop.is_set():
                return
            if time.monotonic() >= due[job]:
                job_run(job)
                due[job] = time.monotonic() + job.every_seconds
        stop.wait(max(0.0, min(due.values()) - time.monotonic()) if due else None)
