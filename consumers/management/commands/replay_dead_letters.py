import re
import uuid
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser

from consumers import services

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `1d`, `1w` → a timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30m, 2h or 1d")
    return timedelta(**{_UNITS[match[2].lower()]: int(match[1])})


class Command(BaseCommand):
    help = (
        "Send dead letters back to the consumer (oldest failure first). Filters combine with AND. "
        "RabbitMQ: published with confirms, each dead letter deleted once confirmed; embedded bus: the "
        "outbox row is due again. Allergy events whose revision the Agent already has are skipped "
        "(deleted as resolved), not re-sent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--type", action="append", dest="types", metavar="TYPE",
                            help="only this event type (repeatable)")
        parser.add_argument("--uid", action="append", dest="uids", metavar="UID", help="only this user (repeatable)")
        parser.add_argument("--older-than", metavar="DURATION",
                            help="only dead letters whose last failure is at least this old: 90s, 30m, 2h, 1d")
        parser.add_argument("--limit", type=int, help="at most this many")
        parser.add_argument("--dry-run", action="store_true", help="list what would be replayed; change nothing")

    def handle(self, *args, **options) -> None:
        try:
            older_than = parse_duration(options["older_than"]) if options["older_than"] is not None else None
            uids = [uuid.UUID(raw) for raw in options["uids"] or []]
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["limit"] is not None and options["limit"] < 0:
            raise CommandError("--limit must be >= 0")

        def progress(index: int, total: int, item: services.ReplayItem) -> None:
            detail = f"  ({item.detail})" if item.detail else ""
            self.stdout.write(f"[{index}/{total}] {item.outcome:12} {item.type:32} {item.event_id} "
                              f"uid={item.uid}{detail}")

        report = services.dead_letter_replay(
            event_types=options["types"],
            uids=uids,
            older_than=older_than,
            limit=options["limit"],
            dry_run=options["dry_run"],
            on_progress=progress,
        )
        if report.dry_run:
            self.stdout.write(
                f"dry run: {report.count(services.WOULD_REPLAY)} would be replayed, "
                f"{report.count(services.WOULD_SKIP)} skipped as stale, {report.failed} not replayable; "
                "nothing changed"
            )
        else:
            self.stdout.write(f"replayed {report.replayed}, skipped {report.skipped} as stale, failed {report.failed}")
        if report.aborted:
            raise CommandError(f"stopped early: {report.aborted}; the rest are still dead letters")
        if report.failed and not report.dry_run:
            raise CommandError(f"{report.failed} dead letter(s) could not be replayed")
