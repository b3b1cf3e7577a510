"""Counts of the generated cases, for the run summary (CI shows how much was really tried)."""
import time
from collections import Counter

cases: Counter[str] = Counter()  # operation label → cases sent
statuses: Counter[int] = Counter()
seed: int | None = None
operations = 0  # in the schema; when all of them ran, the run must reach MIN_CASES
MIN_CASES = 1000
seconds: dict[str, float] = {}  # operation label → wall time spent
started = time.monotonic()


def summary() -> str:
    total = sum(cases.values())
    spent = sum(seconds.values())
    lines = [
        f"schemathesis: {total} generated cases over {len(cases)} of {operations} operations"
        f" in {spent:.1f}s of requests, {time.monotonic() - started:.1f}s of session; seed {seed}"
    ]
    for label in sorted(cases):
        lines.append(f"  {cases[label]:6d}  {label}  ({seconds.get(label, 0.0):.1f}s)")
    lines.append("  statuses: " + ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items())))
    return "\n".join(lines)


def below_minimum() -> bool:
    """A full run (every operation) that generated fewer cases than CI promises."""
    return bool(operations) and len(cases) >= operations and sum(cases.values()) < MIN_CASES
