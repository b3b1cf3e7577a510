"""CPU time by process over a measurement, read from /proc: where a run's cores went.

The bus targets are ratios of rates on a machine whose few cores the consumer shares with the
Agent double, PostgreSQL, RabbitMQ and the relay, so a rate alone cannot say whose work set it.
CPU milliseconds per event of each process can: `CpuMeter` snapshots utime + stime of named
groups of processes (and the whole machine's busy time) before and after, and divides by the
events. A process that starts inside the window counts from zero; one that exits inside it is
lost (its time stays in the machine's total, so `other` = machine − the named groups shows it).
"""
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine since boot, all cores (proc(5): /proc/stat `cpu`)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10])  # guest time is already counted in user and nice
    return (sum(fields) - guest - idle) / _TICK


def process_seconds(pid: int) -> float | None:
    """utime + stime of one process, all its threads; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK  # fields 14 and 15 of proc(5)


def pids_by_cmdline(match: Callable[[str], bool]) -> list[int]:
    """Processes whose command line (NULs as spaces) `match` accepts."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if match(title):
            found.append(int(entry.name))
    return found


def postgres_backends(database: str) -> list[int]:
    """The PostgreSQL server processes serving `database` (their title names it)."""
    return pids_by_cmdline(lambda title: title.startswith("postgres: ") and f" {database} " in title)


def rabbitmq_pids() -> list[int]:
    """The RabbitMQ node's Erlang VM (`beam.smp … rabbit …`)."""
    return pids_by_cmdline(lambda title: "beam.smp" in title and " rabbit" in title)


class CpuMeter:
    """`with CpuMeter(groups) as meter: ...`, then `meter.per_unit_ms(n)`.

    `groups` is called at the start and at the end (so processes that start inside the window,
    such as a new database backend, are found) and names lists of pids."""

    def __init__(self, groups: Callable[[], dict[str, list[int]]]) -> None:
        self._groups = groups
        self._start: dict[int, float] = {}
        self._machine_start = 0.0
        self.seconds: dict[str, float] = {}
        self.machine_seconds = 0.0

    def _sample(self) -> dict[int, float]:
        out = {}
        for pids in self._groups().values():
            for pid in pids:
                seconds = process_seconds(pid)
                if seconds is not None:
                    out[pid] = seconds
        return out

    def __enter__(self) -> "CpuMeter":
        self._start = self._sample()
        self._machine_start = machine_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.machine_seconds = machine_busy_seconds() - self._machine_start
        for name, pids in self._groups().items():
            total = 0.0
            for pid in set(pids):
                seconds = process_seconds(pid)
                if seconds is not None:
                    total += seconds - self._start.get(pid, 0.0)
            self.seconds[name] = total

    def per_unit_ms(self, units: int) -> dict[str, Any]:
        """CPU ms per unit (event, call) of each group, of the machine, and `other` (the rest)."""
        if units <= 0:
            return {}
        out = {name: round(1000 * s / units, 3) for name, s in self.seconds.items()}
        out["machine"] = round(1000 * self.machine_seconds / units, 3)
        out["other"] = round(1000 * (self.machine_seconds - sum(self.seconds.values())) / units, 3)
        return out
