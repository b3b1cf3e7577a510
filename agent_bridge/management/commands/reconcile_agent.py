"""`manage.py reconcile_agent`: compare the Agent's copy of users with ours and repair through the bus."""
import json
import re
import sys
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from agent_bridge import reconciliation, verification
from agent_bridge.agent_client import AgentClient
from project.shutdown import stop_on_signals

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNITS = {"": "seconds", "s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`90`, `90s`, `30m`, `2h`, `1d`, `1w` → a timedelta."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 90s, 30m, 2h or 1d")
    return timedelta(**{_UNITS[match[2].lower()]: int(match[1])})


class Command(BaseCommand):
    help = (
        "Compare the Agent's copy of each user with ours (allergies exactly, preferences as merged, "
        "existence both ways, erased users included) and repair differences through the bus "
        "(agent.resync_requested or user.deleted events). Never-checked users first, then oldest checked."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="report differences; change nothing")
        parser.add_argument("--uid", action="append", dest="uids", metavar="UID", help="only this user (repeatable)")
        parser.add_argument("--not-verified-for", metavar="DURATION",
                            help="only users not verified equal for this long: 90s, 30m, 2h, 1d")
        parser.add_argument("--rate", type=float, default=None,
                            help="most Agent reads per second (default AGENT_RECONCILE_READS_PER_SECOND)")
        parser.add_argument("--continuous", action="store_true",
                            help="run until SIGTERM, verifying every user within AGENT_RECONCILE_PERIOD_SECONDS "
                                 "at the lowest rate that does it (at most --rate)")
        parser.add_argument("--period", metavar="DURATION", help="--continuous: override the period")
        parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    def handle(self, *args, **options) -> None:
        try:
            uids = [uuid.UUID(raw) for raw in options["uids"] or []] or None
            age = parse_duration(options["not_verified_for"]) if options["not_verified_for"] else None
            period = parse_duration(options["period"]).total_seconds() if options["period"] else None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        rate = options["rate"] if options["rate"] is not None else settings.AGENT_RECONCILE_READS_PER_SECOND
        if rate <= 0:
            raise CommandError("--rate must be > 0")
        stop = stop_on_signals()
        with AgentClient.from_settings() as agent:
            if options["continuous"]:
                if options["dry_run"] or uids or age:
                    raise CommandError("--continuous takes no --dry-run, --uid or --not-verified-for")
                self._continuous(agent, stop, period or settings.AGENT_RECONCILE_PERIOD_SECONDS, rate)
                return
            selected = reconciliation.candidates(uids=uids, verified_before=timezone.now() - age if age else None)
            summary = self._once(agent, selected, dry_run=options["dry_run"], rate=rate, stop=stop)
        result = summary.as_dict() | {"dry_run": options["dry_run"]}
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        kinds = "  ".join(f"{kind} {n}" for kind, n in result["drifted_by_kind"].items())
        repaired = "not repaired (dry run)" if options["dry_run"] else f"repaired {result['repaired']}"
        self.stdout.write(
            f"checked {result['checked']}  equal {result['equal']}  in flight {result['in_flight']}  "
            f"errors {result['errors']}  drifted {result['drifted']} ({kinds})  {repaired}  "
            f"in {result['seconds']}s"
        )

    def _once(self, agent, selected, *, dry_run: bool, rate: float, stop) -> reconciliation.Summary:
        total = len(selected)
        last = [0.0]

        def progress(summary: reconciliation.Summary) -> None:
            now = time.monotonic()
            if now - last[0] < 1.0 and summary.checked != total:
                return
            last[0] = now
            elapsed = max(now - summary.started, 1e-6)
            eta = (total - summary.checked) / max(summary.checked / elapsed, 1e-6)
            sys.stderr.write(
                f"\rreconcile: {summary.checked}/{total} checked ({100 * summary.checked // max(total, 1)}%), "
                f"{summary.equal} equal, {summary.drifted_users} drifted, {summary.checked / elapsed:.1f}/s, "
                f"ETA {eta:.0f}s "
            )
            if summary.checked == total:
                sys.stderr.write("\n")

        def drift(result: verification.CheckResult) -> None:
            kinds = ",".join(result.drifts)
            self.stdout.write(f"drift uid={result.uid} kinds={kinds}" + ("" if dry_run else " (repair queued)"))

        limiter = reconciliation.RateLimiter(rate, stop=stop)
        return reconciliation.reconcile(
            uids=selected, agent=agent, dry_run=dry_run, limiter=limiter, on_progress=progress, on_drift=drift
        )

    def _continuous(self, agent, stop, period: float, max_rate: float) -> None:
        self.stdout.write(f"reconcile: continuous, every copy within {period:g}s, at most {max_rate:g} reads/s")

        def batch(total: reconciliation.Summary, rate: float) -> None:
            self.stdout.write(
                f"reconcile: {total.checked} checked, {total.equal} equal, {total.drifted_users} drifted "
                f"({dict(total.drifted)}), {total.repaired} repaired, rate {rate:.2f}/s"
            )

        reconciliation.reconcile_forever(agent=agent, period_seconds=period, max_rate=max_rate, stop=stop,
                                         on_batch=batch)
        self.stdout.write("reconcile: stopped")
