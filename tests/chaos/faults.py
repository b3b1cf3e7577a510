"""Fault injection: three lanes of seeded faults that run while the clients act, and overlap.

The process lane crashes processes (kill -9 of the API with its workers, the relay, a consumer)
and brings each back; the broker lane stops or kills RabbitMQ and starts it again (so a process
may crash and restart while the broker is down); the Agent lane makes the Agent double slow,
fail with 5xx, refuse connections, answer 401 (a rotated service token), or apply writes after
the backend gave up on them (late apply: possibly after a newer write) for a while. Every
fault ends with the component healthy again, so the run can drain afterwards.
"""

import enum
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.chaos.broker import OwnBroker
from tests.chaos.stack import ChaosStack

PROCESS_KINDS = ("api_kill", "relay_kill", "consumer_kill")
BROKER_KINDS = ("rabbitmq_restart", "rabbitmq_kill")
AGENT_KINDS = ("agent_slow", "agent_5xx", "agent_down", "agent_401", "agent_late_apply")
ALL_KINDS = PROCESS_KINDS + BROKER_KINDS + AGENT_KINDS


class Bus(enum.Enum):
    """Which bus the chaos stack runs on."""

    RABBITMQ = "rabbitmq"
    EMBEDDED = "embedded"  # no broker and no relay: the consumers claim outbox rows from PostgreSQL


def lanes_for(bus: Bus) -> dict[str, tuple[str, ...]]:
    """The fault lanes of a run on `bus`, by name: the embedded bus has no relay and no broker to fault."""
    if bus is Bus.EMBEDDED:
        return {"processes": ("api_kill", "consumer_kill"), "agent": AGENT_KINDS}
    return {"processes": PROCESS_KINDS, "broker": BROKER_KINDS, "agent": AGENT_KINDS}


def kinds_for(bus: Bus) -> tuple[str, ...]:
    """Every fault kind a run on `bus` injects."""
    return tuple(kind for kinds in lanes_for(bus).values() for kind in kinds)


@dataclass
class FaultLog:
    kinds: tuple[str, ...] = ALL_KINDS  # counted, 0 until injected
    started: float = field(default_factory=time.monotonic)
    entries: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, detail: str, began: float, ended: float) -> None:
        with self.lock:
            self.entries.append(
                {
                    "kind": kind,
                    "detail": detail,
                    "at": round(began - self.started, 2),
                    "seconds": round(ended - began, 2),
                }
            )

    def counts(self) -> dict[str, int]:
        with self.lock:
            counts = dict.fromkeys(self.kinds, 0)
            for entry in self.entries:
                counts[entry["kind"]] += 1
            return counts

    def total(self) -> int:
        with self.lock:
            return len(self.entries)


class Injector:
    """Applies one fault of a kind and heals it before returning."""

    def __init__(self, stack: ChaosStack, broker: OwnBroker | None) -> None:
        self.stack = stack
        self.broker = broker

    def inject(self, kind: str, rng: random.Random) -> str:
        return getattr(self, kind)(rng)

    # --- processes ---------------------------------------------------------------
    def _crash_and_restart(self, name: str, rng: random.Random, down_max: float) -> str:
        down = rng.uniform(0, down_max)
        self.stack.crash(name)
        time.sleep(down)
        self.stack.restart(name)
        return f"{name} down {down:.1f}s"

    def api_kill(self, rng: random.Random) -> str:
        return self._crash_and_restart("api", rng, 1.5)

    def relay_kill(self, rng: random.Random) -> str:
        return self._crash_and_restart("relay", rng, 3.0)

    def consumer_kill(self, rng: random.Random) -> str:
        return self._crash_and_restart(f"consumer{rng.randrange(self.stack.consumer_count)}", rng, 3.0)

    def rabbitmq_restart(self, rng: random.Random) -> str:
        assert self.broker is not None
        down = rng.uniform(0, 2)
        self.broker.stop()
        time.sleep(down)
        self.broker.start()
        return f"stopped, down {down:.1f}s"

    def rabbitmq_kill(self, rng: random.Random) -> str:
        assert self.broker is not None
        down = rng.uniform(0, 2)
        self.broker.kill()
        time.sleep(down)
        self.broker.start()
        return f"SIGKILL, down {down:.1f}s"

    # --- the Agent -----------------------------------------------------------------
    def _for_a_while(self, rng: random.Random, low: float, high: float) -> float:
        hold = rng.uniform(low, high)
        time.sleep(hold)
        return hold

    def agent_slow(self, rng: random.Random) -> str:
        latency = rng.randint(500, 3000)  # the backend's Agent timeout is 2 s: some calls time out
        self.stack.agent.fault(latency_ms=latency)
        try:
            hold = self._for_a_while(rng, 1, 3)
        finally:
            self.stack.agent.clear_faults()
        return f"latency {latency} ms for {hold:.1f}s"

    def agent_5xx(self, rng: random.Random) -> str:
        status = rng.choice((500, 500, 502, 503, 429))
        self.stack.agent.fault(status=status)
        try:
            hold = self._for_a_while(rng, 0.5, 2.5)
        finally:
            self.stack.agent.clear_faults()
        return f"status {status} for {hold:.1f}s"

    def agent_down(self, rng: random.Random) -> str:
        self.stack.agent.down()
        try:
            hold = self._for_a_while(rng, 0.5, 2.5)
        finally:
            self.stack.agent.up()
        return f"connections refused for {hold:.1f}s"

    def agent_401(self, rng: random.Random) -> str:
        # A permanent error: what it touches is dead-lettered, to be replayed by the operator.
        self.stack.agent.fault(status=401)
        try:
            hold = self._for_a_while(rng, 0.5, 2)
        finally:
            self.stack.agent.clear_faults()
        return f"401 INVALID_SERVICE_TOKEN for {hold:.1f}s"

    def agent_late_apply(self, rng: random.Random) -> str:
        # Held past the backend's 2 s timeout, then applied: possibly after a newer write, which
        # the backend's read-back (a 15 s horizon in the chaos stack) must find and undo.
        hold_ms = rng.randint(2500, 6000)
        count = rng.randint(1, 3)
        answer = rng.choice(("late", "none"))
        self.stack.agent.late_apply(hold_ms=hold_ms, paths=r"^/users/", count=count, answer=answer)
        try:
            hold = self._for_a_while(rng, 1, 3)
        finally:
            self.stack.agent.clear_misbehaviour()  # requests already held still land late
        return f"late apply of up to {count} writes after {hold_ms} ms (answer {answer}) for {hold:.1f}s"


class FaultLane(threading.Thread):
    """Injects faults of the given kinds in shuffled rounds (every kind once per round) until stopped."""

    def __init__(
        self,
        *,
        name: str,
        kinds: tuple[str, ...],
        seed: int,
        injector: Injector,
        log: FaultLog,
        stop: threading.Event,
        gap: tuple[float, float],
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.kinds = kinds
        self.rng = random.Random(seed)
        self.injector = injector
        self.log = log
        self.stop_event = stop
        self.gap = gap
        self.failure: BaseException | None = None

    def run(self) -> None:
        deck: list[str] = []
        try:
            while not self.stop_event.wait(self.rng.uniform(*self.gap)):
                if not deck:
                    deck = list(self.kinds)
                    self.rng.shuffle(deck)
                kind = deck.pop()
                began = time.monotonic()
                detail = self.injector.inject(kind, self.rng)
                self.log.add(kind, detail, began, time.monotonic())
        except BaseException as exc:  # reported by the runner
            self.failure = exc
