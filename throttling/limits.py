"""Counting a request against a sequence of limits: the one entry point of every throttle."""
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.utils.crypto import salted_hmac

from throttling import stores
from throttling.rates import rate_get


@dataclass(frozen=True)
class Limit:
    """One counter a request is charged to: a scope (its rate is THROTTLE_RATES[scope]) and an identity
    within it (an address, a canonical email, a user id, …; any length: only its hash is stored)."""

    scope: str
    identity: str


def _digest(scope: str, identity: str, seconds: int, window: int) -> str:
    # Keyed (SECRET_KEY), not a bare hash: a copy of the store cannot be matched against a list of
    # emails or addresses to learn who tried to log in.
    text = f"{scope}\0{identity}\0{seconds}\0{window}".encode("utf-8", "surrogatepass")
    return salted_hmac("kairos.throttling", text, algorithm="sha256").hexdigest()


def limits_hit(limits: Iterable[Limit]) -> float | None:
    """Count the request against each limit in order and stop at the first one over its rate.

    Returns None when every limit allows it, else the seconds until the refusing window ends.
    Windows are fixed (aligned to the clock), so a refusal never outlasts its window, however long
    the client keeps trying; the refused attempt itself is counted, the later limits are not (a
    request refused per address cannot consume, or create, per-email counters).
    Raises stores.StoreUnavailable when the store does not answer.
    """
    if not settings.THROTTLING_ENABLED:
        return None
    store = stores.store_get()
    for limit in limits:
        rate = rate_get(limit.scope)
        now = stores.clock()
        window = int(now // rate.seconds)
        window_end = (window + 1) * rate.seconds
        # +1: the key outlives its window by a second, never the other way round.
        hits = store.incr(_digest(limit.scope, limit.identity, rate.seconds, window), int(window_end - now) + 1)
        if hits > rate.limit:
            return window_end - now
    return None
