"""`manage.py resync_agent`: push every user's (or the selected users') full state to the Agent,
through the bus, and follow the delivery with progress and an ETA."""
import json
import sys
import time
import uuid

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from agent_bridge import reconciliation, verification
from agent_bridge.management.commands.reconcile_agent import parse_duration
from project.shutdown import stop_on_signals

BATCH = 1000


class Command(BaseCommand):
    help = (
        "Re-push full state (profile, allergies, preferences) of all users, or the selected ones, "
        "for when the Agent lost its data: one agent.resync_requested event per user, queued in "
        "batches; their allergy profiles show pending until delivered. Then waits for the "
        "consumers, showing progress and an ETA (--no-wait: queue and exit)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--uid", action="append", dest="uids", metavar="UID", help="only this user (repeatable)")
        parser.add_argument("--joined-before", metavar="DURATION",
                            help="only users who signed up at least this long ago: 90s, 30m, 2h, 1d")
        parser.add_argument("--no-wait", action="store_true", help="queue the events and exit")
        parser.add_argument("--timeout", type=float, default=None, help="stop waiting after this many seconds")
        parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    def handle(self, *args, **options) -> None:
        try:
            uids = [uuid.UUID(raw) for raw in options["uids"] or []] or None
            joined = parse_duration(options["joined_before"]) if options["joined_before"] else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        stop = stop_on_signals()
        started = time.monotonic()
        selected = reconciliation.resync_candidates(
            uids=uids, joined_before=timezone.now() - joined if joined else None
        )
        event_ids: list[int] = []
        batch: list[uuid.UUID] = []
        for uid in selected:
            batch.append(uid)
            if len(batch) >= BATCH:
                event_ids += verification.resync_request(uids=batch)
                batch = []
                sys.stderr.write(f"\rresync: queued {len(event_ids)}")
        if batch:
            event_ids += verification.resync_request(uids=batch)
        queued_in = time.monotonic() - started
        sys.stderr.write(f"\rresync: queued {len(event_ids)} users in {queued_in:.1f}s\n")
        progress = reconciliation.resync_progress(event_ids=event_ids)
        if not options["no_wait"]:
            progress = self._follow(event_ids, stop, options["timeout"])
        elapsed = time.monotonic() - started
        result = {
            "users": progress.total,
            "delivered": progress.delivered,
            "dead": progress.dead,
            "finished": progress.finished,
            "seconds": round(elapsed, 2),
            "users_per_second": round(progress.delivered / elapsed, 1) if elapsed > 0 else None,
        }
        if options["json"]:
            self.stdout.write(json.dumps(result))
        else:
            self.stdout.write(
                f"resync: {result['delivered']}/{result['users']} delivered, {result['dead']} dead letters, "
                f"{'finished' if result['finished'] else 'NOT finished'} in {result['seconds']}s "
                f"({result['users_per_second']} users/s)"
            )
        if progress.dead:
            raise CommandError(f"{progress.dead} resync events became dead letters: see bus_status")

    def _follow(self, event_ids: list[int], stop, timeout: float | None) -> reconciliation.ResyncProgress:
        began = time.monotonic()
        progress = reconciliation.resync_progress(event_ids=event_ids)
        while not progress.finished and not stop.is_set():
            if timeout is not None and time.monotonic() - began > timeout:
                break
            stop.wait(1.0)
            progress = reconciliation.resync_progress(event_ids=event_ids)
            elapsed = time.monotonic() - began
            rate = progress.delivered / elapsed if elapsed else 0.0
            left = progress.total - progress.delivered - progress.dead
            eta = f"{left / rate:.0f}s" if rate > 0 else "?"
            sys.stderr.write(
                f"\rresync: {progress.delivered}/{progress.total} delivered "
                f"({100 * progress.delivered // max(progress.total, 1)}%), {rate:.0f} users/s, ETA {eta} "
            )
        sys.stderr.write("\n")
        return progress
