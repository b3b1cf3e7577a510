from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from consumers import services


class Command(BaseCommand):
    help = (
        "Delete delivered outbox rows older than OUTBOX_RETENTION_DAYS and dead letters (with their dead rows) "
        "older than BUS_DEAD_RETENTION_DAYS; never pending or published ones. The daemons run this themselves."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None,
                            help=f"keep this many days of delivered rows (default OUTBOX_RETENTION_DAYS, "
                                 f"now {settings.OUTBOX_RETENTION_DAYS})")
        parser.add_argument("--batch-size", type=int, default=1000, help="rows deleted per transaction")
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")

    def handle(self, *args, **options) -> None:
        days = settings.OUTBOX_RETENTION_DAYS if options["days"] is None else options["days"]
        if days < 0 or options["batch_size"] < 1:
            raise CommandError("--days must be >= 0 and --batch-size >= 1")
        if options["dry_run"]:
            count = services.outbox_prune(older_than_days=days, dry_run=True)
            self.stdout.write(f"dry run: {count} rows past retention (delivered: {days} days) would be deleted")
            return
        deleted = services.outbox_prune(
            older_than_days=days,
            batch_size=options["batch_size"],
            on_batch=lambda total: self.stdout.write(f"deleted {total} so far"),
        )
        self.stdout.write(f"deleted {deleted} rows past retention (delivered: {days} days)")
