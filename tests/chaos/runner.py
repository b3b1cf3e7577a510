"""One chaos run: start the stack on a private broker, act and inject faults, drain, check, report."""

import json
import random
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.chaos.broker import OwnBroker
from tests.chaos.client import ClientWorker, EmailBox
from tests.chaos.faults import Bus, FaultLane, FaultLog, Injector, kinds_for, lanes_for
from tests.chaos.invariants import Findings, check, read_database
from tests.chaos.model import Ledger
from tests.chaos.stack import ChaosStack

# (schema path, method) → the client action it enables
ENDPOINTS = {
    ("/api/signup/", "post"): "signup",
    ("/api/login/", "post"): "login",
    ("/api/allergies/", "put"): "allergies_replace",
    ("/api/allergies/", "delete"): "allergies_clear",
    ("/api/preferences/", "patch"): "preferences_merge",
    ("/api/account/", "delete"): "account_delete",
}


@dataclass
class ChaosConfig:
    seed: int
    workdir: Path
    duration: float = 200.0  # seconds of faults (at least; see min_faults_per_kind)
    #: Keep injecting past `duration` until every kind was injected this many times, for at most
    #: `max_duration` seconds of faults.
    min_faults_per_kind: int = 50
    max_duration: float = 1500.0
    clients: int = 2
    consumers: int = 2
    users_per_client: int = 40
    verify_grace_seconds: float = 30.0
    drain_timeout: float = 300.0
    bus: Bus = Bus.RABBITMQ


@dataclass
class ChaosReport:
    seed: int
    workdir: str
    bus: str = Bus.RABBITMQ.value
    ok: bool = False
    seconds: dict[str, float] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    fault_total: int = 0
    actions: dict[str, Any] = field(default_factory=dict)
    events: dict[str, Any] = field(default_factory=dict)
    dead_letters: dict[str, Any] = field(default_factory=dict)
    findings: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    verified: dict[str, int] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return len(self.findings.get("lost", []))

    @property
    def stale(self) -> int:
        return len(self.findings.get("stale", []))

    def summary(self) -> str:
        acknowledged = self.actions.get("acknowledged", {})
        lines = [
            "=" * 72,
            f"chaos run  seed={self.seed}  bus={self.bus}  {'PASS' if self.ok else 'FAIL'}",
            f"  workdir        {self.workdir}",
            f"  trials         {sum(acknowledged.values())} acknowledged actions "
            f"({self.actions.get('attempts_total', 0)} requests, "
            f"{self.actions.get('indeterminate_total', 0)} with unknown outcome, retried)",
            "                 " + ", ".join(f"{k} {v}" for k, v in sorted(acknowledged.items())),
            f"  faults         {self.fault_total}: " + ", ".join(f"{k} {v}" for k, v in self.faults.items()),
            f"  events         {self.events.get('total', 0)} outbox events "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.events.get("by_type", {}).items()))
            + f"; {self.events.get('agent_requests', 0)} Agent requests",
            f"  dead letters   {self.dead_letters.get('before_replay', 0)} before replay, "
            f"{self.dead_letters.get('after_replay', 0)} after ({self.dead_letters.get('replay', 'not run')})",
            f"  users          {self.findings.get('checked_users', 0)} checked: "
            f"{self.findings.get('live_users', 0)} live, {self.findings.get('deleted_users', 0)} deleted; "
            f"verified by email {self.verified.get('email', 0)}, by database fallback {self.verified.get('db', 0)}",
            f"  lost {self.lost}  stale {self.stale}  db_missing {len(self.findings.get('db_missing', []))}  "
            f"other {len(self.findings.get('other', []))}",
            "  seconds        " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()),
        ]
        for problem in self.problems[:20]:
            lines.append(f"  PROBLEM: {problem}")
        for bucket in ("lost", "stale", "db_missing", "other"):
            for text in self.findings.get(bucket, [])[:10]:
                lines.append(f"  {bucket.upper()}: {text[:400]}")
        lines.append(
            f"  replay with: python -m tests.chaos --bus {self.bus} --seed {self.seed} "
            f"--duration {int(self.seconds.get('faults', 0))}"
        )
        lines.append("=" * 72)
        return "\n".join(lines)


def first_logged_error(workdir: Path, *, max_chars: int = 3000) -> str | None:
    """The first exception the API logged (its log lines, with the traceback), so that a 5xx in
    a CI run explains itself: the workdir is gone by the time anyone reads the report."""
    for path in sorted(workdir.glob("api*.log")):
        lines = path.read_text(errors="replace").splitlines()
        for at, line in enumerate(lines):
            if '"exc_info"' in line or line.startswith("Traceback"):
                return "\n".join(lines[max(at - 1, 0):at + 40])[-max_chars:]
    return None


def _capabilities(stack: ChaosStack) -> set[str]:
    schema = requests.get(f"{stack.api_url}/api/schema/", params={"format": "json"}, timeout=30).json()
    paths = schema.get("paths", {})
    return {action for (path, method), action in ENDPOINTS.items() if method in paths.get(path, {})}


def _has_command(stack: ChaosStack, name: str) -> bool:
    return stack.manage("help", name, check=False).returncode == 0


def _verify_in_db(database_url: str):
    url = database_url.replace("postgres://", "postgresql://", 1)
    lock = threading.Lock()

    def verify(address: str) -> None:
        with lock, psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE identity_user SET is_verified = true WHERE email = %s", (address.lower(),))

    return verify


def _ensure_healthy(stack: ChaosStack, broker: OwnBroker | None, problems: list[str]) -> None:
    """After the faults: every process running, the Agent up and without faults."""
    stack.agent.up()
    stack.agent.clear_faults()
    if broker is not None:
        broker.start()  # idempotent
    names = ["api", *(["relay"] if broker is not None else []), *(f"consumer{i}" for i in range(stack.consumer_count))]
    for name in names:
        process = stack.processes.get(name)
        if process is None or process.poll() is not None:
            problems.append(f"{name} was not running after the faults (exit {process and process.returncode})")
            if process is not None:
                stack.processes.pop(name)
            stack.restart(name)


def _wait_drained(stack: ChaosStack, timeout: float) -> tuple[float | None, dict[str, Any]]:
    started = time.monotonic()
    status: dict[str, Any] = {}
    while time.monotonic() - started < timeout:
        try:
            status = stack.bus_status()
        except (subprocess.SubprocessError, ValueError) as exc:
            status = {"error": repr(exc)}
        else:
            # Drained: nothing to deliver, and no read-back still waiting to check the Agent's copy
            # (unless a dead letter holds one up: the run replays dead letters, then drains again).
            verifying = (status.get("verification") or {}).get("verifying", 0)
            if status.get("backlog") == 0 and (verifying == 0 or status.get("dead_letters")):
                return time.monotonic() - started, status
        time.sleep(2)
    return None, status


def run_chaos(config: ChaosConfig, *, keep: bool = False) -> ChaosReport:
    """Run once and return the report; the stack's logs and report.json stay in `config.workdir`."""
    print(f"chaos: seed {config.seed} on {config.bus.value} "
          f"(replay: python -m tests.chaos --bus {config.bus.value} --seed {config.seed})", flush=True)
    report = ChaosReport(seed=config.seed, workdir=str(config.workdir), bus=config.bus.value)
    master = random.Random(config.seed)
    started = time.monotonic()
    config.workdir.mkdir(parents=True, exist_ok=True)
    broker = OwnBroker().start() if config.bus is Bus.RABBITMQ else None
    # No AMQP_URL: the embedded bus (the consumers claim outbox rows from the database).
    stack = ChaosStack(config.workdir / "stack", amqp_url=broker.url if broker else "", consumers=config.consumers)
    stack.workdir.mkdir(parents=True, exist_ok=True)
    try:
        stack.start()
        report.seconds["startup"] = time.monotonic() - started
        capabilities = _capabilities(stack)
        report.actions["capabilities"] = sorted(capabilities)
        ledger = Ledger()
        emails = EmailBox(stack.workdir / "emails")
        client_stop, fault_stop = threading.Event(), threading.Event()
        clients = [
            ClientWorker(
                index=i,
                seed=master.randrange(2**32),
                api_url=stack.api_url,
                ledger=ledger,
                emails=emails,
                stop=client_stop,
                capabilities=capabilities,
                verify_in_db=_verify_in_db(stack.database_url),
                max_users=config.users_per_client,
                verify_grace_seconds=config.verify_grace_seconds,
            )
            for i in range(config.clients)
        ]
        injector = Injector(stack, broker)
        fault_log = FaultLog(kinds=kinds_for(config.bus))
        lanes = [
            FaultLane(
                name=f"faults-{name}",
                kinds=kinds,
                seed=master.randrange(2**32),
                injector=injector,
                log=fault_log,
                stop=fault_stop,
                gap=(0.3, 1.5),
            )
            for name, kinds in lanes_for(config.bus).items()
        ]
        for worker in clients:
            worker.start()
        time.sleep(3)  # some users exist before the first fault
        faults_began = time.monotonic()
        for lane in lanes:
            lane.start()
        while True:
            time.sleep(1)
            elapsed = time.monotonic() - faults_began
            failed = [t for t in (*lanes, *clients) if t.failure is not None]
            if failed or elapsed >= max(config.duration, config.max_duration):
                break
            counts = fault_log.counts()
            if elapsed >= config.duration and all(counts[kind] >= config.min_faults_per_kind
                                                  for kind in kinds_for(config.bus)):
                break
        fault_stop.set()
        for lane in lanes:
            lane.join(timeout=120)
        report.seconds["faults"] = time.monotonic() - faults_began
        client_stop.set()
        for worker in clients:
            worker.join(timeout=240)
        for thread in (*lanes, *clients):
            if thread.failure is not None:
                report.problems.append(f"{thread.name} failed: {thread.failure!r}")
            if thread.is_alive():
                report.problems.append(f"{thread.name} did not stop")
        report.faults = fault_log.counts()
        report.fault_total = fault_log.total()
        _ensure_healthy(stack, broker, report.problems)

        drained, status = _wait_drained(stack, config.drain_timeout)
        if drained is None:
            report.problems.append(f"the bus did not drain in {config.drain_timeout}s: {status}")
        report.seconds["drain"] = drained if drained is not None else config.drain_timeout
        report.dead_letters["before_replay"] = status.get("dead_letters", 0)
        report.dead_letters["before_replay_by_type"] = {
            k: v["dead_letters"] for k, v in status.get("by_type", {}).items() if v.get("dead_letters")
        }
        report.dead_letters["reasons_before_replay"] = read_database(stack.database_url).dead_letters
        if status.get("dead_letters"):
            if _has_command(stack, "replay_dead_letters"):
                replayed = stack.manage("replay_dead_letters", check=False, timeout=300)
                report.dead_letters["replay"] = f"replay_dead_letters rc {replayed.returncode}"
                (stack.workdir / "replay_dead_letters.out").write_text(replayed.stdout + replayed.stderr)
                drained_again, status = _wait_drained(stack, config.drain_timeout)
                report.seconds["drain_after_replay"] = drained_again or config.drain_timeout
                if drained_again is None:
                    report.problems.append(f"the bus did not drain after the replay: {status}")
            else:
                report.dead_letters["replay"] = "replay_dead_letters does not exist yet"
        report.dead_letters["after_replay"] = status.get("dead_letters", 0)
        time.sleep(1)  # a late duplicate delivery would show up here

        db = read_database(stack.database_url)
        agent_users = stack.agent.state()["users"]
        users = ledger.snapshot_users()
        findings: Findings = check(users, db, agent_users)
        report.findings = findings.as_dict()
        report.events = {
            "total": sum(sum(s.values()) for s in db.outbox.values()),
            "by_type": {t: sum(s.values()) for t, s in db.outbox.items()},
            "by_status": db.outbox,
            "agent_requests": len(stack.agent.requests()),
        }
        report.dead_letters["reasons_after_replay"] = db.dead_letters
        report.actions.update(
            {
                "acknowledged": dict(ledger.acknowledged),
                "attempts": dict(ledger.attempts),
                "attempts_total": sum(ledger.attempts.values()),
                "indeterminate": dict(ledger.indeterminate),
                "indeterminate_total": sum(ledger.indeterminate.values()),
                "server_errors": ledger.server_errors[:50],
                "rejected": ledger.rejected[:50],
            }
        )
        report.verified = {
            "email": sum(1 for u in users if u.verified_by == "email"),
            "db": sum(1 for u in users if u.verified_by == "db"),
        }
        if ledger.server_errors:
            report.problems.append(f"{len(ledger.server_errors)} API answers were 5xx, e.g. {ledger.server_errors[0]}")
            logged = first_logged_error(stack.workdir)  # where the stack writes api.log
            report.problems.append(f"the API's log, at its first exception:\n{logged}" if logged else
                                   "the API's log holds no exception")
        if ledger.rejected:
            report.problems.append(f"{len(ledger.rejected)} actions were refused (4xx), e.g. {ledger.rejected[0]}")
        report.ok = findings.ok and not report.problems
        (config.workdir / "fault-log.json").write_text(json.dumps(fault_log.entries, indent=1))
        # The ground truth, user by user, to compare with the logs when a finding needs explaining.
        ledger_dump = [{k: v for k, v in u.__dict__.items() if k not in ("password", "token")} for u in users]
        (config.workdir / "ledger.json").write_text(json.dumps(ledger_dump, indent=1))
    except BaseException as exc:
        report.problems.append(f"the run crashed: {exc!r}")
        raise
    finally:
        report.seconds["total"] = time.monotonic() - started
        (config.workdir / "report.json").write_text(json.dumps(report.__dict__, indent=1, default=str))
        print(report.summary(), flush=True)
        if not keep:
            stack.stop()
        else:
            for name in list(stack.processes):
                stack.kill(name, 15)
        if broker is not None:
            broker.destroy()
    return report
