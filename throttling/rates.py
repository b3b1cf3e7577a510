"""Rates as configured in settings.THROTTLE_RATES: `<limit>/<period>`, the period optionally with a
count of units (`10/min`, `20/5min`, `3/10m`, `5/hour`, `2/day`)."""
import re
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])[a-z]*\s*$")


@dataclass(frozen=True)
class Rate:
    limit: int  # requests allowed per window
    seconds: int  # window length


@lru_cache(maxsize=256)
def rate_parse(text: str) -> Rate:
    match = _RATE.match(text.lower())
    if match is None:
        raise ImproperlyConfigured(f"bad throttle rate {text!r}: expected e.g. 10/min, 20/5min, 3/hour")
    limit, count, unit = match.groups()
    seconds = int(count or 1) * _UNIT_SECONDS[unit]
    if seconds <= 0:
        raise ImproperlyConfigured(f"bad throttle rate {text!r}: the period must be positive")
    return Rate(limit=int(limit), seconds=seconds)


def rate_get(scope: str) -> Rate:
    """The rate of a scope: THROTTLE_RATES, else its documented default; a scope with neither is an error
    (a throttle must never be silently off because its name was mistyped)."""
    text = settings.THROTTLE_RATES.get(scope) or settings.DEFAULT_THROTTLE_RATES.get(scope)
    if not text:
        raise ImproperlyConfigured(f"no throttle rate for scope {scope!r} (settings.DEFAULT_THROTTLE_RATES)")
    return rate_parse(text)
