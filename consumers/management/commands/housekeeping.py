from django.conf import settings
from django.core.management import get_commands
from django.core.management.base import BaseCommand, CommandError

from consumers.housekeeping import jobs_parse, schedule_run
from consumers.runners import stop_flag_on_signals


class Command(BaseCommand):
    help = "Run the periodic commands of HOUSEKEEPING_JOBS (e.g. prune_outbox=1h) until SIGTERM/SIGINT."

    def handle(self, *args, **options) -> None:
        try:
            jobs = jobs_parse(settings.HOUSEKEEPING_JOBS)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        unknown = sorted({job.command for job in jobs} - set(get_commands()))
        if unknown:
            raise CommandError(f"HOUSEKEEPING_JOBS names unknown commands: {', '.join(unknown)}")
        if not jobs:
            raise CommandError("HOUSEKEEPING_JOBS is empty: nothing to schedule")
        stop = stop_flag_on_signals()
        self.stdout.write("housekeeping: " + ", ".join(f"{j.command} every {j.every_seconds:g}s" for j in jobs))
        schedule_run(jobs, stop=stop)
