"""`python -m bench`: start the stack, measure the API and the bus, write docs/benchmarks.{md,json} and plots.

Phases (each states its load parameters in the JSON and the report):
  1. API vs ceiling: wrk against GET/PUT /api/allergies/, the idiomatic DRF peer (bench/views.py
     `PeerAllergyProfileView`) and the bare DRF endpoint, interleaved, bus processes stopped; with
     `--baseline REF` also another commit's /api/allergies/ (e.g. before a change), same database.
     `--api-only` runs this phase alone and keeps the other phases' results of the previous JSON.
  2. The Agent's health seen from the API: this service's PUT vs the seed-000 synchronous PUT with the
     double healthy, slow (200 ms) and down, with the RabbitMQ relay + one consumer running.
  3. Raw ceilings: pika publish-with-confirms + consume; sequential HTTP to the double.
  4. Bus: burst throughput and paced propagation latency, embedded and RabbitMQ (1 and 2 consumers).
  5. Growth: the bus again with 1k, 10k and 100k users' worth of delivered outbox rows present.
"""
import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from bench import load
from bench.stack import REPO, Stack, wait_for

DEFAULT_DATABASE_URL = "postgres://kairos@127.0.0.1:5433/kairos"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2):
            return True
    except OSError:
        return False


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.getloadavg().__repr__()


class Profile:
    """Durations and sizes; --quick shrinks them for building and debugging the harness."""

    def __init__(self, quick: bool, rounds: int | None = None) -> None:
        self.quick = quick
        self.api = load.LoadSpec(threads=2, connections=16, duration_s=2 if quick else 4, warmup_s=1 if quick else 2)
        self.rounds = rounds or 2
        self.sync = load.LoadSpec(threads=2, connections=16, duration_s=3 if quick else 5,
                                  warmup_s=1 if quick else 2)
        self.rounds_conditions = 1 if quick else 2
        self.burst_events = 150 if quick else 400
        self.burst_cap_s = 10 if quick else 15
        self.paced_rate = 8.0
        self.paced_events = 24 if quick else 64
        self.growth_burst_events = 100 if quick else 150
        self.growth_burst_cap_s = 8
        self.growth_paced_events = 16 if quick else 24
        self.budget_s = 570
        self.growth_users = [1000, 10000] if quick else [1000, 10000, 100000]
        self.rows_per_user = 3
        self.raw_pika_messages = 1000 if quick else 3000
        self.raw_http_requests = 300 if quick else 1000


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.profile = Profile(args.quick, args.rounds)
        self.database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        self.amqp_url = os.environ.get("AMQP_URL") or DEFAULT_AMQP_URL
        self.results: dict[str, Any] = {"notes": []}
        self.workdir = Path(tempfile.mkdtemp(prefix="kairos-bench-"))
        self.stack: Stack | None = None

    # --- set-up -------------------------------------------------------------------
    def start(self) -> Stack:
        if not self.database_url.startswith("postgres") or not reachable(self.database_url, 5432):
            self.results["notes"].append("PostgreSQL not reachable: ran on SQLite.")
            self.database_url = "sqlite://"
        if not reachable(self.amqp_url, 5672):
            self.results["notes"].append(f"RabbitMQ not reachable at {self.amqp_url}: RabbitMQ measurements skipped.")
            self.amqp_url = ""
        stack = Stack(self.workdir, database_url=self.database_url, amqp_url=self.amqp_url,
                      api_workers=self.args.workers)
        self.stack = stack
        log(f"workdir {self.workdir}; database {stack.database_kind}; rabbitmq {'yes' if self.amqp_url else 'no'}")
        stack.start_agent()
        stack.manage("migrate", "--noinput")
        os.environ.update(stack.env)
        import django

        django.setup()
        stack.start_api()
        return stack

    def tokens_for(self, users: list) -> tuple[list[str], str]:
        """Real login when the API has it; else tokens written with the ORM (pre-login builds)."""
        import requests

        from bench.bus import PASSWORD

        stack = self.stack
        probe = requests.post(f"{stack.api_url}/api/login/", json={"email": users[0].email, "password": PASSWORD},
                              timeout=30)
        if probe.status_code == 200 and "token" in probe.json():
            tokens = [probe.json()["token"]]
            for user in users[1:]:
                response = requests.post(f"{stack.api_url}/api/login/",
                                         json={"email": user.email, "password": PASSWORD}, timeout=30)
                response.raise_for_status()
                tokens.append(response.json()["token"])
            return tokens, "POST /api/login/"
        from datetime import timedelta

        from django.utils import timezone

        from identity.models import AuthToken
        from identity.tokens import auth_token_generate, auth_token_hash

        tokens = []
        for user in users:
            raw = auth_token_generate()
            AuthToken.objects.create(user=user, key_hash=auth_token_hash(raw),
                                     expires_at=timezone.now() + timedelta(days=1))
            tokens.append(raw)
        return tokens, f"ORM (login answered {probe.status_code})"

    @staticmethod
    def peer_tokens_for(users: list) -> list[str]:
        """The idiomatic peer's credentials for the same users: `rest_framework.authtoken` tokens."""
        from rest_framework.authtoken.models import Token

        return [Token.objects.get_or_create(user=user)[0].key for user in users]

    def baseline_start(self, ref: str) -> str:
        """`ref`'s code exported (git archive) and served by its own gunicorn on the same database."""
        code = self.workdir / "baseline"
        code.mkdir()
        archive = subprocess.run(["git", "archive", "--format=tar", ref], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
        return self.stack.start_api_variant("api_baseline", {}, code=code)

    # --- the bus processes ----------------------------------------------------------
    def bus_start(self, *, amqp: bool, consumers: int, command: str = "consume") -> None:
        self.stack.start_bus(amqp=amqp, consumers=consumers, command=command)

    def bus_stop(self) -> None:
        self.stack.stop_bus()
        self.bus_purge()

    def bus_purge(self) -> None:
        from bench import bus

        self.stack.purge_queues()
        bus.outbox_quiesce()

    # --- phases -------------------------------------------------------------------
    def phase_api(self, tokens: list[str], peer_tokens: list[str]) -> None:
        """Rounds of ceiling/ours/peer back to back, so the machine's (shared, drifting) load hits all alike."""
        spec = self.profile.api
        base = self.stack.api_url
        # (name, base URL, path, method, tokens, PUT body)
        endpoints = [
            ("ceiling_get", base, "/api/bench/ceiling/", "GET", [], False),
            ("allergies_get", base, "/api/allergies/", "GET", tokens, False),
            ("peer_get", base, "/api/bench/peer/allergies/", "GET", peer_tokens, False),
            ("ceiling_put", base, "/api/bench/ceiling/", "PUT", [], True),
            ("allergies_put", base, "/api/allergies/", "PUT", tokens, True),
            ("peer_put", base, "/api/bench/peer/allergies/", "PUT", peer_tokens, True),
            ("ceiling_auth_get", base, "/api/bench/ceiling-auth/", "GET", tokens, False),
        ]
        baseline = None
        if self.args.baseline:
            ref = subprocess.run(["git", "rev-parse", "--short", self.args.baseline], cwd=REPO, capture_output=True,
                                 text=True, check=True).stdout.strip()
            baseline = {"ref": self.args.baseline, "git": ref}
            url = self.baseline_start(self.args.baseline)
            endpoints += [
                ("baseline_allergies_get", url, "/api/allergies/", "GET", tokens, False),
                ("baseline_allergies_put", url, "/api/allergies/", "PUT", tokens, True),
            ]
        if self.args.whatif_nohc:
            url = self.stack.start_api_variant("api_nohc", {"BENCH_CONN_HEALTH_CHECKS": "0"})
            endpoints += [
                ("whatif_nohc_allergies_get", url, "/api/allergies/", "GET", tokens, False),
                ("whatif_nohc_allergies_put", url, "/api/allergies/", "PUT", tokens, True),
            ]
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name, *_ in endpoints}
        try:
            for index in range(self.profile.rounds):
                for name, url, path, method, credentials, body in endpoints:
                    log(f"api round {index + 1}: {name}")
                    rounds[name].append(load.run_wrk(url, path, method=method, tokens=credentials, spec=spec,
                                                     body=body, warm=index == 0))
        finally:
            for variant in ("api_baseline", "api_nohc"):
                if variant in self.stack.processes:
                    self.stack.stop_process(variant)
        from bench import queries

        self.results["api"] = {"load": asdict(spec), "rounds": self.profile.rounds, "workers": self.args.workers,
                               "runs": {name: load.combine(runs) for name, runs in rounds.items()},
                               "statements": queries.api_statements(self.stack, tokens[0], peer_tokens[0]),
                               "baseline": baseline, "bus_running": False}

    def phase_conditions(self, tokens: list[str]) -> None:
        """This service's PUT vs the seed-000 synchronous PUT with the double healthy, slow and down."""
        spec = self.profile.sync
        stack = self.stack
        amqp = bool(self.amqp_url)
        rounds: dict[str, dict[str, list]] = {}
        # One bus for the whole phase; between conditions whatever is queued or waiting for a retry
        # is purged, so each condition starts from an empty bus.
        # The synchronous design gets its own gunicorn (same settings and workers): with the Agent down its
        # requests hold every worker for 3 s and more, and requests queued behind them would otherwise
        # starve the service's PUTs measured next.
        sync_url = stack.start_api_variant("api_sync", {})
        self.bus_start(amqp=amqp, consumers=1)
        try:
            for index in range(self.profile.rounds_conditions):
                for condition in ("healthy", "slow", "down"):
                    if condition == "slow":
                        stack.control("POST", "/fault", {"latency_ms": 200})
                    elif condition == "down":
                        stack.control("POST", "/down")
                    for name, base, path in (("service_put", stack.api_url, "/api/allergies/"),
                                             ("sync_put", sync_url, "/api/bench/sync/allergies/")):
                        log(f"conditions round {index + 1}: {condition} {name}")
                        # With the Agent down every synchronous request takes 3 s or more: a longer window
                        # lets some of them complete (wrk only reports completed requests).
                        run_spec = replace(spec, duration_s=max(spec.duration_s, 12)) if (
                            name == "sync_put" and condition == "down") else spec
                        rounds.setdefault(condition, {}).setdefault(name, []).append(
                            load.run_wrk(base, path, method="PUT", tokens=tokens, spec=run_spec, body=True,
                                         warm=index == 0)
                        )
                    stack.control("POST", "/fault", {})
                    stack.control("POST", "/up")
                    # wrk is gone, but requests it left in gunicorn's backlog still run: let them finish.
                    wait_for(lambda: requests.get(f"{sync_url}/api/bench/ceiling/", timeout=2).ok, timeout=60,
                             what="the synchronous design's server to drain")
                    self.bus_purge()
        finally:
            self.bus_stop()
            stack.stop_process("api_sync")
        self.results["conditions"] = {
            "load": asdict(spec),
            "rounds": self.profile.rounds_conditions,
            "bus": "rabbitmq, relay + 1 consumer" if amqp else "embedded, 1 consumer",
            "conditions": {c: {n: load.combine(r) for n, r in runs.items()} for c, runs in rounds.items()},
        }

    def phase_raw(self) -> None:
        stack = self.stack
        raw: dict[str, Any] = {}
        if self.amqp_url:
            log("raw: pika")
            raw["pika"] = self._raw(["pika", "--url", self.amqp_url, "--n", str(self.profile.raw_pika_messages),
                                     "--prefetch", os.environ.get("AMQP_PREFETCH", "10")])
        log("raw: http")
        raw["http"] = self._raw(["http", "--url", stack.agent_url, "--token", stack.env["AGENT_SERVICE_TOKEN"],
                                 "--n", str(self.profile.raw_http_requests)])
        self.results["raw"] = raw

    def _raw(self, argv: list[str]) -> dict[str, Any]:
        completed = subprocess.run([sys.executable, "-m", "bench.raw", *argv], cwd=REPO, capture_output=True,
                                   text=True, timeout=300, check=True)
        return json.loads(completed.stdout.strip().splitlines()[-1])

    def bus_configs(self) -> list[tuple[str, bool, int, str]]:
        configs = [("embedded_1", False, 1, "consume")]
        if self.amqp_url:
            configs += [("rabbitmq_1", True, 1, "consume"), ("rabbitmq_2", True, 2, "consume")]
        return configs

    def measure_bus(self, pool: list, *, amqp: bool, consumers: int, burst_n: int, paced_n: int,
                    command: str = "consume", cap_s: float | None = None) -> dict[str, Any]:
        from bench import bus

        p = self.profile
        cap_s = cap_s or p.burst_cap_s
        self.bus_start(amqp=amqp, consumers=consumers, command=command)
        try:
            bus.warm_up(self.stack, pool[:20])
            # Latency first, on an empty queue; the burst may leave a backlog, purged by bus_stop().
            latency = bus.paced(self.stack, pool[:paced_n], rate=p.paced_rate, cap_s=cap_s)
            burst = bus.burst(self.stack, pool[:burst_n], cap_s=cap_s)
        finally:
            self.bus_stop()
        return {"consumers": consumers, "transport": "rabbitmq" if amqp else "embedded", "command": command,
                "burst": burst, "latency": latency}

    def phase_bus(self, pool: list) -> None:
        p = self.profile
        from bench import bus

        self.results["queries_per_event"] = bus.queries_per_event(self.stack, pool[-1])
        out = {}
        configs = self.bus_configs()
        for name, amqp, consumers, command in configs:
            log(f"bus: {name}")
            out[name] = self.measure_bus(pool, amqp=amqp, consumers=consumers, burst_n=p.burst_events,
                                         paced_n=p.paced_events, command=command)
        self.results["bus"] = out

    def phase_growth(self, pool: list) -> None:
        from bench import bus

        p = self.profile
        out: dict[str, Any] = {"rows_per_user": p.rows_per_user, "points": []}
        present = 0
        for users in p.growth_users:
            if time.time() - self.started > p.budget_s:
                self.results["notes"].append(f"Growth stopped before {users} users: the run's time budget was spent.")
                break
            rows = users * p.rows_per_user
            log(f"growth: adding {rows - present} delivered outbox rows")
            insert_s = bus.history_add(rows - present)
            present = rows
            point: dict[str, Any] = {"users": users, "history_rows": rows, "insert_s": round(insert_s, 1)}
            for name, amqp, consumers, _command in self.bus_configs()[:2]:
                log(f"growth: {users} users, {name}")
                point[name] = self.measure_bus(pool, amqp=amqp, consumers=consumers, burst_n=p.growth_burst_events,
                                               paced_n=p.growth_paced_events, cap_s=p.growth_burst_cap_s)
            out["points"].append(point)
        self.results["growth"] = out

    # --- the whole run --------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = self.started = time.time()
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True)
        self.results["meta"] = {
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "uptime_before": uptime(),
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "quick": self.args.quick,
            "git": self.args.git_label or git.stdout.strip(),
            "git_dirty": False if self.args.git_label else bool(dirty.stdout.strip()),
        }
        stack = self.start()
        try:
            from bench import bus

            broker = urlsplit(self.amqp_url) if self.amqp_url else None
            self.results["meta"].update(database=stack.database_kind, rabbitmq=bool(self.amqp_url),
                                        rabbitmq_at=f"{broker.hostname}:{broker.port or 5672}" if broker else None,
                                        api_workers=self.args.workers)
            phases = self.args.phases
            api_users = bus.users_create(self.profile.api.connections * 2, label="api")
            pool = []
            if set(phases) & {"conditions", "bus", "growth"}:
                pool = bus.users_create(max(self.profile.burst_events, self.profile.paced_events), label="bus")
                bus.agent_users_create(stack, api_users + pool)
            tokens, how = self.tokens_for(api_users)
            self.results["meta"]["tokens_from"] = how
            if "api" in phases:
                self.phase_api(tokens, self.peer_tokens_for(api_users))
            if "conditions" in phases:
                self.phase_conditions(tokens)
            if "raw" in phases:
                self.phase_raw()
            if "bus" in phases:
                self.phase_bus(pool)
            if "growth" in phases:
                self.phase_growth(pool)
        finally:
            self.results["meta"]["uptime_after"] = uptime()
            self.results["meta"]["duration_s"] = round(time.time() - started, 1)
            if not self.args.keep:
                stack.stop()
            else:
                log(f"kept: {self.workdir}, database {stack.database_url}")
        return self.results


PHASES = ("api", "conditions", "raw", "bus", "growth")
# Result sections written by each phase.
SECTIONS = {"api": ["api"], "conditions": ["conditions"], "raw": ["raw"], "bus": ["bus", "queries_per_event"],
            "growth": ["growth"]}


def carry_over(results: dict[str, Any], previous_json: Path, *, ran: list[str]) -> None:
    """Keep the previous run's sections of the phases not run now (each marked in `carried_over` with the run it
    comes from), so that a partial run (--api-only) does not erase the rest of the report."""
    if not previous_json.exists() or set(PHASES) <= set(ran):
        return
    previous = json.loads(previous_json.read_text())
    meta = previous.get("meta", {})
    own = {"started_at": meta.get("started_at"), "git": meta.get("git"), "uptime_before": meta.get("uptime_before")}
    carried: dict[str, Any] = {}
    for phase in PHASES:
        for section in SECTIONS[phase] if phase not in ran else []:
            if section in previous and section not in results:
                results[section] = previous[section]
                carried[section] = previous.get("carried_over", {}).get(section) or own
    if carried:
        results["carried_over"] = carried
        for section, origin in carried.items():
            results["notes"].append(f"`{section}` carried over from the run of {origin.get('started_at')} "
                                    f"(git {origin.get('git')}); only {', '.join(ran)} ran now.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs for building the harness (not for the report)")
    parser.add_argument("--out", default=str(REPO / "docs"), help="where benchmarks.md/.json and bench/*.png go")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1, help="gunicorn sync workers")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}")
    parser.add_argument("--api-only", action="store_true",
                        help="only the API phase (= --phases api); the other phases' results are carried over "
                        "from the existing JSON in --out, and the report says so")
    parser.add_argument("--whatif-nohc", action="store_true",
                        help="also measure /api/allergies/ on a gunicorn with CONN_HEALTH_CHECKS off (diagnostic)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the API phase (default 2)")
    parser.add_argument("--baseline", metavar="REF", help="also measure REF's /api/allergies/ (git archive of REF, "
                        "its own gunicorn, same database and tokens), e.g. the commit before a change")
    parser.add_argument("--keep", action="store_true", help="leave the processes' logs and the database in place")
    parser.add_argument("--git-label", help="what the code is, when running from an export outside git "
                        "(e.g. `git archive HEAD` unpacked: a clean tree)")
    parser.add_argument("--report-only", metavar="JSON", help="re-render the report from an existing JSON")
    args = parser.parse_args(argv)
    args.phases = ["api"] if args.api_only else [p for p in args.phases.split(",") if p]
    from bench import report

    out = Path(args.out)
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
    else:
        if not load.wrk_available():
            log("wrk is missing: apt-get install wrk")
            return 2
        results = Bench(args).run()
        out.mkdir(parents=True, exist_ok=True)
        carry_over(results, out / "benchmarks.json", ran=args.phases)
        (out / "benchmarks.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    report.write(results, out)
    log(f"wrote {out / 'benchmarks.md'}, {out / 'benchmarks.json'} and {out / 'bench'}/*.png")
    return 0
