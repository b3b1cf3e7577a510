"""The chaos run of CI: random user actions under ≥ 50 injected faults of every kind; nothing lost or stale.

Replay a failure with the seed printed in its message: `CHAOS_SEED=<seed> pytest tests/chaos`, or
the longer `python -m tests.chaos --seed <seed> --duration 600`.
"""

import os
import random

import pytest

from tests.chaos.broker import rabbitmq_missing_reason
from tests.chaos.faults import ALL_KINDS
from tests.chaos.runner import ChaosConfig, run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.rabbitmq, pytest.mark.postgres]

MIN_FAULTS = 50


@pytest.mark.timeout(900)
def test_no_acknowledged_change_is_lost_or_stale_under_faults(tmp_path, chaos_summaries: list[str]) -> None:
    reason = rabbitmq_missing_reason()
    if reason:
        pytest.skip(f"the chaos run starts its own broker node: {reason}")
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    config = ChaosConfig(
        seed=seed,
        workdir=tmp_path / "chaos",
        duration=float(os.environ.get("CHAOS_DURATION", "200")),
        min_faults=MIN_FAULTS,
        drain_timeout=180,  # with the 2 x duration cap on faults, the run stays under the 900 s timeout
    )

    report = run_chaos(config)

    summary = report.summary()
    chaos_summaries.append(summary)
    assert report.fault_total >= MIN_FAULTS, summary
    assert all(report.faults.get(kind, 0) >= 1 for kind in ALL_KINDS), summary
    assert report.findings["checked_users"] > 0, summary
    assert report.lost == 0, summary
    assert report.stale == 0, summary
    assert report.ok, summary
