import json

from django.core.management.base import BaseCommand

from agent_bridge.verification import verification_status_get
from consumers.selectors import bus_status_get


class Command(BaseCommand):
    help = (
        "Show the bus: backlog, oldest pending age, retrying, dead letters, per event type; and the "
        "verification of the Agent's copy (never verified, oldest verification, read-backs, drift by kind)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options) -> None:
        # Verification figures scan every user: here, not in bus_status_get (the health check's).
        status = bus_status_get() | {"verification": verification_status_get()}
        if options["json"]:
            self.stdout.write(json.dumps(status))
            return
        self.stdout.write(
            f"backlog {status['backlog']}  oldest pending {status['oldest_pending_age_seconds']}s  "
            f"retrying {status['retrying']}  dead letters {status['dead_letters']}"
        )
        for event_type, counts in sorted(status["by_type"].items()):
            self.stdout.write(
                f"  {event_type:34} backlog {counts['backlog']:6}  retrying {counts['retrying']:6}  "
                f"dead {counts['dead_letters']:6}"
            )
        verification = status["verification"]
        oldest = verification["oldest_verified_age_seconds"]
        self.stdout.write(
            f"verification: {verification['users']} users, {verification['never_verified']} never verified, "
            f"oldest verified {'-' if oldest is None else f'{oldest}s'} ago, {verification['verifying']} being "
            f"read back (horizon {verification['read_back_horizon_seconds']:g}s), "
            f"{verification['tombstones']} tombstones"
        )
        self.stdout.write(
            "  drift found: " + "  ".join(f"{kind} {count}" for kind, count in verification["drift"].items())
        )
