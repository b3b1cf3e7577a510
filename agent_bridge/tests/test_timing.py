"""The timing policy: every window is derived so that none is shorter than the work it guards."""
import itertools

import pytest
from django.core.exceptions import ImproperlyConfigured

from agent_bridge.timing import MIN_OWNERSHIP_SECONDS, BusTiming, bus_timing

CONFIGS = [
    BusTiming(
        agent_timeout_seconds=timeout,
        immediate_tries=tries,
        immediate_backoff_max_seconds=backoff,
        retry_delays_seconds=(5, 30, 120),
        ownership_seconds=max(MIN_OWNERSHIP_SECONDS, ownership),
        configured_republish_after_seconds=republish,
    )
    for timeout, tries, backoff, ownership, republish in itertools.product(
        (0.5, 2, 10, 60), (1, 3, 8), (0, 2), (0.1, 6, 15, 300), (1, 30, 900)
    )
]


@pytest.mark.parametrize("timing", CONFIGS, ids=lambda t: f"t{t.agent_timeout_seconds}-x{t.immediate_tries}-o"
                         f"{t.ownership_seconds}-r{t.configured_republish_after_seconds}")
def test_no_window_is_shorter_than_what_it_guards(timing: BusTiming) -> None:
    # One attempt: every Agent call of a handler, each tried at the timeout, plus the backoff sleeps.
    worst = timing.agent_timeout_seconds * timing.agent_calls_per_event * timing.immediate_tries
    assert timing.attempt_seconds >= worst + timing.immediate_backoff_max_seconds * (timing.immediate_tries - 1)
    # A relay never publishes again an event that may still be in a consumer's hands.
    assert timing.republish_after_seconds > timing.attempt_seconds + timing.ownership_seconds - 1e-9
    assert timing.settle_deadline_seconds(retry_delay=120) >= 120 + timing.republish_after_seconds
    # Ownership is renewed three times per window, and a holder that stopped renewing has lost it
    # by the time a waiter gives up.
    assert timing.renew_seconds * 3 == pytest.approx(timing.ownership_seconds)
    assert timing.lease_wait_seconds >= timing.ownership_seconds
    assert timing.ownership_seconds >= MIN_OWNERSHIP_SECONDS


def test_the_retry_schedule_comes_from_the_policy() -> None:
    timing = CONFIGS[0]
    assert [timing.retry_delay_seconds(attempt=n) for n in (1, 2, 3, 4)] == [5, 30, 120, None]


def test_settings_build_the_policy_and_nonsense_is_refused(settings) -> None:
    settings.AGENT_TIMEOUT_SECONDS = 2
    settings.BUS_OWNERSHIP_SECONDS = 0.01  # raised to the floor, not trusted
    timing = bus_timing().check()
    assert timing.ownership_seconds == MIN_OWNERSHIP_SECONDS
    settings.BUS_RETRY_DELAYS_SECONDS = [30, 0]
    with pytest.raises(ImproperlyConfigured, match="must all be > 0"):
        bus_timing().check()
    settings.BUS_RETRY_DELAYS_SECONDS = [5]
    settings.AGENT_TIMEOUT_SECONDS = 0
    with pytest.raises(ImproperlyConfigured, match="AGENT_TIMEOUT_SECONDS"):
        bus_timing().check()
