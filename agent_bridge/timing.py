"""One timing policy for the bus, from which every window is derived.

Before this module the claim window, the user lease, the Agent timeout and the retry schedule
were each computed where they were used and had drifted apart (a 25 s lease, never renewed,
guarding handlers that could run ~40 s). Now:

- `attempt_seconds` is the longest one delivery attempt can take: every Agent call a handler
  makes (`AGENT_CALLS_PER_EVENT`), each tried `BUS_IMMEDIATE_TRIES` times at the Agent timeout,
  plus the backoff sleeps between tries.
- `ownership_seconds` (a user's lease, an embedded claim) is *renewed* every `renew_seconds`
  while a handler runs, so it only needs to outlast a renewal that is late, not the work itself;
  a crashed holder's ownership lapses after `ownership_seconds`.
- `lease_wait_seconds`: how long `leases.user_lease` waits for a user held by another consumer
  before it gives the event back for a delayed retry: one ownership window, after which a dead
  holder's lease has lapsed and a live one is busy with a long attempt. (The embedded claim takes
  the lease itself, for the claim's window, and skips a user held elsewhere instead of waiting.)
- `republish_after_seconds` (AMQP): an event handed to RabbitMQ and not settled within this is
  published again. `BUS_REPUBLISH_AFTER_SECONDS` is raised, if need be, to one attempt plus one
  ownership window, so a slow delivery is never duplicated by the relay. With several handlers
  in flight (BUS_CONSUMER_CONCURRENCY) a message can also wait in a consumer's hands behind its
  user's earlier events, for longer than one attempt: the consumer renews the settle deadline of
  every message it holds every `renew_seconds`, as it renews a claim, so the window still only
  has to outlast one late renewal, not the wait.

Windows are derived, so no configuration makes one shorter than what it guards;
`check()` refuses the settings that make no sense at all (the daemons call it at start).
"""
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# The most Agent calls one handler makes for one event: allergies.replaced may replace, find
# the user missing, create it, and replace again.
AGENT_CALLS_PER_EVENT = 3
# Renewals come every third of the window; below this a busy database could miss all three.
MIN_OWNERSHIP_SECONDS = 1.5


@dataclass(frozen=True)
class BusTiming:
    agent_timeout_seconds: float
    immediate_tries: int
    immediate_backoff_max_seconds: float
    retry_delays_seconds: tuple[float, ...]
    ownership_seconds: float
    configured_republish_after_seconds: float
    agent_calls_per_event: int = AGENT_CALLS_PER_EVENT

    @classmethod
    def from_settings(cls) -> "BusTiming":
        return cls(
            agent_timeout_seconds=float(settings.AGENT_TIMEOUT_SECONDS),
            immediate_tries=max(1, int(settings.BUS_IMMEDIATE_TRIES)),
            immediate_backoff_max_seconds=float(settings.BUS_IMMEDIATE_BACKOFF_MAX_SECONDS),
            retry_delays_seconds=tuple(float(d) for d in settings.BUS_RETRY_DELAYS_SECONDS),
            ownership_seconds=max(MIN_OWNERSHIP_SECONDS, float(settings.BUS_OWNERSHIP_SECONDS)),
            configured_republish_after_seconds=float(settings.BUS_REPUBLISH_AFTER_SECONDS),
        )

    @property
    def attempt_seconds(self) -> float:
        """The longest one delivery attempt can take (what a claim or lease guards)."""
        calls = self.agent_timeout_seconds * self.agent_calls_per_event * self.immediate_tries
        return calls + self.immediate_backoff_max_seconds * (self.immediate_tries - 1)

    @property
    def renew_seconds(self) -> float:
        """How often a holder renews its ownership: three chances before it lapses."""
        return self.ownership_seconds / 3

    @property
    def lease_wait_seconds(self) -> float:
        return self.ownership_seconds

    @property
    def republish_after_seconds(self) -> float:
        return max(self.configured_republish_after_seconds, self.attempt_seconds + self.ownership_seconds)

    def retry_delay_seconds(self, *, attempt: int) -> float | None:
        """Delay before delivery attempt `attempt + 1`, or None when retries are used up."""
        delays = self.retry_delays_seconds
        return delays[attempt - 1] if 1 <= attempt <= len(delays) else None

    def settle_deadline_seconds(self, *, retry_delay: float = 0.0) -> float:
        """From now, when an event handed to RabbitMQ (perhaps parked for `retry_delay`) must be settled."""
        return retry_delay + self.republish_after_seconds

    def violations(self) -> list[str]:
        found = []
        if self.agent_timeout_seconds <= 0:
            found.append("AGENT_TIMEOUT_SECONDS must be > 0")
        if self.immediate_backoff_max_seconds < 0:
            found.append("BUS_IMMEDIATE_BACKOFF_MAX_SECONDS must be >= 0")
        if any(delay <= 0 for delay in self.retry_delays_seconds):
            found.append("BUS_RETRY_DELAYS_SECONDS must all be > 0")
        return found

    def check(self) -> "BusTiming":
        problems = self.violations()
        if problems:
            raise ImproperlyConfigured("bus timing: " + "; ".join(problems))
        return self


def bus_timing() -> BusTiming:
    return BusTiming.from_settings()
