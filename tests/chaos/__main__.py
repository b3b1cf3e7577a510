"""Long chaos soaks from the command line:

    python -m tests.chaos --seed 1234 --duration 900
    python -m tests.chaos --bus embedded --duration 300

Needs PostgreSQL (DATABASE_URL, default: the scripts/services.sh server) and, on RabbitMQ (the
default), rabbitmq-server installed: the run starts its own broker node. Exit status 0 when nothing was lost or stale.
"""

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

from tests.chaos.faults import Bus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.chaos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bus", choices=[bus.value for bus in Bus], default=Bus.RABBITMQ.value,
                        help="rabbitmq (default; the run starts its own broker node) or embedded (no broker, no relay)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (default: a fresh random seed)")
    parser.add_argument("--duration", type=float, default=600, help="seconds of fault injection (default 600)")
    parser.add_argument("--min-faults-per-kind", type=int, default=50, help="inject every kind at least this often")
    parser.add_argument("--max-duration", type=float, default=3000, help="seconds of faults at most")
    parser.add_argument("--clients", type=int, default=2, help="client threads acting for users")
    parser.add_argument("--consumers", type=int, default=2, help="consumer processes")
    parser.add_argument("--users-per-client", type=int, default=60)
    parser.add_argument("--drain-timeout", type=float, default=600)
    parser.add_argument("--workdir", type=Path, default=None, help="where logs and report.json go")
    parser.add_argument("--keep", action="store_true", help="keep the stack's database for inspection")
    args = parser.parse_args(argv)

    os.environ.setdefault("DATABASE_URL", "postgres://kairos@127.0.0.1:5433/kairos")
    from tests.chaos.broker import rabbitmq_missing_reason
    from tests.chaos.runner import ChaosConfig, run_chaos

    bus = Bus(args.bus)
    reason = rabbitmq_missing_reason() if bus is Bus.RABBITMQ else None
    if reason:
        print(f"chaos: cannot run: {reason}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"kairos-chaos-run-{seed}-"))
    config = ChaosConfig(
        seed=seed,
        workdir=workdir,
        duration=args.duration,
        min_faults_per_kind=args.min_faults_per_kind,
        max_duration=args.max_duration,
        clients=args.clients,
        consumers=args.consumers,
        users_per_client=args.users_per_client,
        drain_timeout=args.drain_timeout,
        bus=bus,
    )
    report = run_chaos(config, keep=args.keep)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
