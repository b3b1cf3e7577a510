"""Wake the relay and the embedded consumer when an event is committed, instead of polling hard.

On PostgreSQL a trigger (agent_bridge migration 0005) sends NOTIFY on the `kairos_outbox` channel
whenever a row becomes pending, and PostgreSQL delivers it at commit. OutboxWaiter LISTENs on
its own connection and sleeps until a notification or BUS_NOTIFY_FALLBACK_SECONDS, whichever
comes first: the fallback poll still finds rows that become due by time (delayed retries) and
anything a lost notification would have announced. On other databases (SQLite) it sleeps
BUS_POLL_INTERVAL_SECONDS, which is the plain polling it replaces.

LISTEN is issued before the caller's first poll, so a commit between a poll that found
nothing and the next wait is not missed: its notification is already queued.
"""
import contextlib
import logging
import threading

from django.conf import settings
from django.db import connections

from agent_bridge.models import OUTBOX_NOTIFY_CHANNEL

logger = logging.getLogger(__name__)

CHANNEL = OUTBOX_NOTIFY_CHANNEL


class OutboxWaiter:
    def __init__(self, *, stop: threading.Event) -> None:
        self.stop = stop
        self._wrapper = None
        self.enabled = connections["default"].vendor == "postgresql"

    def _listen(self):
        if self._wrapper is None:
            # A connection of our own, outside Django's per-thread handling: it only ever waits.
            wrapper = connections.create_connection("default")
            wrapper.ensure_connection()
            wrapper.connection.autocommit = True
            wrapper.connection.execute(f"LISTEN {CHANNEL}")
            self._wrapper = wrapper
        return self._wrapper.connection

    def prepare(self) -> None:
        """LISTEN now (before the first poll); harmless if the database is not PostgreSQL."""
        if self.enabled:
            try:
                self._listen()
            except Exception as exc:  # polling still works without it
                self._lost(exc)

    def wait(self, max_seconds: float | None = None) -> None:
        """Return on a notification, on stop, or after the fallback interval."""
        fallback = settings.BUS_NOTIFY_FALLBACK_SECONDS if self.enabled else settings.BUS_POLL_INTERVAL_SECONDS
        timeout = fallback if max_seconds is None else min(fallback, max_seconds)
        if not self.enabled or self.stop.is_set():
            self.stop.wait(timeout)
            return
        try:
            for _ in self._listen().notifies(timeout=timeout, stop_after=1):
                pass
        except Exception as exc:  # the database went away: poll, and LISTEN again next time
            self._lost(exc)
            self.stop.wait(settings.BUS_POLL_INTERVAL_SECONDS)

    def _lost(self, exc: BaseException) -> None:
        logger.warning("outbox notifications unavailable (%s); polling until they are back", type(exc).__name__)
        self.close()

    def close(self) -> None:
        if self._wrapper is not None:
            with contextlib.suppress(Exception):  # it is being thrown away
                self._wrapper.close()
            self._wrapper = None
