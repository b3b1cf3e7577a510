"""`python -m bench.verify`: the targets of the verification issue, ratios from one run.

- **Resync**: users with allergies and preferences, the Agent double forgets everything, then
  `manage.py resync_agent` re-pushes every user through the bus with one consumer; users/s
  against the raw HTTP rate to the double at the same concurrency (one consumer = one
  connection: sequential `POST /users/{uid}` with a full profile, what a resync of a forgotten
  user costs).
- **Reconciliation**: `manage.py reconcile_agent` over the same users, unthrottled, gives the
  cost of one check; the time to verify 100k users at the default rates and the share of the
  Agent's capacity (raw sequential `GET /users/{uid}` rate) they take are computed from the
  settings.

Writes one JSON object to stdout (and `--out FILE`). Needs the servers of scripts/services.sh
(DATABASE_URL; AMQP_URL for the RabbitMQ run, else embedded only).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import requests

from bench.stack import Stack

PROFILE = {
    "confirmed": ["peanuts"],
    "intolerances": ["lactose"],
    "severity": {"peanuts": "anaphylactic", "lactose": "intolerance"},
}


def log(message: str) -> None:
    sys.stderr.write(f"[bench.verify {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def users_seed(n: int) -> list[uuid.UUID]:
    """`n` users with an allergy profile and preferences, written with the ORM (no events: the
    measurement starts from an Agent that forgot them)."""
    from django.contrib.auth.hashers import make_password

    from allergies.models import AllergyProfile
    from identity.models import User, UserPreferences

    password = make_password("bench-Password-4821")
    run = uuid.uuid4().hex[:6]
    users = [
        User(email=f"v{i}-{run}@bench.invalid", username=f"v{i}", password=password, is_verified=True)
        for i in range(n)
    ]
    User.objects.bulk_create(users, batch_size=2000)
    users = list(User.objects.filter(email__endswith=f"-{run}@bench.invalid").order_by("id"))
    AllergyProfile.objects.bulk_create(
        [AllergyProfile(user=u, revision=1, synced_revision=1, **PROFILE) for u in users], batch_size=2000
    )
    UserPreferences.objects.bulk_create(
        [UserPreferences(user=u, data={"vibes": ["cozy"]}, revision=1, synced_revision=1) for u in users],
        batch_size=2000,
    )
    return [u.uid for u in users]


def raw_http(stack: Stack, n: int) -> dict[str, float]:
    """Sequential requests on one session (the consumer's concurrency): full-profile creates and reads."""
    session = requests.Session()
    headers = {"X-Service-Token": stack.env["AGENT_SERVICE_TOKEN"], "Accept": "application/json"}
    body = {"preferences": {"vibes": ["cozy"]}, "allergies": PROFILE, "dietary_flags": [], "vibe_tags": [],
            "allergy_flags": ["lactose", "peanuts"]}
    uids = [str(uuid.uuid4()) for _ in range(n)]
    started = time.perf_counter()
    for uid in uids:
        session.post(f"{stack.agent_url}/users/{uid}", json=body, headers=headers, timeout=10).raise_for_status()
    create_rate = n / (time.perf_counter() - started)
    started = time.perf_counter()
    for uid in uids:
        session.get(f"{stack.agent_url}/users/{uid}", headers=headers, timeout=10).raise_for_status()
    read_rate = n / (time.perf_counter() - started)
    stack.control("POST", "/forget")
    return {"create_per_s": round(create_rate, 1), "read_per_s": round(read_rate, 1)}


def run(users: int, *, amqp: bool, database_url: str, amqp_url: str, raw_n: int) -> dict[str, Any]:
    """One stack, one measurement; Django is set up here, on the stack's database."""
    workdir = Path(tempfile.mkdtemp(prefix="kairos-bench-verify-"))
    stack = Stack(workdir, database_url=database_url, amqp_url=amqp_url if amqp else "", api_workers=1)
    try:
        stack.start_agent()
        stack.manage("migrate", "--noinput")
        os.environ.update(stack.env)
        import django
        from django.conf import settings

        django.setup()
        raw = raw_http(stack, raw_n)
        log(f"raw HTTP, 1 connection: {raw}")
        seeded = time.perf_counter()
        users_seed(users)
        log(f"seeded {users} users in {time.perf_counter() - seeded:.1f}s")
        stack.start_bus(amqp=amqp, consumers=1)

        out = stack.manage("resync_agent", "--json", "--timeout", "3600", timeout=4000)
        resync = json.loads(out.stdout.strip().splitlines()[-1])
        held = len(stack.control("GET", "/state")["users"])
        log(f"resync: {resync}; the double holds {held} users")

        out = stack.manage("reconcile_agent", "--json", "--rate", "100000", timeout=4000)
        reconcile = json.loads(out.stdout.strip().splitlines()[-1])
        log(f"reconcile (unthrottled): {reconcile}")
    finally:
        stack.stop()

    per_check_s = reconcile["seconds"] / max(reconcile["checked"], 1)
    one_shot_rate = settings.AGENT_RECONCILE_READS_PER_SECOND
    continuous_rate = 1.25 * 100_000 / settings.AGENT_RECONCILE_PERIOD_SECONDS
    return {
        "transport": "rabbitmq" if amqp else "embedded",
        "database": stack.database_kind,
        "users": users,
        "raw_http_1_connection": raw,
        "resync": {
            **resync,
            "agent_holds": held,
            "ratio_to_raw_create": round(resync["users_per_second"] / raw["create_per_s"], 3)
            if resync.get("users_per_second") else None,
            "projected_100k_seconds": round(100_000 / resync["users_per_second"], 0)
            if resync.get("users_per_second") else None,
        },
        "reconcile": {
            **reconcile,
            "unthrottled_checks_per_s": round(reconcile["checked"] / reconcile["seconds"], 1)
            if reconcile["seconds"] else None,
            "per_check_ms": round(per_check_s * 1000, 2),
            "default_one_shot_rate_per_s": one_shot_rate,
            "verify_100k_one_shot_hours": round(100_000 / one_shot_rate / 3600, 2),
            "one_shot_share_of_agent_reads": round(one_shot_rate / raw["read_per_s"], 4),
            "continuous_rate_100k_per_s": round(continuous_rate, 3),
            "continuous_period_hours": settings.AGENT_RECONCILE_PERIOD_SECONDS / 3600,
            "continuous_share_of_agent_reads": round(continuous_rate / raw["read_per_s"], 5),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify")
    parser.add_argument("--users", type=int, action="append", help="users to resync (repeatable; default 10000)")
    parser.add_argument("--raw", type=int, default=1000, help="requests for the raw HTTP rates")
    parser.add_argument("--transport", choices=["embedded", "rabbitmq", "both"], default="both")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    database_url = os.environ.get("DATABASE_URL") or "sqlite://"
    amqp_url = os.environ.get("AMQP_URL", "")
    transports = ["embedded", "rabbitmq"] if args.transport == "both" else [args.transport]
    if not amqp_url and "rabbitmq" in transports:
        log("AMQP_URL unset: RabbitMQ skipped")
        transports.remove("rabbitmq")
    sizes = args.users or [10_000]
    if len(sizes) * len(transports) == 1:
        results = [run(sizes[0], amqp=transports[0] == "rabbitmq", database_url=database_url, amqp_url=amqp_url,
                       raw_n=args.raw)]
    else:  # one process per run: Django is set up once per process, on that run's database
        results = []
        for n in sizes:
            for transport in transports:
                done = subprocess.run(
                    [sys.executable, "-m", "bench.verify", "--users", str(n), "--transport", transport,
                     "--raw", str(args.raw)],
                    capture_output=True, text=True, check=True,
                )
                sys.stderr.write(done.stderr)
                results += json.loads(done.stdout)["runs"]
    text = json.dumps({"runs": results}, indent=2)
    sys.stdout.write(text + "\n")
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
