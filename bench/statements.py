"""`python -m bench.statements COUNT_FILE COMMAND [ARGS]`: a management command (the consumer, the
relay) run as in production while every database statement it sends is counted.

Every connection the process opens, in any thread, logs its statements (Django's debug cursor:
each query and each BEGIN/COMMIT/ROLLBACK it issues, i.e. each round trip); the count is written
to COUNT_FILE every 50 ms, and at exit with the statements' send times and first characters, so
the benchmark can take the difference over a window (e.g. the delivery of 50 events) and read
what was sent. Only for the statements measurement: the debug cursor slows every query a little.
"""
import atexit
import collections
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

_lock = threading.Lock()
_count = [0]
_sent: collections.deque = collections.deque(maxlen=50_000)  # (time, first characters of the SQL)


class CountingLog(collections.deque):
    """A connection's `queries_log`: Django appends one entry per statement it sends."""

    def append(self, entry: dict[str, Any]) -> None:
        with _lock:
            _count[0] += 1
            _sent.append((time.time(), str(entry.get("sql", ""))[:100]))
        super().append(entry)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    if not isinstance(connection.queries_log, CountingLog):
        connection.queries_log = CountingLog(maxlen=connection.queries_limit)
        # Django logs what psycopg says it sent, which is nothing for a statement run as a prepared one
        # (project.rawsql's server-binding cursor): log the statement's own text then.
        last_executed_query = connection.ops.last_executed_query
        connection.ops.last_executed_query = lambda cursor, sql, params: (
            last_executed_query(cursor, sql, params) or sql
        )
    connection.force_debug_cursor = True


_final = threading.Event()
_write_lock = threading.Lock()


def _write(path: Path, *, final: bool) -> None:
    with _write_lock:
        if _final.is_set():
            return  # the final file, with the statements, is written once and kept
        with _lock:
            data: dict[str, Any] = {"count": _count[0], "pid": os.getpid(), "at": time.time(), "final": final}
            if final:
                data["sent"] = list(_sent)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)
        if final:
            _final.set()


def read_count(path: Path) -> int | None:
    """The count last written to `path` (None before the process wrote it)."""
    try:
        return json.loads(path.read_text())["count"]
    except (OSError, ValueError, KeyError):
        return None


def read_sent(path: Path, *, since: float, until: float) -> list[str]:
    """The statements sent within [since, until], from the file written at exit."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [sql for at, sql in data.get("sent", []) if since <= at <= until]


def main(argv: list[str]) -> None:
    path = Path(argv[0])
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.core.management import execute_from_command_line
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection_created, weak=False)

    def writer() -> None:
        while not _final.is_set():
            _write(path, final=False)
            time.sleep(0.05)

    threading.Thread(target=writer, name="statement-count", daemon=True).start()
    atexit.register(_write, path, final=True)
    execute_from_command_line(["manage.py", *argv[1:]])


if __name__ == "__main__":
    main(sys.argv[1:])
