"""Where throttle counts live: Redis (REDIS_URL set) or the embedded `throttling_counter` table.

Both count with one atomic operation per hit (a Lua INCR+EXPIRE in Redis, an INSERT … ON CONFLICT
DO UPDATE … RETURNING upsert in SQLite/PostgreSQL), so concurrent workers never lose a count, and
neither evicts anything before its window ends: Redis keys carry their TTL and the server must run
with a non-evicting policy (noeviction, or volatile-* with these the only volatile keys); the table
is only pruned of expired windows.
"""
import logging
import threading
import time
from typing import Protocol

import redis
from django.conf import settings
from django.db import connections

from throttling.models import Counter

logger = logging.getLogger(__name__)

# The time windows are computed from; tests replace it to move past a window without sleeping.
clock = time.time

PRUNE_INTERVAL_SECONDS = 60
REDIS_TIMEOUT_SECONDS = 2.0


class StoreUnavailable(Exception):
    """The counter store did not answer; callers refuse the request rather than let it through uncounted."""


class CounterStore(Protocol):
    def incr(self, digest: str, ttl_seconds: int) -> int:
        """Add one to the counter `digest` (created with this TTL if new) and return its new value."""

    def clear(self) -> None:
        """Drop every counter of this store (tests)."""


class DatabaseStore:
    """The embedded store: one row per (scope, client, window) in throttling_counter."""

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._next_prune = 0.0
        self._lock = threading.Lock()

    def incr(self, digest: str, ttl_seconds: int) -> int:
        connection = connections[self.using]
        table = connection.ops.quote_name(Counter._meta.db_table)
        now = int(clock())
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (digest, hits, expires_at) VALUES (%s, 1, %s) "  # noqa: S608 (table name only)
                f"ON CONFLICT (digest) DO UPDATE SET hits = {table}.hits + 1 RETURNING hits",
                [digest, now + ttl_seconds],
            )
            (hits,) = cursor.fetchone()
        self._prune_if_due(now)
        return hits

    def _prune_if_due(self, now: int) -> None:
        # Expired windows only; at most once a minute per process, so a hit is one statement.
        with self._lock:
            if time.monotonic() < self._next_prune:
                return
            self._next_prune = time.monotonic() + PRUNE_INTERVAL_SECONDS
        deleted, _ = Counter.objects.using(self.using).filter(expires_at__lt=now).delete()
        if deleted:
            logger.debug("pruned %d expired throttle windows", deleted)

    def clear(self) -> None:
        Counter.objects.using(self.using).all().delete()


# One atomic step: a key never exists without its expiry (and one that somehow lost it gets it
# back, so no count can outlive its window for good).
_INCR_SCRIPT = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 or redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return hits
"""


class RedisStore:
    """Counters as Redis keys `<THROTTLE_KEY_PREFIX><digest>`, each expiring with its window."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            health_check_interval=30,
        )
        self._incr = self.client.register_script(_INCR_SCRIPT)

    def incr(self, digest: str, ttl_seconds: int) -> int:
        try:
            return int(self._incr(keys=[self.prefix + digest], args=[ttl_seconds]))
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis: {exc.__class__.__name__}") from exc

    def clear(self) -> None:
        # Only this prefix: the Redis database may be shared with other users.
        keys = list(self.client.scan_iter(match=self.prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            self.client.delete(*keys[start : start + 1000])


_stores: dict[tuple[str, str], CounterStore] = {}


def store_get() -> CounterStore:
    """The store the settings name (looked up per call, so settings overrides take effect; built once)."""
    key = (settings.REDIS_URL, settings.THROTTLE_KEY_PREFIX)
    store = _stores.get(key)
    if store is None:
        store = RedisStore(*key) if settings.REDIS_URL else DatabaseStore()
        _stores[key] = store
    return store
