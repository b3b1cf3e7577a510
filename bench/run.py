"""`python -m bench`: start the stack, measure the API and the bus, write docs/benchmarks.{md,json} and plots.

Phases (each states its load parameters in the JSON and the report):
  1. API vs ceiling: wrk against GET/PUT /api/allergies/, the idiomatic DRF peer (bench/views.py
     `PeerAllergyProfileView`) and the bare DRF endpoint, interleaved, bus processes stopped; with
     `--baseline REF` also another commit's /api/allergies/ (e.g. before a change), same database.
     `--api-only` runs this phase alone and keeps the other phases' results of the previous JSON.
  2. The Agent's health seen from the API: this service's PUT vs the seed-000 synchronous PUT with the
     double healthy, slow (200 ms) and down, with the RabbitMQ relay + one consumer running.
  3. Raw ceilings: pika publish-with-confirms + consume; HTTP to the double sequentially and at the
     consumers' concurrency (BUS_CONSUMER_CONCURRENCY × consumers, `raw.http_concurrent`).
  4. Bus: burst throughput for 1, 2 and 4 consumers on 1, 2 and 4 partitions (RabbitMQ) and 1, 2, 4
     consumers (embedded); paced propagation latency; statements per event amortised over a batch;
     fairness (one user's 2,000 queued events vs other users' allergy changes).
  5. Growth: the bus again with 1k, 10k, 100k and 1M users' worth of delivered outbox rows present
     (spread over the retention window, pruned as the production schedule prunes).
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
from bench.cpu import CpuMeter, postgres_backends, rabbitmq_pids
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
        self.burst_events = 150 if quick else 800
        self.burst_cap_s = 15 if quick else 40
        self.matrix = [(1, 1), (1, 4), (2, 2), (4, 4)] if quick else [
            (c, p) for p in (1, 2, 4) for c in (1, 2, 4)]  # (consumers, AMQP_PARTITIONS)
        self.embedded_consumers = [1, 2] if quick else [1, 2, 4]
        self.statements_batch = 50
        self.fairness_flood = 300 if quick else 2000
        self.fairness_events = 24 if quick else 60
        self.fairness_cap_s = 60 if quick else 120
        self.paced_rate = 8.0
        self.paced_events = 24 if quick else 64
        self.growth_burst_events = 100 if quick else 400
        # Bursts per size and path, the median reported: one burst of 400 drains in about a second,
        # short enough for a moment of the shared machine's slowness to move it by a third.
        self.growth_bursts = 1 if quick else 3
        self.growth_burst_cap_s = 15 if quick else 30
        self.growth_paced_events = 16 if quick else 48
        # Growth adds no size once the run is this old (a whole run is meant to stay under ~25 min).
        self.budget_s = 600 if quick else 1320
        self.growth_users = [1000, 10000] if quick else [1000, 10000, 100000, 1000000]
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
        self.bus_settings = self.bus_settings_resolve()
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
    def bus_start(self, *, amqp: bool, consumers: int, command: str = "consume", partitions: int | None = None,
                  counted: Path | None = None) -> None:
        """The bus processes with the run's BUS_CONSUMER_CONCURRENCY (passed whether or not the code
        reads it: bus_settings records which) and `partitions` AMQP_PARTITIONS (default: the settings')."""
        extra = {"BUS_CONSUMER_CONCURRENCY": str(self.bus_settings["BUS_CONSUMER_CONCURRENCY"]),
                 "AMQP_PARTITIONS": str(partitions or self.bus_settings["AMQP_PARTITIONS"])}
        self.stack.start_bus(amqp=amqp, consumers=consumers, command=command, extra_env=extra, counted=counted)

    def bus_settings_resolve(self) -> dict[str, Any]:
        """The consumer's concurrency for this run and where it comes from: --consumer-concurrency,
        else the code's BUS_CONSUMER_CONCURRENCY default (once the code has the setting), else the
        consumer loops the code runs per process (BUS_CONSUMER_CONNECTIONS: its Agent calls in flight)."""
        from django.conf import settings

        defines = hasattr(settings, "BUS_CONSUMER_CONCURRENCY")
        if self.args.consumer_concurrency:
            concurrency, source = self.args.consumer_concurrency, "--consumer-concurrency"
        elif defines:
            concurrency, source = settings.BUS_CONSUMER_CONCURRENCY, "BUS_CONSUMER_CONCURRENCY (settings)"
        else:
            concurrency = getattr(settings, "BUS_CONSUMER_CONNECTIONS", 1)
            source = "BUS_CONSUMER_CONNECTIONS (the code has no BUS_CONSUMER_CONCURRENCY yet)"
        return {"BUS_CONSUMER_CONCURRENCY": max(1, int(concurrency)), "source": source,
                "code_defines_BUS_CONSUMER_CONCURRENCY": defines,
                "BUS_CONSUMER_CONNECTIONS": getattr(settings, "BUS_CONSUMER_CONNECTIONS", None),
                "AMQP_PARTITIONS": settings.AMQP_PARTITIONS, "AMQP_PREFETCH": settings.AMQP_PREFETCH}

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
        p = self.profile
        raw: dict[str, Any] = {}
        if self.amqp_url:
            log("raw: pika")
            raw["pika"] = self._raw(["pika", "--url", self.amqp_url, "--n", str(p.raw_pika_messages),
                                     "--prefetch", str(self.bus_settings["AMQP_PREFETCH"])])
        http = ["http", "--url", stack.agent_url, "--token", stack.env["AGENT_SERVICE_TOKEN"],
                "--n", str(p.raw_http_requests)]
        log("raw: http, sequential")
        raw["http"] = self._raw(http)
        # At the consumers' own concurrency: one client process per consumer process, as many
        # requests in flight in each as the consumer has Agent calls in flight.
        threads = self.bus_settings["BUS_CONSUMER_CONCURRENCY"]
        by_consumers = {}
        for consumers in sorted({c for c, _ in p.matrix} | set(p.embedded_consumers)):
            log(f"raw: http, {consumers} × {threads} in flight")
            with CpuMeter(lambda: {"agent": stack.pids("devagent")}) as agent:
                run = self._raw([*http, "--n", str(p.raw_http_requests * 2),
                                 "--processes", str(consumers), "--threads", str(threads)])
            if run.get("cpu_ms_per_call"):
                run["cpu_ms_per_call"]["agent"] = agent.per_unit_ms(run["requests"])["agent"]
            by_consumers[str(consumers)] = run
        raw["http_concurrent"] = by_consumers["1"]
        raw["http_concurrent_by_consumers"] = by_consumers
        self.results["raw"] = raw

    def _raw(self, argv: list[str]) -> dict[str, Any]:
        completed = subprocess.run([sys.executable, "-m", "bench.raw", *argv], cwd=REPO, capture_output=True,
                                   text=True, timeout=300, check=True)
        return json.loads(completed.stdout.strip().splitlines()[-1])

    def measure_bus(self, pool: list, *, amqp: bool, consumers: int, burst_n: int, paced_n: int = 0,
                    partitions: int | None = None, command: str = "consume",
                    cap_s: float | None = None, bursts: int = 1) -> dict[str, Any]:
        """Burst throughput (and with `paced_n`, paced latency first, on an empty queue) on a fresh bus;
        with `bursts` > 1, the burst of median events/s of that many (all kept under `bursts`)."""
        from bench import bus

        p = self.profile
        cap_s = cap_s or p.burst_cap_s
        partitions = partitions or self.bus_settings["AMQP_PARTITIONS"]
        self.bus_start(amqp=amqp, consumers=consumers, command=command, partitions=partitions)
        out: dict[str, Any] = {"consumers": consumers, "transport": "rabbitmq" if amqp else "embedded",
                               "partitions": partitions if amqp else None, "command": command,
                               "concurrency": self.bus_settings["BUS_CONSUMER_CONCURRENCY"]}
        try:
            bus.warm_up(self.stack, pool[:20])
            if amqp and consumers > 1:
                out["ownership"] = bus.balance(self.stack, pool[:40], partitions=partitions)
            if paced_n:
                out["latency"] = bus.paced(self.stack, pool[:paced_n], rate=p.paced_rate, cap_s=cap_s)
            # The burst may leave a backlog, purged by bus_stop().
            measured = []
            for _ in range(bursts):
                meter = CpuMeter(lambda: self.cpu_groups(amqp=amqp))
                burst = bus.burst(self.stack, pool[:burst_n], cap_s=cap_s, meter=meter)
                measured.append((burst, meter.per_unit_ms(burst["delivered"])))
            measured.sort(key=lambda m: m[0].get("events_per_s") or 0.0)
            out["burst"], out["cpu_ms_per_event"] = measured[len(measured) // 2]
            if bursts > 1:
                out["bursts"] = [m[0].get("events_per_s") for m in measured]
        finally:
            self.bus_stop()
        return out

    def cpu_groups(self, *, amqp: bool) -> dict[str, list[int]]:
        """The processes a bus measurement runs on, by role (bench.cpu.CpuMeter's groups); `bench`
        is this process, which commits the burst and polls for its end."""
        stack = self.stack
        groups = {"consumers": stack.pids("consumer"), "agent": stack.pids("devagent"), "bench": [os.getpid()]}
        if stack.database_kind == "postgresql":
            groups["postgres"] = postgres_backends(urlsplit(stack.database_url).path.lstrip("/"))
        if amqp:
            groups["relay"] = stack.pids("relay")
            groups["rabbitmq"] = rabbitmq_pids()
        return groups

    def bus_configs(self) -> list[tuple[str, bool, int, int | None]]:
        """(name, amqp, consumers, partitions) of the bus phase."""
        configs = [(f"embedded_{c}", False, c, None) for c in self.profile.embedded_consumers]
        if self.amqp_url:
            configs += [(f"rabbitmq_c{c}_p{p}", True, c, p) for c, p in self.profile.matrix]
        return configs

    def latency_configs(self) -> set[str]:
        default = self.bus_settings["AMQP_PARTITIONS"]
        return {"embedded_1", f"rabbitmq_c1_p{default}", f"rabbitmq_c2_p{default}"}

    def phase_bus(self, pool: list, flood_user: Any) -> None:
        p = self.profile
        self.results["bus_settings"] = self.bus_settings
        self.results["queries_per_event"] = {"batch": p.statements_batch}
        if self.amqp_url:
            from bench import bus

            # In-process cross-check (bus processes stopped): the consumer's own batch code, statements
            # captured on this thread's connection only.
            try:
                batch_users = bus.users_create(20, label="batch")
                bus.agent_users_create(self.stack, batch_users)
                self.results["queries_per_event"]["rabbitmq_in_process"] = bus.queries_per_event_batch(batch_users)
            except Exception as exc:  # internal APIs: a change there must not cost the whole run
                self.results["notes"].append(f"In-process statement count failed: {type(exc).__name__}: {exc}")
        for name, amqp in (("embedded", False), ("rabbitmq", True)):
            if amqp and not self.amqp_url:
                continue
            log(f"bus: statements per event, {name}")
            self.results["queries_per_event"][name] = self.statements_per_event(pool, amqp=amqp)
        out = {}
        for name, amqp, consumers, partitions in self.bus_configs():
            log(f"bus: {name}")
            out[name] = self.measure_bus(pool, amqp=amqp, consumers=consumers, burst_n=p.burst_events,
                                         paced_n=p.paced_events if name in self.latency_configs() else 0,
                                         partitions=partitions)
        self.results["bus"] = out
        fairness = {}
        for name, amqp in (("embedded", False), ("rabbitmq", True)):
            if amqp and not self.amqp_url:
                continue
            log(f"bus: fairness, {name}")
            fairness[name] = self.fairness(pool, flood_user, amqp=amqp)
        self.results["fairness"] = fairness

    def statements_per_event(self, pool: list, *, amqp: bool) -> dict[str, Any]:
        """Statements the bus processes send (any thread, BEGIN/COMMIT included) while delivering one
        batch of events of distinct users committed together, divided by the batch: batched claims
        and settles are credited, per-event work is not hidden. The same window's length of idle
        time is counted after, so that polling is visible."""
        from collections import Counter

        from bench import bus
        from bench import statements as counting

        n = self.profile.statements_batch
        folder = self.workdir / f"statements-{'rabbitmq' if amqp else 'embedded'}"
        folder.mkdir()
        self.bus_start(amqp=amqp, consumers=1, counted=folder)
        names = ["consumer0", *(["relay"] if amqp else [])]
        files = {name: folder / f"{name}.json" for name in names}

        def counts() -> dict[str, int]:
            time.sleep(0.15)  # the processes write their count every 50 ms
            return {name: counting.read_count(path) or 0 for name, path in files.items()}

        try:
            bus.warm_up(self.stack, pool[:20])
            time.sleep(1.0)
            before, t0 = counts(), time.time()
            settled = bus.burst(self.stack, pool[20:20 + n], cap_s=60)
            time.sleep(0.3)  # the settle of the last event is counted once its row is settled
            after, t1 = counts(), time.time()
            time.sleep(t1 - t0)
            idle = counts()
        finally:
            self.bus_stop()
        per_process = {name: round((after[name] - before[name]) / n, 2) for name in names}
        sent = [sql for name in names for sql in counting.read_sent(files[name], since=t0, until=t1)]
        kinds = Counter(" ".join(sql.split()[:3])[:60] for sql in sent)
        return {
            "events": n, "delivered": settled["delivered"], "window_s": round(t1 - t0, 2),
            "per_event": round(sum(after[k] - before[k] for k in names) / n, 2),
            "per_event_by_process": per_process,
            "idle_statements_same_window": {name: idle[name] - after[name] for name in names},
            "statements": dict(kinds.most_common(20)),
        }

    def fairness(self, pool: list, flood_user: Any, *, amqp: bool) -> dict[str, Any]:
        """One user's flood of preference updates queued (bus stopped), then the bus started and other
        users' allergy changes made at a moderate pace: their propagation, and the flood's drain."""
        import threading

        from bench import bus

        p = self.profile
        flooded = bus.flood(flood_user, p.fairness_flood)
        self.bus_start(amqp=amqp, consumers=1)
        started = time.time()
        drain: dict[str, Any] = {}
        watcher = threading.Thread(target=lambda: drain.update(bus.drain_watch(
            flooded["first_id"], flood_user.uid, flooded["events_queued"], started, p.fairness_cap_s)))
        watcher.start()
        try:
            latency = bus.paced(self.stack, pool[:p.fairness_events], rate=p.paced_rate, cap_s=p.burst_cap_s)
            watcher.join()
            calls = bus.agent_calls_for(self.stack, flood_user.uid, flooded["started_at"])
        finally:
            watcher.join()
            self.bus_stop()
        return {"flood": {k: v for k, v in flooded.items() if k not in ("first_id", "started_at")}, "latency": latency,
                "flood_drain": drain, "flood_agent_calls": calls,
                "transport": "rabbitmq" if amqp else "embedded", "consumers": 1,
                "partitions": self.bus_settings["AMQP_PARTITIONS"] if amqp else None}

    def phase_growth(self, pool: list) -> None:
        from bench import bus

        p = self.profile
        default = self.bus_settings["AMQP_PARTITIONS"]
        configs = [("embedded_1", False)] + ([("rabbitmq_1", True)] if self.amqp_url else [])
        out: dict[str, Any] = {"rows_per_user": p.rows_per_user, "span_s": bus.history_span_seconds(),
                               "partitions": default, "points": []}
        present = 0
        for users in p.growth_users:
            if time.time() - self.started > p.budget_s:
                self.results["notes"].append(f"Growth stopped before {users:,} users: the run's time budget "
                                             f"({p.budget_s} s) was spent.")
                break
            rows = users * p.rows_per_user
            log(f"growth: adding {rows - present} delivered outbox rows")
            insert_s = bus.history_add(rows - present)
            vacuum_s = bus.history_vacuum()
            present = rows
            log(f"growth: {users} users, scheduled prune")
            prune = bus.history_prune()
            point: dict[str, Any] = {"users": users, "history_rows": rows, "insert_s": round(insert_s, 1),
                                     "vacuum_s": vacuum_s, "prune": prune}
            present = rows - prune["deleted"]  # history rows left (rows_after also counts the bench's own events)
            for name, amqp in configs:
                log(f"growth: {users} users, {name}")
                point[name] = self.measure_bus(pool, amqp=amqp, consumers=1, burst_n=p.growth_burst_events,
                                               paced_n=p.growth_paced_events, cap_s=p.growth_burst_cap_s,
                                               bursts=p.growth_bursts)
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
            flood_user = None
            if set(phases) & {"conditions", "bus", "growth"}:
                pool = bus.users_create(max(self.profile.burst_events, self.profile.paced_events), label="bus")
                flood_user = bus.users_create(1, label="flood")[0]
                bus.agent_users_create(stack, api_users + pool + [flood_user])
            tokens, how = self.tokens_for(api_users)
            self.results["meta"]["tokens_from"] = how
            if "api" in phases:
                self.phase_api(tokens, self.peer_tokens_for(api_users))
            if "conditions" in phases:
                self.phase_conditions(tokens)
            if "raw" in phases:
                self.phase_raw()
            if "bus" in phases:
                self.phase_bus(pool, flood_user)
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
SECTIONS = {"api": ["api"], "conditions": ["conditions"], "raw": ["raw"],
            "bus": ["bus", "queries_per_event", "fairness", "bus_settings"],
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
    parser.add_argument("--consumer-concurrency", type=int, metavar="N",
                        help="BUS_CONSUMER_CONCURRENCY for the bus processes and the raw HTTP ceiling (default: "
                        "the code's setting; before the code has one, its BUS_CONSUMER_CONNECTIONS loops)")
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
