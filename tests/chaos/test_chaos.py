"""The chaos runs of CI: random user actions under injected faults of every kind; nothing lost or stale.

On RabbitMQ (two consumers on partitioned queues, the relay, a broker node of the run's own) with ≥ 50
faults of every kind; on the embedded bus (two consumers claiming outbox rows from PostgreSQL, no broker)
with ≥ 20 of each of its kinds, which keeps CI's second pass short.

Replay a failure with the seed printed in its message: `CHAOS_SEED=<seed> pytest tests/chaos -k <bus>`, or
the longer `python -m tests.chaos --bus <bus> --seed <seed> --duration 600`.
"""

import os
import random

import pytest

from tests.chaos.broker import rabbitmq_missing_reason
from tests.chaos.faults import Bus, kinds_for
from tests.chaos.runner import ChaosConfig, ChaosReport, run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.e2e, pytest.mark.postgres]

MIN_FAULTS_PER_KIND = {Bus.RABBITMQ: 50, Bus.EMBEDDED: 20}


def _run(bus: Bus, tmp_path, *, max_duration: float) -> ChaosReport:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(10**6))
    return run_chaos(ChaosConfig(
        seed=seed,
        workdir=tmp_path / "chaos",
        duration=float(os.environ.get("CHAOS_DURATION", "200")),
        min_faults_per_kind=MIN_FAULTS_PER_KIND[bus],
        max_duration=max_duration,
        drain_timeout=300,  # with the cap on faults, the run stays under the timeout
        bus=bus,
    ))


def _assert_nothing_lost_or_stale(report: ChaosReport, bus: Bus, chaos_summaries: list[str]) -> None:
    summary = report.summary()
    chaos_summaries.append(summary)
    assert all(report.faults.get(kind, 0) >= MIN_FAULTS_PER_KIND[bus] for kind in kinds_for(bus)), summary
    assert report.findings["checked_users"] > 0, summary
    assert report.lost == 0, summary
    assert report.stale == 0, summary
    assert report.ok, summary


# Faults last ~13 min (the broker lane's 100 stops and kills set the pace), the drain a few more.
@pytest.mark.rabbitmq
@pytest.mark.timeout(2700)
def test_no_acknowledged_change_is_lost_or_stale_under_faults(tmp_path, chaos_summaries: list[str]) -> None:
    reason = rabbitmq_missing_reason()
    if reason:
        pytest.skip(f"the chaos run starts its own broker node: {reason}")
    _assert_nothing_lost_or_stale(_run(Bus.RABBITMQ, tmp_path, max_duration=1500), Bus.RABBITMQ, chaos_summaries)


# Faults last ~5 min (the Agent lane's 100 faults set the pace).
@pytest.mark.timeout(1500)
def test_on_the_embedded_bus_no_acknowledged_change_is_lost_or_stale_under_faults(
    tmp_path, chaos_summaries: list[str],
) -> None:
    _assert_nothing_lost_or_stale(_run(Bus.EMBEDDED, tmp_path, max_duration=900), Bus.EMBEDDED, chaos_summaries)
